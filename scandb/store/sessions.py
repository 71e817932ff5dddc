"""experanto sessions' arrays: each sequence (and spikes) modality's data as one `.npy`.

A session's ``data.npy`` is copied byte for byte; a headerless ``data.mem`` gets the `.npy`
header of its ``meta.yml`` shape and dtype in front of its bytes, unchanged, so every
stored array is memory-mapped by ``np.load`` alike. Files sit under ``sessions/``
(``modalities.path`` holds the key), immutable, shared by equal arrays, named by what they
hold: a copied ``.npy`` by the sha256 of its bytes; a ``data.mem`` by the sha256 of the
source's bytes (the digest its session's identity needs anyway, so its 1-2 GB are hashed
once), then ``-h`` and 16 hex digits of the header's sha256. The copy streams in bounded chunks, hashing as it goes, into a temporary name,
renamed into place before the commit; a rolled-back ingest removes what it created.
"""

from __future__ import annotations

import hashlib
import io
import queue
import threading
from pathlib import Path

import numpy as np

from .base import Folder, Store, as_folder

FOLDER = "sessions"


def npy_header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    """The `.npy` (1.0) header numpy writes for a C-order array of this dtype and shape."""
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                               "fortran_order": False, "shape": tuple(shape)})
    return out.getvalue()


class SessionStore(Store):
    """Session arrays under ``<store>/sessions/<sha256>.npy``, referenced by their key."""

    prefix = FOLDER
    pattern = f"{FOLDER}/*.npy"

    def __init__(self, folder: Folder | Path):
        self.folder = as_folder(folder)
        self.created: list[Path] = []
        """Files this object put in place: removed again if the ingest rolls back."""

    def copy(self, read, header: bytes = b"", on_block=None) -> tuple[str, str]:
        """Store ``header`` followed by the blocks ``read(take)`` yields; returns the key and
        the sha256 of the blocks alone (the source file's bytes). ``read`` reads each block
        into a buffer ``take(size)`` hands it (reused: ``_Ring``) and yields a view of what it
        read. ``on_block(block)`` sees each block, in order, and must keep no view of it.
        The digest and ``on_block`` run in threads of their own (hashlib and numpy let go of
        the GIL), so the copy, the digest and ``on_block`` share the cores, each block read once."""
        source = _Hasher(hashlib.sha256())
        seen = _Worker(on_block) if on_block is not None else None
        ring = _Ring([w for w in (source, seen) if w is not None])
        staged = self.folder.staging(f"{FOLDER}/writing.npy")
        try:
            try:
                with open(staged, "wb", buffering=0) as f:
                    _write_all(f, header)
                    for block in read(ring.take):
                        source.put(block)
                        if seen is not None:
                            seen.put(block)
                        _write_all(f, block)
            finally:
                source_digest = source.close()
                if seen is not None:
                    seen.close()
            key = f"{FOLDER}/{source_digest}{_header_tag(header)}.npy"
            if self.folder.exists(key):
                staged.unlink()
            else:
                self.folder.publish(staged, key)
                self.created.append(self.folder.path(key))
            return key, source_digest
        except BaseException:
            staged.unlink(missing_ok=True)
            raise

    def load(self, key: str) -> np.ndarray:
        """The array, memory-mapped read-only."""
        return np.load(self.folder.path(key), mmap_mode="r", allow_pickle=False)


def _write_all(f, block: bytes | memoryview) -> None:
    """An unbuffered file's ``write`` may write less than it was given."""
    done = 0
    while done < len(block):
        done += f.write(block[done:])


class _Worker:
    """``consume(block)`` for every block, in a thread of its own, fed through a short queue
    (bounded memory); an exception is raised again by ``close``. ``wait_done(n)`` returns
    once ``n`` blocks are finished with (consumed, or drained after an error)."""

    def __init__(self, consume):
        self._consume = consume
        self._queue: queue.Queue = queue.Queue(maxsize=4)
        self._error: BaseException | None = None
        self._done = 0
        self._progress = threading.Condition()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._closed = False

    def _run(self) -> None:
        while (block := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._consume(block)
                except BaseException as exc:  # the rest of the blocks are drained, not consumed
                    self._error = exc
            with self._progress:
                self._done += 1
                self._progress.notify_all()

    def wait_done(self, n: int) -> None:
        with self._progress:
            self._progress.wait_for(lambda: self._done >= n)

    def put(self, block) -> None:
        self._queue.put(block)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join()
        if self._error is not None:
            raise self._error


RING_DEPTH = 6
"""Buffers a copy reads into in turn: one being read and written, and up to 4 queued for each worker."""


class _Ring:
    """Buffers handed out in turn (``take``), each reused once every worker has finished the
    block read into it before. A fresh 8 MB ``bytes`` per block made the kernel fault in and
    zero every page of it: copying 2.1 GB took 2.2-4.6 CPU s that way against 0.7 s into
    reused buffers (BENCHMARKS.md, experanto sessions)."""

    def __init__(self, workers: list[_Worker], depth: int = RING_DEPTH):
        self.workers, self.depth = workers, depth
        self.buffers: list[bytearray] = []
        self.handed = 0

    def take(self, size: int) -> bytearray:
        k, slot = self.handed, self.handed % self.depth
        if k >= self.depth:  # the block read into this buffer before is block k - depth
            for worker in self.workers:
                worker.wait_done(k - self.depth + 1)
        if slot == len(self.buffers):
            self.buffers.append(bytearray(size))
        elif len(self.buffers[slot]) < size:
            self.buffers[slot] = bytearray(size)
        self.handed += 1
        return self.buffers[slot]


class _Hasher(_Worker):
    """A sha256 updated in a thread of its own."""

    def __init__(self, digest):
        self._digest = digest
        super().__init__(digest.update)

    def close(self) -> str:
        super().close()
        return self._digest.hexdigest()


HEADER_TAG = "-h"


def _header_tag(header: bytes) -> str:
    return f"{HEADER_TAG}{hashlib.sha256(header).hexdigest()[:16]}" if header else ""


def intact(folder: Folder, key: str) -> bool:
    """The file's bytes still hash to its name (its header and the bytes after it apart, for a
    name with a header tag)."""
    digest, _, tag = Path(key).stem.partition(HEADER_TAG)
    with folder.open(key) as f:
        header = b""
        if tag:
            prefix = f.read(10)
            if len(prefix) < 10 or prefix[:6] != b"\x93NUMPY" or prefix[6] != 1:
                return False
            header = prefix + f.read(int.from_bytes(prefix[8:10], "little"))
            if _header_tag(header) != HEADER_TAG + tag:
                return False
        return hashlib.file_digest(f, "sha256").hexdigest() == digest
