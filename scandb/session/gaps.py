"""The rows of a sequence that hold a NaN: the gaps experanto's ``nan_filter`` keeps chunks away from.

Found once, at ingest (table ``nan_rows``), so making a training dataset reads a few numbers
from SQL instead of every value of every sequence; a session opened from its folder scans
its matrices here instead, a block at a time.
"""

from __future__ import annotations

import numpy as np

SCAN_BYTES = 32 << 20
"""Bytes of a sequence checked for NaN at a time (bounded memory on long sessions)."""


class NanRows:
    """The rows with a NaN, fed a block of rows at a time (as the ingest copies a sequence)."""

    def __init__(self):
        self._found: list[np.ndarray] = []

    def add(self, row: int, block: np.ndarray) -> None:
        if block.dtype.kind in "fc":
            self._found.append(row + np.flatnonzero(np.isnan(block).any(axis=1)))

    def result(self) -> np.ndarray:
        return np.concatenate(self._found).astype(np.int64) if self._found else np.empty(0, np.int64)


def nan_rows(data: np.ndarray) -> np.ndarray:
    """Sorted int64 indexes of the rows with a NaN in any column (none for integer data)."""
    found = NanRows()
    if data.dtype.kind in "fc" and data.size:
        step = max(1, SCAN_BYTES // max(1, data.shape[1] * data.dtype.itemsize))
        for first in range(0, data.shape[0], step):
            found.add(first, np.asarray(data[first:first + step]))
    return found.result()
