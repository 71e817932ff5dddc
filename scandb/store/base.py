"""What every store of files beside the catalog does, and the one garbage collector.

A store is a key layout on a medium (``folder.Folder``): images by hash under fan-out
folders, response matrices under ``responses/``, meta files under ``meta/``, video copies
under ``frames/``. Rows reference a store's files by a reference (an image's hash, a
matrix's key); ``files`` maps each reference to the key of its file. Every file is written
under a temporary name and renamed into place, so a real name never holds a partial file;
files no row references, and temporaries, are garbage: ``collect_garbage`` removes both,
for any store. A store on another medium is another ``Folder`` (``bucket.Bucket``: objects on S3, read
through a local cache); nothing here changes.
"""

from __future__ import annotations

from abc import ABC
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .folder import TEMPORARY_SUFFIX, Folder, age_cutoff, remove_if_empty, temporary_for, write_then_rename

__all__ = ["TEMPORARY_SUFFIX", "Folder", "Store", "as_folder", "collect_garbage", "foreign", "has_files_older_than",
           "refuse_foreign", "remove_if_empty", "temporary_for", "unreferenced", "unreferenced_ages",
           "write_then_rename"]

LISTINGS = 8
"""Stores listed at once by ``collect_garbage``."""


def as_folder(where: Folder | Path | str) -> Folder:
    """The medium a store is given: a ``Folder`` (or ``bucket.Bucket``), a local folder's
    path, or an ``s3://bucket/prefix`` URL."""
    if isinstance(where, Folder) or hasattr(where, "read_ranges"):
        return where
    if isinstance(where, str) and where.startswith("s3://"):
        from .bucket import Bucket

        return Bucket(where)
    return Folder(where)


class Store(ABC):
    folder: Folder
    """The medium the store's files are on (shared by every store of a database)."""

    prefix: str = ""
    """The sub-folder of the store's files (``""``: the folder itself)."""

    pattern: str
    """A glob matching the keys of the store's finished files."""

    refuses_foreign = True
    """Collecting refuses when none of the referenced keys is here (``refuse_foreign``)."""

    @property
    def root(self) -> Path:
        """Where the store's files are, for messages and tests."""
        return self.folder.path(self.prefix) if self.prefix else self.folder.root

    def key(self, reference: str) -> str:
        """The key of the file rows name by ``reference`` (by default the key itself)."""
        return reference

    def reference(self, key: str) -> str:
        """What rows hold for the file of ``key`` (the inverse of ``key``)."""
        return key

    def file(self, reference: str) -> Path:
        """Where the file of ``reference`` is (whether or not it exists)."""
        return self.folder.path(self.key(reference))

    def read(self, reference: str) -> bytes:
        return self.folder.read(self.key(reference))

    def files(self) -> dict[str, Path]:
        """Every finished file in the store, by the reference rows use for it."""
        return {self.reference(key): self.folder.path(key) for key in self.folder.list(self.pattern)}

    def temporaries(self) -> list[Path]:
        """Half-written files of writers that were killed (or are writing now)."""
        return [self.folder.path(key) for key in self.folder.temporaries(self._temporary_folders())]

    def _temporary_folders(self) -> str:
        return self.pattern.rpartition("/")[0]

    def remove(self, references: Iterable[str]) -> int:
        """Delete the files of these references (after the rows that named them are gone)."""
        return self.folder.delete(self.key(r) for r in references)

    def collect_garbage(self, referenced: set[str]) -> int:
        """Remove files no row references and temporaries of killed writers; returns the count."""
        return collect_garbage([(self, referenced)])


def collect_garbage(stores: Iterable[tuple[Store, set[str]]], min_age: float = 0.0) -> int:
    """The one garbage collector: for each store, remove every file whose reference is not
    in the referenced set, every temporary, and empty sub-folders (a writer killed between
    creating a folder and its first file leaves one); returns the files removed. With
    ``min_age``, only files modified at least that many seconds ago (other writers' files
    in flight are younger). Each store is listed once, the stores at once (on a bucket a
    listing is a request: in flight together, not in turn), and all of them before any
    store loses a file, so a foreign store (``refuse_foreign``) is refused with nothing deleted."""
    stores = list(stores)
    going = _at_once(lambda pair: _old_enough(unreferenced_ages(*pair), min_age), stores)
    removed = 0
    for (store, _), keys in zip(stores, going):
        removed += store.folder.delete(keys)
    for folder in {store.folder for store, _ in stores}:
        folder.remove_empty_folders()
    return removed


def refuse_foreign(store: Store, referenced: set[str], found: Iterable[str] | None = None) -> None:
    """Rows reference files, the store holds files, yet none of them is one the rows name:
    the store is not this database's (renamed or moved apart), and collecting would delete
    every file in it. Refuse, deleting nothing (``found``: the store's references, if listed)."""
    if foreign(store, referenced, found):
        from ..errors import DatabaseError
        raise DatabaseError(f"{store.root}: not this database's store (none of the {len(referenced - {None})} "
                            f"files its rows reference is there); nothing deleted")


def foreign(store: Store, referenced: set[str], found: Iterable[str] | None = None) -> bool:
    """Rows reference files of this store, it holds files, and none is one they name
    (``found``: the references of the store's files, when the caller listed them already)."""
    if not store.refuses_foreign:
        return False
    referenced = referenced - {None}  # a member kept inline references no file
    if not referenced:
        return False
    found = set(store.files() if found is None else found)
    return bool(found) and not referenced & found


def unreferenced_ages(store: Store, referenced: set[str]) -> dict[str, float]:
    """The keys of the store's files no reference in ``referenced`` names, and of its
    temporaries, with their modification times (one listing of each); a store that is not
    the rows' (``refuse_foreign``) is refused."""
    finished = store.folder.list(store.pattern)
    refuse_foreign(store, referenced, map(store.reference, finished))
    going = {key: modified for key, modified in finished.items() if store.reference(key) not in referenced}
    return {**going, **store.folder.temporaries(store._temporary_folders())}


def has_files_older_than(stores: Iterable[Store], min_age: float) -> bool:
    """Whether any finished file or temporary of these stores was modified at least
    ``min_age`` seconds ago (each store listed once, the stores at once; whether rows
    reference the files is not asked)."""
    cutoff = age_cutoff(min_age)

    def old(store: Store) -> bool:
        listed = {**store.folder.list(store.pattern), **store.folder.temporaries(store._temporary_folders())}
        return any(modified <= cutoff for modified in listed.values())
    return any(_at_once(old, list(stores)))


def _at_once(list_one, stores: list) -> list:
    """``list_one`` of each store, ``LISTINGS`` at a time (on a bucket each listing is a
    request: in flight together, not in turn)."""
    with ThreadPoolExecutor(max(1, min(LISTINGS, len(stores))), thread_name_prefix="scandb-list") as pool:
        return list(pool.map(list_one, stores))


def unreferenced(store: Store, referenced: set[str], min_age: float = 0.0) -> list[str]:
    """``unreferenced_ages``' keys at least ``min_age`` seconds old."""
    return _old_enough(unreferenced_ages(store, referenced), min_age)


def _old_enough(ages: dict[str, float], min_age: float) -> list[str]:
    cutoff = age_cutoff(min_age) if min_age > 0 else float("inf")
    return sorted(key for key, modified in ages.items() if modified <= cutoff)
