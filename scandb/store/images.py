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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..source.npyfile import NpyHeader
from .base import Folder, Store, as_folder, remove_if_empty

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

    def __init__(self, folder: Folder | Path):
        self.folder = as_folder(folder)
        self.created: list[Path] = []
        """Files this store object wrote: removed again if the ingest rolls back."""
        self._lock = threading.Lock()
        self._claimed: set[str] = set()
        """Hashes this object has written or is writing: ``put`` may be called from threads."""

    def key(self, digest: str) -> str:
        return f"{digest[:FANOUT]}/{digest}.npy"

    def reference(self, key: str) -> str:
        return key.rpartition("/")[2].removesuffix(".npy")

    def put(self, header: NpyHeader, raw: bytes) -> StoredImage:
        """Store the `.npy` bytes of one image unless an equal image is there already."""
        digest = image_hash(header, raw)
        target = self.file(digest)
        with self._lock:
            mine = digest not in self._claimed
            self._claimed.add(digest)
        if mine:
            self.folder.put_new(self.key(digest), raw, lambda: self.created.append(target))
        return StoredImage(digest, self.key(digest), header.shape, header.dtype.str, header.nbytes)


def discard(paths, root: Path) -> None:
    """Remove files a rolled-back write created, and the fan-out folders they leave empty
    (``root``: the store's ``root``; on a bucket, objects, named by path or URL)."""
    for path in paths:
        path = root.locate(path) if hasattr(root, "locate") else Path(path)
        path.unlink(missing_ok=True)
        remove_if_empty(path.parent, root)
