"""A response matrix read by byte range: indexing by trial reads only those trials' rows.

On a store whose objects are fetched over the network (``Bucket.reads_by_range``), mapping
a matrix would download all of it before the first batch; this stands where the memory
map stands (``matrix[trial_ids]``, ``matrix[trial_ids, frames, :]``) and reads the rows
asked for, so a random batch costs a few blocks of the object, not the object.

Once the cache keeps the object as one local file (downloaded whole, or made whole of its
blocks once all were read: ``store/cache.py``), the matrix is memory-mapped from that file
and indexed as a folder's matrix is (one fancy index, not one read per row); it is asked for
again at every call (a dictionary lookup; a file system call every ``TOUCH_EVERY_S``), so a
file the cache dropped means reading by range again.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np


class RangedMatrix:
    """An ``(n_trials, ...)`` float32 matrix whose data starts at ``offset`` in the file of
    ``key``; ``read(jobs)`` fills ``(key, offset, buffer)`` jobs (raising on a short read);
    ``kept(key)`` names the local file holding the whole object, or None (not kept whole)."""

    dtype = np.dtype(np.float32)

    def __init__(self, read: Callable[[list], None], key: str, offset: int, shape: tuple[int, ...],
                 kept: Callable[[str], str | None] | None = None):
        self.read, self.key, self.offset, self.shape = read, key, offset, tuple(shape)
        self.row_bytes = math.prod(self.shape[1:]) * self.dtype.itemsize
        self.kept = kept
        self._mapped: tuple[str, np.ndarray] | None = None
        """The local file mapped last, and its matrix."""

    def mapped(self) -> np.ndarray | None:
        """The matrix memory-mapped from the object's local file, when the cache keeps one."""
        path = self.kept(self.key) if self.kept is not None else None
        if path is None:
            self._mapped = None
            return None
        if self._mapped is None or self._mapped[0] != path:
            try:
                matrix = np.asarray(np.memmap(path, self.dtype, "r", self.offset, self.shape))
            except (OSError, ValueError):  # gone meanwhile, or not the object's size: read by range
                return None
            self._mapped = (path, matrix)
        return self._mapped[1]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index):
        """The rows of the trials ``index`` picks (an int, a slice, an index array), then the
        rest of the index applied to them."""
        mapped = self.mapped()
        if mapped is not None:
            got = mapped[index]
            return got if not isinstance(got, np.ndarray) or got.flags.owndata else got.copy()  # never a view of the map
        trials, rest = (index[0], index[1:]) if isinstance(index, tuple) else (index, ())
        picked = np.arange(self.shape[0])[trials]
        single = picked.ndim == 0
        rows = self.rows(picked.reshape(-1))
        if single:
            rows = rows[0]
        return rows[(slice(None), *rest)] if rest and not single else rows[rest] if rest else rows

    def rows(self, trials: np.ndarray) -> np.ndarray:
        out = np.empty((len(trials), *self.shape[1:]), self.dtype)
        flat = out.reshape(len(trials), -1).view(np.uint8)
        self.read([(self.key, self.offset + int(trial) * self.row_bytes, memoryview(flat[row]))
                   for row, trial in enumerate(trials.tolist())])
        return out

    def __array__(self, dtype=None, copy=None):
        mapped = self.mapped()
        whole = np.array(mapped) if mapped is not None else self.rows(np.arange(self.shape[0]))
        return whole if dtype is None else whole.astype(dtype)
