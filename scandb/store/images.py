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
from .base import Store, fanned_out_files, fanned_out_temporaries, remove_if_empty, write_then_rename

FANOUT = 2
"""Hex digits of the hash used as a sub-folder, so no folder holds too many files."""


@dataclass(frozen=True)
class StoredImage:
    image_hash: str
    path: str
    """Relative to the database's folder."""
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
    """Images by hash, in fan-out folders: ``<root>/<first hex digits>/<hash>.npy``."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.created: list[Path] = []
        """Files this store object wrote: removed again if the ingest rolls back."""
        self._lock = threading.Lock()
        self._claimed: set[str] = set()
        """Hashes this object has written or is writing: ``put`` may be called from threads."""
        self._folders: set[Path] = set()

    def relative(self, digest: str) -> str:
        return f"{self.root.name}/{digest[:FANOUT]}/{digest}.npy"

    def file(self, digest: str) -> Path:
        return self.root / digest[:FANOUT] / f"{digest}.npy"

    def put(self, header: NpyHeader, raw: bytes) -> StoredImage:
        """Store the `.npy` bytes of one image unless an equal image is there already."""
        digest = image_hash(header, raw)
        target = self.file(digest)
        with self._lock:
            mine = digest not in self._claimed
            self._claimed.add(digest)
        if mine and not target.exists():
            self._write(target, raw)
            self.created.append(target)
        return StoredImage(digest, self.relative(digest), header.shape, header.dtype.str, header.nbytes)

    def _write(self, target: Path, raw: bytes) -> None:
        if target.parent not in self._folders:
            target.parent.mkdir(parents=True, exist_ok=True)
            self._folders.add(target.parent)
        try:
            write_then_rename(target, raw)
        except BaseException:
            self._folders.discard(target.parent)
            remove_if_empty(target.parent, self.root)
            raise

    def files(self) -> dict[str, Path]:
        """Every image file in the store, by hash."""
        return fanned_out_files(self.root, FANOUT)

    def temporaries(self) -> list[Path]:
        return fanned_out_temporaries(self.root, FANOUT)


def discard(paths, root: Path) -> None:
    """Remove files a rolled-back write created, and the fan-out folders they leave empty."""
    for path in paths:
        path = Path(path)
        path.unlink(missing_ok=True)
        remove_if_empty(path.parent, root)
