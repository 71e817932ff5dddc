"""experanto sessions' arrays: each sequence (and spikes) modality's data as one `.npy`.

A session's ``data.npy`` is copied byte for byte; a headerless ``data.mem`` gets the `.npy`
header of its ``meta.yml`` shape and dtype in front of its bytes, unchanged, so every
stored array is memory-mapped by ``np.load`` alike. Files sit under ``sessions/``, named by
the sha256 of their bytes (``modalities.path`` holds the key): immutable, shared by equal
arrays. The copy streams in bounded chunks, hashing as it goes, into a temporary name,
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

    def copy(self, chunks, header: bytes = b"", on_block=None) -> tuple[str, str]:
        """Store ``header`` followed by the byte ``chunks``; returns the key and the sha256 of
        the chunks alone (the source file's bytes). ``on_block(block)`` sees each chunk as it
        is written. The digests run in their own threads (hashlib lets go of the GIL), so the
        copy, the digests and ``on_block`` share the cores, each block read once."""
        whole = _Hasher(hashlib.sha256(header))
        source = _Hasher(hashlib.sha256()) if header else whole
        staged = self.folder.staging(f"{FOLDER}/writing.npy")
        try:
            try:
                with open(staged, "wb") as f:
                    f.write(header)
                    for block in chunks:
                        whole.put(block)
                        if source is not whole:
                            source.put(block)
                        f.write(block)
                        if on_block is not None:
                            on_block(block)
            finally:
                whole_digest, source_digest = whole.close(), source.close()
            key = f"{FOLDER}/{whole_digest}.npy"
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


class _Hasher:
    """A sha256 updated in a thread of its own, fed blocks through a short queue."""

    def __init__(self, digest):
        self._digest = digest
        self._queue: queue.Queue = queue.Queue(maxsize=4)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._result: str | None = None

    def _run(self) -> None:
        while (block := self._queue.get()) is not None:
            self._digest.update(block)

    def put(self, block: bytes) -> None:
        self._queue.put(block)

    def close(self) -> str:
        if self._result is None:
            self._queue.put(None)
            self._thread.join()
            self._result = self._digest.hexdigest()
        return self._result


def intact(folder: Folder, key: str) -> bool:
    """The file's bytes still hash to its name."""
    with folder.open(key) as f:
        return hashlib.file_digest(f, "sha256").hexdigest() == Path(key).stem
