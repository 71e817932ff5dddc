"""What every store of files beside the catalog does, and the one garbage collector.

A store keeps files under one folder and names each by a key that database rows hold
(an image's hash, a matrix's relative path). Every file is written under a temporary
name (``.<name>.<pid>.tmp``) and renamed into place, so a real name never holds a partial
file; a killed writer leaves only temporaries. Files no row references, and temporaries,
are garbage: ``collect_garbage`` removes both, for any store. A store on another medium
(a shared folder, a lake's data path) implements this interface and nothing else changes.
"""

from __future__ import annotations

import os
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable
from pathlib import Path

TEMPORARY_SUFFIX = ".tmp"


class Store(ABC):
    root: Path
    """The store's folder, beside the database file."""

    refuses_foreign = True
    """Collecting refuses when none of the referenced keys is here (``refuse_foreign``)."""

    @abstractmethod
    def files(self) -> dict[str, Path]:
        """Every finished file in the store, by the key rows use to reference it."""

    @abstractmethod
    def temporaries(self) -> list[Path]:
        """Half-written files of writers that were killed (or are writing now)."""

    @abstractmethod
    def file(self, key: str) -> Path:
        """Where the file of ``key`` is (whether or not it exists)."""

    def remove(self, keys: Iterable[str]) -> int:
        """Delete the files of these keys (after the rows that named them are gone)."""
        removed = 0
        for key in keys:
            path = self.file(key)
            if path.exists():
                path.unlink()
                removed += 1
            remove_if_empty(path.parent, self.root)
        return removed

    def collect_garbage(self, referenced: set[str]) -> int:
        """Remove files no row references and temporaries of killed writers; returns the count."""
        return collect_garbage([(self, referenced)])


def collect_garbage(stores: Iterable[tuple[Store, set[str]]], min_age: float = 0.0) -> int:
    """The one garbage collector: for each store, remove every file whose key is not in the
    referenced set, every temporary, and empty sub-folders (a writer killed between
    creating a folder and its first file leaves one); returns the files removed. With
    ``min_age``, only files modified at least that many seconds ago (other writers' files
    in flight are younger)."""
    stores = list(stores)
    for store, referenced in stores:
        refuse_foreign(store, referenced)  # before any store loses a file
    removed = 0
    for store, referenced in stores:
        for path in unreferenced(store, referenced, min_age):
            path.unlink(missing_ok=True)
            remove_if_empty(path.parent, store.root)
            removed += 1
        if store.root.is_dir():
            for folder in store.root.iterdir():
                if folder.is_dir():
                    remove_if_empty(folder, store.root)
    return removed


def refuse_foreign(store: Store, referenced: set[str]) -> None:
    """Rows reference files, the store holds files, yet none of them is one the rows name:
    the store is not this database's (renamed or moved apart), and collecting would delete
    every file in it. Refuse, deleting nothing."""
    if not store.refuses_foreign:
        return
    referenced = referenced - {None}  # a member kept inline references no file
    found = store.files()
    if referenced and found and not referenced & found.keys():
        from ..errors import DatabaseError
        raise DatabaseError(f"{store.root}: not this database's store (none of the {len(referenced)} files "
                            f"its rows reference is there); nothing deleted")


def unreferenced(store: Store, referenced: set[str], min_age: float = 0.0) -> list[Path]:
    """The store's files no key in ``referenced`` names, and its temporaries, at least
    ``min_age`` seconds old; a store that is not the rows' (``refuse_foreign``) is refused."""
    refuse_foreign(store, referenced)
    found = [path for key, path in store.files().items() if key not in referenced] + store.temporaries()
    if min_age <= 0:
        return found
    cutoff = time.time() - min_age
    return [path for path in found if _modified(path) <= cutoff]


def _modified(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return float("inf")  # gone already


def temporary_for(target: Path) -> Path:
    """The temporary name a file is written under before it is renamed to ``target``."""
    return target.with_name(f".{target.stem}.{os.getpid()}{TEMPORARY_SUFFIX}")


def write_then_rename(target: Path, data: bytes | memoryview) -> None:
    """Write under a temporary name, then rename: a real name never holds a partial file."""
    temporary = temporary_for(target)
    try:
        with open(temporary, "wb") as f:
            f.write(data)
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def remove_if_empty(folder: Path, root: Path) -> None:
    """Drop a sub-folder of a store once its last file is gone, so undoing a write leaves no trace."""
    if folder == root or root not in folder.parents:
        return
    try:
        folder.rmdir()
    except OSError:
        pass


def fanned_out_files(root: Path, fanout: int) -> dict[str, Path]:
    """The ``.npy`` files of a store that fans files out into ``fanout``-character folders, by stem."""
    return {p.stem: p for p in root.glob(f"{'?' * fanout}/*.npy")} if root.is_dir() else {}


def fanned_out_temporaries(root: Path, fanout: int) -> list[Path]:
    """Half-written files such a store left (a writer killed before its rename)."""
    return list(root.glob(f"{'?' * fanout}/.*{TEMPORARY_SUFFIX}")) if root.is_dir() else []
