"""Response matrices: each scan's responses once more as one row-major float32 `.npy`.

DuckDB hands list columns to Python at ~0.7 s for a 4,500 x 8,000 selection (measured in
BENCHMARKS.md); a memory-mapped matrix gives any rows at the speed of a single
``np.load``. The file sits in the image store under ``responses/``, named by the sha256
of the scan's source file, and is written during the scan's ingest transaction: under a
temporary name first, renamed into place just before the commit, removed on rollback.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

FOLDER = "responses"


class MatrixWriter:
    """Writes one scan's rows, in any order, while the ingest streams trials.

    Plain writes, not a memory map: on a full disk a write raises ENOSPC, where a store
    into a mapped page would kill the process with SIGBUS.
    """

    def __init__(self, store_root: Path, source_sha256: str, n_trials: int, n_neurons: int):
        self.store_root = Path(store_root)
        self.final = self.store_root / FOLDER / f"{source_sha256}.npy"
        self.temporary = self.final.with_name(f".{self.final.stem}.{os.getpid()}.tmp")
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self.shape = (n_trials, n_neurons)
        self.rows_written = 0
        self._file = open(self.temporary, "wb")
        header = {"descr": np.dtype(np.float32).str, "fortran_order": False, "shape": self.shape}
        np.lib.format.write_array_header_1_0(self._file, header)
        self._file.flush()
        self._data_offset = self._file.tell()
        self._row_bytes = n_neurons * 4

    def write(self, trials: np.ndarray, rows: np.ndarray) -> None:
        """Rows for these trial ids (any order), written where they belong."""
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        fd = self._file.fileno()
        for trial, row in zip(trials.tolist(), rows):
            os.pwrite(fd, row.data, self._data_offset + trial * self._row_bytes)
        self.rows_written += len(trials)

    def finish(self) -> str:
        """Put the matrix in place; returns its path relative to the database's folder."""
        if self.rows_written != self.shape[0]:
            raise RuntimeError(f"response matrix has {self.rows_written} of {self.shape[0]} rows")
        self._file.close()
        os.replace(self.temporary, self.final)
        return f"{self.store_root.name}/{FOLDER}/{self.final.name}"

    def discard(self) -> None:
        self._file.close()
        self.temporary.unlink(missing_ok=True)
        self.final.unlink(missing_ok=True)


def matrix_files(store_root: Path) -> dict[str, Path]:
    """Every matrix in the store, by its path relative to the database's folder."""
    folder = Path(store_root) / FOLDER
    if not folder.is_dir():
        return {}
    return {f"{Path(store_root).name}/{FOLDER}/{p.name}": p for p in folder.glob("*.npy")}


def matrix_temporaries(store_root: Path) -> list[Path]:
    folder = Path(store_root) / FOLDER
    return list(folder.glob(".*.tmp")) if folder.is_dir() else []


def collect_matrix_garbage(store_root: Path, referenced: set[str]) -> int:
    """Remove matrices no row references and half-written ones; returns the count."""
    stale = [p for rel, p in matrix_files(store_root).items() if rel not in referenced]
    stale += matrix_temporaries(store_root)
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)
