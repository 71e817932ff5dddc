"""A model's predictions of a video scan: one time-major float32 `.npy` per (model, scan).

Static predictions are a ``FLOAT[]`` column; a video trial's ``(T, n_neurons)`` predictions
would be 10 MB rows, so they sit here like the response matrices (rows ``(n_rows, T, N)``,
row ``predictions.row``), under ``predictions/<sha256 of the bytes>.npy``: a file never
changes once written, and two equal runs share it. Written row by row into a temporary,
hashed as it goes, then renamed to its name just before the commit.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .base import Folder, Store, as_folder

FOLDER = "predictions"


class PredictionStore(Store):
    """Prediction matrices under ``<store>/predictions/``, referenced by their key (what
    ``prediction_matrices.path`` holds)."""

    prefix = FOLDER
    pattern = f"{FOLDER}/*.npy"

    def __init__(self, folder: Folder | Path):
        self.folder = as_folder(folder)

    def write(self, shape: tuple[int, int, int], rows: Iterable[np.ndarray]) -> tuple[str, bool]:
        """Store the ``shape[0]`` ``rows``, each ``shape[1:]`` ``(T, N)``, as float32; returns
        the key and whether this call created the file (an equal one may be there already)."""
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(
            header, {"descr": np.dtype(np.float32).str, "fortran_order": False, "shape": tuple(shape)})
        digest = hashlib.sha256(header.getvalue())
        staged = self.folder.staging(f"{FOLDER}/writing.npy")
        try:
            with open(staged, "wb") as f:
                f.write(header.getvalue())
                for row in rows:  # one trial at a time: no float32 copy of the whole array
                    data = np.ascontiguousarray(row, dtype=np.float32)
                    assert data.shape == tuple(shape[1:]), (data.shape, shape)
                    data = data.data
                    digest.update(data)
                    f.write(data)
            key = f"{FOLDER}/{digest.hexdigest()}.npy"
            if self.folder.exists(key):
                staged.unlink()
                return key, False
            self.folder.publish(staged, key)
            return key, True
        except BaseException:
            staged.unlink(missing_ok=True)
            raise

    def load(self, key: str) -> np.ndarray:
        """The matrix, memory-mapped read-only."""
        return np.load(self.folder.path(key), mmap_mode="r")
