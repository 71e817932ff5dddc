"""Response matrices: each scan's responses once more as one row-major float32 `.npy`.

DuckDB hands list columns to Python slowly (it decompresses and exports every value as a
list); a memory-mapped matrix gives any rows at the speed of a single ``np.load``
(BENCHMARKS.md, Numbers behind the code: response matrices). The file sits in the store under ``responses/``, named by the sha256 of the
scan's source file (rows hold its key, ``responses/<sha256>.npy``), and is written during
the scan's ingest transaction: under a temporary name first, renamed into place just
before the commit, removed on rollback.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from .base import Folder, Store, as_folder

FOLDER = "responses"


class MatrixStore(Store):
    """Response matrices under ``<store>/responses/``, referenced by their key (what
    ``response_matrices.path`` holds, and the query layer reads)."""

    prefix = FOLDER
    pattern = f"{FOLDER}/*.npy"

    def __init__(self, folder: Folder | Path):
        self.folder = as_folder(folder)

    def key_for(self, name: str) -> str:
        """The key of the matrix named ``name``: ``responses/<name>.npy``."""
        return f"{FOLDER}/{name}.npy"

    def writer(self, name: str, n_trials: int, *row_shape: int) -> "MatrixWriter":
        """A writer of an ``(n_trials, *row_shape)`` matrix: ``(n_neurons,)`` for a static
        scan, ``(n_neurons, T)`` for a dynamic one."""
        return MatrixWriter(self, name, n_trials, *row_shape)


class MatrixWriter:
    """Writes one scan's rows, in any order, while the ingest streams trials.

    Plain writes, not a memory map: on a full disk a write raises ENOSPC, where a store
    into a mapped page would kill the process with SIGBUS.
    """

    def __init__(self, store: MatrixStore, name: str, n_trials: int, *row_shape: int):
        self.store = store
        self.key = store.key_for(name)
        self.final = store.folder.path(self.key)
        self.temporary = store.folder.staging(self.key)
        self.shape = (n_trials, *row_shape)
        self.rows_written = 0
        self._file = open(self.temporary, "wb")
        header = {"descr": np.dtype(np.float32).str, "fortran_order": False, "shape": self.shape}
        np.lib.format.write_array_header_1_0(self._file, header)
        self._file.flush()
        self._data_offset = self._file.tell()
        self._row_bytes = int(np.prod(row_shape, dtype=np.int64)) * 4
        self._publishing = None
        """On a medium that uploads (a bucket): the upload begun once every row was written."""

    def write(self, trials: np.ndarray, rows: np.ndarray) -> None:
        """Rows for these trial ids (any order), written where they belong."""
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        fd = self._file.fileno()
        for trial, row in zip(trials.tolist(), rows):
            os.pwrite(fd, row.data, self._data_offset + trial * self._row_bytes)
        self.rows_written += len(trials)
        self._complete()

    def sink(self) -> "RowSink":
        """Where reader processes write rows themselves (``RowSink``), sparing the rows a
        trip through a pipe; the rows they write are counted with ``count``."""
        return RowSink(self.temporary, self._data_offset, self._row_bytes)

    def count(self, n: int) -> None:
        """``n`` rows were written through a ``RowSink``."""
        self.rows_written += n
        self._complete()

    def _complete(self) -> None:
        """Once every row is written, a medium that uploads (a bucket's ``begin_publish``)
        begins uploading the file, while the ingest inserts its last rows; the temporary
        stays where it is (``neuron_quality`` reads it) until ``finish``."""
        begin = getattr(self.store.folder, "begin_publish", None)
        if self.rows_written == self.shape[0] and self._publishing is None and begin is not None:
            self._file.close()
            self._publishing = begin(self.temporary, self.key)

    def finish(self) -> str:
        """Put the matrix in place (on a bucket: wait for its upload); returns its key in the
        store."""
        if self.rows_written != self.shape[0]:
            raise RuntimeError(f"response matrix has {self.rows_written} of {self.shape[0]} rows")
        self._file.close()
        if self._publishing is not None:
            self._publishing()
        else:
            self.store.folder.publish(self.temporary, self.key)
        return self.key

    def discard(self, final: bool = True) -> None:
        """Remove the temporary, and unless ``final`` is False the finished file (which, in a
        store other processes write, another ingest of the same source may have written too);
        an upload begun is waited for first."""
        self._file.close()
        if self._publishing is not None:
            self._publishing(False)
        self.temporary.unlink(missing_ok=True)
        if final:
            self.store.folder.delete([self.key])



class RowSink:
    """Writes rows of a matrix being written into its temporary file, from any process:
    each chunk of rows opens the file, writes each row where it belongs and closes it. Rows
    of different chunks never overlap, so processes write side by side."""

    def __init__(self, path: Path, data_offset: int, row_bytes: int):
        self.path, self.data_offset, self.row_bytes = path, data_offset, row_bytes

    def write(self, trials: np.ndarray, rows: np.ndarray) -> list[bytes]:
        """Write the rows of these trials; returns the sha256 of each row's bytes (the
        matrix's digest is made of them, see ``maintenance/digests.py``)."""
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        digests = []
        fd = os.open(self.path, os.O_WRONLY)
        try:
            for trial, row in zip(trials.tolist(), rows):
                os.pwrite(fd, row.data, self.data_offset + trial * self.row_bytes)
                digests.append(hashlib.sha256(row.data).digest())
        finally:
            os.close(fd)
        return digests
