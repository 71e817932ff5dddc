"""Time-major copies of videos: each video once more as a ``(T, H, W)`` `.npy`.

A source video is ``(H, W, T)``, time last, so a window of 50 of its 315 frames is 200 B
out of every 1,260 B and touches every page of the file. Its time-major copy holds the
same values with time first: a window is one contiguous read of ``F * H * W`` values
(BENCHMARKS.md, dynamic scans). The copy is named like the video, by its hash, under
``<image store>/frames/``; the source file stays what export and verify read. A video
without a copy (a database ingested before copies existed) is read from its source file.
"""

from __future__ import annotations

import errno
import io
import math
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..source import npyfile
from .base import Folder, Store, as_folder

FOLDER = "frames"
FANOUT = 2
"""Hex digits of the hash used as a sub-folder, as in the image store."""


@lru_cache(maxsize=64)
def header_bytes(shape: tuple[int, ...], dtype: np.dtype) -> bytes:
    """The `.npy` header a copy of this shape and dtype starts with (its length is where the
    frames begin)."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                                  "fortran_order": False, "shape": tuple(shape)})
    return buffer.getvalue()


class FrameStore(Store):
    """Time-major video copies by video hash: ``<store>/frames/<first hex digits>/<hash>.npy``."""

    refuses_foreign = False
    """Its keys are checked against every image's hash (copies exist for videos only), so
    finding none of them proves nothing; the copies can be made again from the videos."""

    prefix = FOLDER
    pattern = f"{FOLDER}/{'?' * FANOUT}/*.npy"

    def __init__(self, folder: Folder | Path):
        self.folder = as_folder(folder)
        self.created: list[Path] = []
        """Copies this object wrote: removed again if the ingest rolls back."""
        self._lock = threading.Lock()
        self._claimed: set[str] = set()

    def key(self, digest: str) -> str:
        return f"{FOLDER}/{digest[:FANOUT]}/{digest}.npy"

    def reference(self, key: str) -> str:
        return key.rpartition("/")[2].removesuffix(".npy")

    def put(self, digest: str, raw: bytes) -> None:
        """Write the time-major copy of the video whose source `.npy` bytes (``(H, W, T)``)
        are ``raw`` and whose hash is ``digest``, unless there is one."""
        target = self.file(digest)
        with self._lock:
            mine = digest not in self._claimed
            self._claimed.add(digest)
        if not mine or target.exists():
            return
        frames = np.ascontiguousarray(np.moveaxis(npyfile.load(raw), -1, 0))
        self.folder.put(self.key(digest), header_bytes(frames.shape, frames.dtype) + frames.tobytes())
        self.created.append(target)


def read_windows(folder: Folder, keys: list[str], firsts: list[int], out: np.ndarray, frames: int) -> list[int]:
    """Frames ``first:first + F`` of each copy (``frames`` frames long) read into ``out[row]``
    (``out`` is ``(n, F, H, W)``), one read per row, several at once. Returns the rows whose
    copy does not exist (left untouched); a copy shorter than its shape is an OSError naming it."""
    frame_shape, dtype = out.shape[2:], out.dtype
    frame_bytes = math.prod(frame_shape) * dtype.itemsize
    data_offset = len(header_bytes((frames, *frame_shape), dtype))
    jobs = [(key, data_offset + first * frame_bytes, memoryview(out[row]).cast("B"))
            for row, (key, first) in enumerate(zip(keys, firsts))]
    missing = []
    for row, ((key, _, buffer), got) in enumerate(zip(jobs, folder.read_ranges(jobs))):
        if isinstance(got, FileNotFoundError):
            missing.append(row)
        elif isinstance(got, OSError):
            raise got
        elif got != len(buffer):
            raise OSError(errno.EIO, "shorter than its shape", str(folder.path(key)))
    return missing
