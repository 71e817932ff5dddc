"""A PyTorch ``Dataset`` over any selection of trials (``pip install scandb[torch]``).

It yields what neuralpredictors' ``FileTreeDataset`` yields: a named tuple with fields
``images, responses, behavior, pupil_center`` (or the keys asked for). It is picklable:
each worker process opens its own read-only connection on first use, so a
``DataLoader(num_workers=...)`` works. ``__getitems__`` fetches a whole batch with one
query per key.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch.utils.data

from .api import DATA_KEYS, ScanDB, Selection, connect


def point_class(keys: Sequence[str]) -> type:
    """The named tuple type for these keys, defined at module level so workers can pickle it."""
    name = "DataPoint" if tuple(keys) == DATA_KEYS else "DataPoint_" + "_".join(keys)
    if name not in globals():
        cls = namedtuple(name, keys)
        cls.__module__ = __name__
        globals()[name] = cls
    return globals()[name]


DataPoint = point_class(DATA_KEYS)


class ScanDataset(torch.utils.data.Dataset):
    def __init__(self, db_path: str | Path, selection: Selection, keys: Sequence[str] = DATA_KEYS,
                 normalize: bool = True, neurons=None, image_dtype: str = "float32"):
        self.db_path = str(db_path)
        self.keys = tuple(keys)
        self.normalize = normalize
        self.neurons = neurons
        self.image_dtype = image_dtype
        self.point = point_class(self.keys)
        with connect(self.db_path) as db:
            selected = db._resolve(selection, None)
        self.scan_keys = np.asarray(selected["scan_key"].to_pylist(), dtype=object)
        self.trial_ids = selected["trial_id"].to_numpy()
        self._db: ScanDB | None = None

    def __len__(self) -> int:
        return len(self.trial_ids)

    def __getitem__(self, index: int):
        return self.__getitems__([index])[0]

    def __getitems__(self, indexes: Sequence[int]) -> list:
        rows = np.asarray(indexes, dtype=np.int64)
        pairs = list(zip(self.scan_keys[rows].tolist(), self.trial_ids[rows].tolist()))
        arrays = self._connection().fetch(pairs, *self.keys, normalize=self.normalize, neurons=self.neurons,
                                          image_dtype=self.image_dtype)
        return [self.point(*(arrays[k][i] for k in self.keys)) for i in range(len(pairs))]

    def _connection(self) -> ScanDB:
        if self._db is None:
            self._db = connect(self.db_path)
        return self._db

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_db"] = None
        return state
