"""The image store: content-addressed `.npy` files beside the database.

An image's name is the sha256 of its dtype, shape and pixels, so an image repeated within
a scan, or shown in several scans (the shared test images), is stored once. Files are
written to a temporary name and renamed into place, so a killed ingest never leaves a
partial file under a real name; files no database row references are orphans, removed
by ``collect_garbage`` (``store/base.py``), run at the start of every write.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..source.npyfile import NpyHeader
from .base import Folder, Store, as_folder, remove_if_empty
from .packs import MEMBER_MAX, Pack

FANOUT = 2
"""Hex digits of the hash used as a sub-folder, so no folder holds too many files."""


@dataclass(frozen=True)
class StoredImage:
    image_hash: str
    path: str
    """The file's key in the store (relative to the store's folder)."""
    shape: tuple[int, ...]
    dtype: str
    n_bytes: int
    pack_offset: int | None = None
    """Where the image's ``.npy`` file begins in the pack ``path`` names (None: the object
    at ``path`` is the image's file alone; see ``packs.py``)."""
    pack_length: int | None = None
    """The length of that ``.npy`` file in the pack."""


def image_hash(header: NpyHeader, raw: bytes) -> str:
    """sha256 over dtype, shape and C-order pixels: equal images, equal hash."""
    data = memoryview(raw)[header.data_offset:]
    if header.fortran_order:
        array = np.frombuffer(raw, header.dtype, offset=header.data_offset).reshape(header.shape, order="F")
        data = memoryview(np.ascontiguousarray(array)).cast("B")
    digest = hashlib.sha256(f"{header.dtype.str}{header.shape}".encode())
    digest.update(data)
    return digest.hexdigest()


class ImageStore(Store):
    """Images by hash, in fan-out folders: ``<store>/<first hex digits>/<hash>.npy``."""

    pattern = f"{'?' * FANOUT}/*.npy"

    def __init__(self, folder: Folder | Path, known: Iterable[str] = ()):
        self.folder = as_folder(folder)
        self.known = frozenset(known)
        """Hashes the database holds already: packing leaves them out (their rows stay)."""
        self.created: list[Path] = []
        """Files this store object wrote: removed again if the ingest rolls back."""
        self._lock = threading.Lock()
        self._claimed: set[str] = set()
        """Hashes this object has written or is writing: ``put`` may be called from threads."""
        self._pack: Pack | None = None
        self._placed: dict[str, tuple[str, int, int]] = {}
        """Hash -> (pack key, offset, length) of every image this object packed."""

    def key(self, digest: str) -> str:
        return f"{digest[:FANOUT]}/{digest}.npy"

    def reference(self, key: str) -> str:
        return key.rpartition("/")[2].removesuffix(".npy")

    def put(self, header: NpyHeader, raw: bytes) -> StoredImage:
        """Store the `.npy` bytes of one image unless an equal image is there already
        (inside ``packing()``, into the pack: its place is known once the pack is written)."""
        digest = image_hash(header, raw)
        pack = self._pack
        if pack is not None and len(raw) <= MEMBER_MAX:
            unplaced = StoredImage(digest, None, header.shape, header.dtype.str, header.nbytes)
            if digest in self.known:
                return unplaced  # its row names where it is; nothing is written (``placed`` keeps it so)
            if digest in self._placed:
                return self.placed(unplaced)
            with self._lock:
                pack.add(digest, raw)
            return unplaced
        target = self.file(digest)
        with self._lock:
            mine = digest not in self._claimed
            self._claimed.add(digest)
        if mine:
            self.folder.put_new(self.key(digest), raw, lambda: self.created.append(target))
        return StoredImage(digest, self.key(digest), header.shape, header.dtype.str, header.nbytes)

    @contextmanager
    def packing(self):
        """Meanwhile, on a medium read by range (a bucket), images go into one pack, written
        on leaving; ``placed`` then gives each image's place in it. Elsewhere nothing changes."""
        if not getattr(self.folder, "reads_by_range", False) or self._pack is not None:
            yield
            return
        self._pack = pack = Pack()
        try:
            yield
        finally:
            self._pack = None
        if pack.members:
            key = pack.key()
            target = self.folder.path(key)
            # no HEAD first: its members are images the database does not hold, so the pack is new
            # (but when an ingest runs again after a conflict: the same bytes again)
            self.folder.put_fresh(key, pack.data(), lambda: self.created.append(target))
            for digest, (offset, length) in pack.offsets.items():
                self._placed[digest] = (key, offset, length)

    def placed(self, stored: StoredImage) -> StoredImage:
        """``stored`` with its pack's key and its place in the pack, once the pack is written."""
        if stored.path is not None or stored.image_hash not in self._placed and stored.image_hash in self.known:
            return stored  # its own file, or an image the database holds already (its row stays)
        key, offset, length = self._placed[stored.image_hash]
        return replace(stored, path=key, pack_offset=offset, pack_length=length)


def read_image_file(store: Folder, key: str, offset: int | None, length: int | None) -> bytes:
    """The ``.npy`` bytes of one image: the object of ``key``, or its range in a pack
    (OSError when it cannot be read; FileNotFoundError when the object is gone)."""
    if offset is None:
        return store.read(key)
    buffer = bytearray(length)
    got = store.read_ranges([(key, offset, memoryview(buffer))], parallel=False)[0]
    if isinstance(got, OSError):
        raise got
    if got != length:
        raise OSError(f"the pack ends {length - got} bytes before the image does")
    return bytes(buffer)


def read_image_files(store: Folder, places: list[tuple[str, int | None, int | None]]) -> list[bytes]:
    """``read_image_file`` of each (key, offset, length), the packed ones' ranges read in one
    ``read_ranges`` call (on a bucket: many in flight, a block fetched once for all)."""
    out: list[bytes | None] = [None] * len(places)
    packed = [i for i, (_, offset, _) in enumerate(places) if offset is not None]
    buffers = {i: bytearray(places[i][2]) for i in packed}
    jobs = [(places[i][0], places[i][1], memoryview(buffers[i])) for i in packed]
    for i, got in zip(packed, store.read_ranges(jobs, parallel=True) if jobs else []):
        if isinstance(got, OSError):
            raise got
        if got != len(buffers[i]):
            raise OSError(f"the pack ends {len(buffers[i]) - got} bytes before the image does")
        out[i] = bytes(buffers[i])
    for i, (key, offset, _) in enumerate(places):
        if offset is None:
            out[i] = store.read(key)
    return out


def discard(paths, root: Path) -> None:
    """Remove files a rolled-back write created, and the fan-out folders they leave empty
    (``root``: the store's ``root``; on a bucket, objects, named by path or URL)."""
    for path in paths:
        path = root.locate(path) if hasattr(root, "locate") else Path(path)
        path.unlink(missing_ok=True)
        remove_if_empty(path.parent, root)
