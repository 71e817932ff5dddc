"""A PyTorch ``Dataset`` over any selection of trials (``pip install scandb[torch]``)."""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch.utils.data
from torch.utils.data._utils.collate import collate, default_collate_fn_map

from .api import ScanDB, connect
from .catalog import DEFAULT_WAIT
from .errors import UsageError
from .keys import DATA_KEYS, VIDEO_DATA_KEYS
from .query import fetch as fetching
from .query import neurons as neuron_choice
from .query.readers import Readers
from .query.neurons import Neurons
from .query.selection import Selection
from .store.folder import Folder


def point_class(keys: Sequence[str]) -> type:
    """The named tuple type for these keys, defined at module level so workers can pickle it,
    and registered with torch's ``default_collate`` (see ``collate_points``)."""
    name = "DataPoint" if tuple(keys) == DATA_KEYS else "DataPoint_" + "_".join(keys)
    if name not in globals():
        cls = namedtuple(name, keys)
        cls.__module__ = __name__
        globals()[name] = cls
        default_collate_fn_map[cls] = collate_points
    return globals()[name]


class Batch(list):
    """The items of one ``__getitems__`` call, which also keeps the batch arrays they are rows of."""

    def __init__(self, items: list, arrays: tuple[np.ndarray, ...]):
        super().__init__(items)
        self.items = tuple(items)
        self.arrays = arrays

    def __reduce__(self):
        """Pickled (sent from a worker uncollated) as the plain list of items."""
        return list, (list(self),)

    def intact(self) -> bool:
        """Still exactly the items made (a caller may have reordered, dropped or added some)."""
        return len(self) == len(self.items) and all(a is b for a, b in zip(self, self.items))


def collate_points(batch: list, *, collate_fn_map: dict | None = None):
    """``default_collate`` of a dataset's items: the batch arrays ``__getitems__`` already
    assembled become the batch's tensors without stacking the items again (the values,
    dtypes and shapes ``torch.stack`` gives); any other list of items is collated field by
    field as for any named tuple."""
    if isinstance(batch, Batch) and batch.intact():
        return type(batch[0])(*(_as_batch(array, batch, field, collate_fn_map)
                                for field, array in enumerate(batch.arrays)))
    return type(batch[0])(*(collate(samples, collate_fn_map=collate_fn_map) for samples in zip(*batch)))


def _as_batch(array: np.ndarray, batch: Batch, field: int, collate_fn_map: dict | None):
    """A numeric batch array of per-item arrays as one tensor; any other field of the items
    (numbers, strings) as torch collates it."""
    if array.ndim >= 2 and array.dtype.kind in "biuf":
        return torch.from_numpy(np.require(array, requirements=("C", "W")))  # a copy only if not so
    return collate(tuple(item[field] for item in batch), collate_fn_map=collate_fn_map)


DataPoint = point_class(DATA_KEYS)
VideoPoint = point_class(VIDEO_DATA_KEYS)


class ScanDataset(torch.utils.data.Dataset):
    """The selected trials of a scandb database as a map-style PyTorch ``Dataset``.

    Items are what neuralpredictors' ``FileTreeDataset`` yields: a named tuple with fields
    ``images, responses, behavior, pupil_center`` (or the ``keys`` asked for), normalised
    like its ``NeuroNormalizer`` unless ``normalize=False``. ``selection`` is anything
    ``ScanDB.fetch`` takes (SQL, a relation, a DataFrame, pairs, trial ids with ``scan=``).

    Everything is checked when the dataset is made, not in the first batch: the keys, the
    trials, ``neurons=``, the statistics ``normalize`` needs, and that every trial has as
    many neurons. For scans of different sizes make one dataset per scan with
    ``ScanDataset.per_scan`` (neuralpredictors' multi-scan loaders take such a dict).

    It never holds the database: everything but the arrays' files is read when it is made
    (waiting up to ``wait`` seconds, 60 by default, for a writer), and items come from the store's files,
    which no ingest of another scan changes. A training job therefore runs through ingests
    in other processes, across epochs, with any ``DataLoader`` workers, and sees the data it
    started with. It is picklable; ``__getitems__`` reads a whole batch, which the default
    collate hands on as those arrays rather than stacking the items into a second copy.

    Dynamic (video) trials yield what the Sensorium 2023 loader yields: ``videos`` time-first
    ``(1, F, H, W)``, ``responses`` ``(N, F)``, ``behavior`` and ``pupil_center`` ``(2, F)``,
    where F is ``frames`` consecutive frames from a random start inside the trial's valid
    length for train trials, or the whole valid length otherwise (and when ``frames`` is None).
    Trials whose responses or behavior are withheld (zero-filled test tiers) are refused when
    the dataset is made, unless ``normalize=False``.

    Nothing is cached by default: every epoch reads the image files and response rows again
    (from the page cache, shared by every process). ``cache_images=True`` keeps each static
    image once read in the memory of the process that read it, as neuralpredictors' cache
    does: later epochs read no image files, at ~37 kB per 144x256 uint8 image per process,
    so up to a whole tier (~160 MB for 4,400 trials) in each ``DataLoader`` worker
    (BENCHMARKS.md, Numbers behind the code: image cache).

    On a lake, ``snapshot=N`` reads the lake as it was at snapshot N; without it the dataset
    reads the newest snapshot, and ``dataset.snapshot`` says which, so the same dataset can
    be made again later (until ``scandb gc`` expires that snapshot). None for a file.
    """

    def __init__(self, db_path: str | Path, selection: Selection, keys: Sequence[str] | None = None, *,
                 normalize: bool = True, neurons: Neurons | None = None, image_dtype: str = "float32",
                 scan: str | None = None, params: Sequence | None = None, wait: float = DEFAULT_WAIT,
                 frames: int | None = None, cache_images: bool = False, snapshot: int | None = None):
        self.db_path = str(db_path)
        self.frames = frames
        self.normalize = normalize
        self.neurons = neurons
        self.image_dtype = image_dtype
        self.wait = wait
        self.cache_images = cache_images
        with open_pinned(self.db_path, wait, snapshot) as db, db.database.lease():
            self.snapshot = db.database.snapshot
            try:
                selected = db.select(selection, params=params, scan=scan)
            except UsageError:
                if _names_sessions(db, selection, params):
                    raise UsageError("the selection names experanto sessions: train on their chunks with "
                                     "scandb.torchdata.SessionDataset (SessionDataset.per_session for several)"
                                     ) from None
                raise
            info = db.fetch(selected, "tier", "n_frames", "responses_withheld", "behavior_withheld")
            kinds = dict(db.sql("SELECT scan_key, kind FROM scans").fetchall())
            selected_kinds = {kinds[s] for s in selected["scan_key"].to_pylist()}
            self.dynamic = selected_kinds == {"dynamic"}
            if keys is None:
                keys = VIDEO_DATA_KEYS if self.dynamic else DATA_KEYS
            self.keys = tuple(keys)
            if not self.keys:
                raise UsageError("ScanDataset needs at least one key, e.g. keys=('images', 'responses')")
            self.point = point_class(self.keys)
            self._check_withheld(selected, info)
            self._check(db, selected)
            self._readers, self._columns = self._read_everything(db, selected)
        self.scan_keys = np.asarray(selected["scan_key"].to_pylist(), dtype=object)
        self.trial_ids = selected["trial_id"].to_numpy()
        self.n_frames = np.asarray(info["n_frames"]).astype(np.int64) if self.dynamic else None
        self.train = np.asarray(info["tier"] == "train", dtype=bool)
        if self.dynamic and frames is not None:
            short = self.n_frames < frames
            if short.any():
                row = int(np.flatnonzero(short)[0])
                raise UsageError(f"frames={frames} is longer than trial {self.trial_ids[row]} of scan "
                                 f"{self.scan_keys[row]} ({self.n_frames[row]} valid frames); pick a smaller "
                                 "frames= or leave out trials WHERE n_frames < frames")

    @classmethod
    def per_scan(cls, db_path: str | Path, selection: Selection, keys: Sequence[str] | None = None, **options
                 ) -> dict[str, "ScanDataset"]:
        """One dataset per scan in the selection, by scan key, in the selection's order.

        ``options`` are the constructor's; ``neurons=`` applies to each scan's dataset (a
        list picks the same positions in each).
        """
        with open_pinned(db_path, options.get("wait", DEFAULT_WAIT), options.get("snapshot")) as db:
            selected = db.select(selection, params=options.pop("params", None), scan=options.pop("scan", None))
            options["snapshot"] = db.database.snapshot
        scans = dict.fromkeys(selected["scan_key"].to_pylist())
        scan_column = selected["scan_key"].to_numpy(zero_copy_only=False)
        return {scan: cls(db_path, selected.filter(pa.array(scan_column == scan)), keys, **options)
                for scan in scans}

    def _check_withheld(self, selected: pa.Table, info: dict) -> None:
        """Normalised training on zero-filled (withheld) responses or behavior is refused."""
        if not self.normalize:
            return
        for key, column in (("responses", "responses_withheld"), ("behavior", "behavior_withheld")):
            if key not in self.keys and not (key == "behavior" and "pupil_center" in self.keys):
                continue
            withheld = np.flatnonzero(np.asarray(info[column], dtype=object) == True)  # noqa: E712 (NULL aware)
            if len(withheld):
                row = int(withheld[0])
                raise UsageError(f"{len(withheld)} selected trials have withheld {key} (all zero in the "
                                 f"released data, e.g. scan {selected['scan_key'][row]} trial "
                                 f"{selected['trial_id'][row]}): select WHERE NOT {column}, or pass normalize=False")

    def _check(self, db: ScanDB, selected: pa.Table) -> None:
        """Fetch one trial of each scan: any problem a batch could meet shows now."""
        scans = selected["scan_key"].to_numpy(zero_copy_only=False)
        first = np.sort(np.unique(scans, return_index=True)[1]) if len(scans) else np.array([], np.int64)
        sample = selected.take(pa.array(first, pa.int64()))
        options = dict(normalize=self.normalize, neurons=self.neurons, image_dtype=self.image_dtype)
        by_scan = db.fetch(sample, *self.keys, per_scan=True, **options)
        for key in self.keys:
            shapes = {scan: arrays[key].shape[1:] for scan, arrays in by_scan.items()}
            if len(set(shapes.values())) > 1:
                sizes = ", ".join(f"{scan}: {shape}" for scan, shape in shapes.items())
                raise UsageError(f"the selection spans scans whose {key} differ in size ({sizes}); a dataset "
                                 "yields equal-sized items: make one dataset per scan with "
                                 "ScanDataset.per_scan(...), or pass neurons= with as many neurons per scan")
        db.fetch(sample, *self.keys, **options)

    def _read_everything(self, db: ScanDB, selected: pa.Table) -> tuple[Readers, dict[str, np.ndarray]]:
        """The readers of the selected scans with all they read from SQL already read, detached
        from the database; and the selection's values of keys that are trials_full columns."""
        scans = list(dict.fromkeys(selected["scan_key"].to_pylist()))
        picked = neuron_choice.picks(db.readers, scans, self.neurons)
        self.neurons = None if picked is None else {scan: picked[scan] for scan in scans}
        files_only = _FilesOnly(db.database.store)
        readers = Readers(files_only)
        for scan in scans:
            reader = db.readers.get(scan)
            reader.prepare(self.keys, self.normalize, self.cache_images)
            reader.detach(files_only)
            readers.adopt(reader)
        columns = {key: fetching.trial_column(db.conn, selected, key) for key in self.keys if key not in DATA_KEYS + VIDEO_DATA_KEYS}
        return readers, columns

    def __len__(self) -> int:
        return len(self.trial_ids)

    def __getitem__(self, index: int):
        return self.__getitems__([index])[0]

    def __getitems__(self, indexes: Sequence[int]) -> list:
        if self.dynamic:
            windows = [self._window(int(i)) for i in indexes]
            if len({stop - start for start, stop in windows}) > 1:
                return [self._items(np.array([i], np.int64), [w])[0] for i, w in zip(indexes, windows)]
            return self._items(np.asarray(indexes, dtype=np.int64), windows)
        return self._items(np.asarray(indexes, dtype=np.int64))

    def _window(self, row: int) -> tuple[int, int]:
        """frames= consecutive frames from a random start inside a train trial's valid length,
        else the whole valid length (torch's generator: seeded per DataLoader worker)."""
        length = int(self.n_frames[row])
        if self.frames is None or not self.train[row]:
            return 0, length
        start = int(torch.randint(0, length - self.frames + 1, ()).item())
        return start, start + self.frames

    def _items(self, rows: np.ndarray, windows: list[tuple[int, int]] | None = None) -> list:
        """Items of these rows, read from the store's files only (``windows``: one per row, of one length)."""
        if not self._reading_rows and torch.utils.data.get_worker_info() is not None:
            self._read_rows_in_worker()
        batch = pa.table({"scan_key": pa.array(self.scan_keys[rows].tolist(), pa.string()),
                          "trial_id": pa.array(self.trial_ids[rows], pa.int64())})
        data_keys = [k for k in self.keys if k in DATA_KEYS + VIDEO_DATA_KEYS]
        arrays = fetching.fetch(self._readers, batch, data_keys, normalize=self.normalize,
                                neurons=self.neurons, image_dtype=self.image_dtype, frames=windows)
        arrays.update({key: values[rows] for key, values in self._columns.items()})
        if "videos" in arrays:  # (n, H, W, F) -> (n, 1, F, H, W), time first as the 2023 loader yields
            arrays["videos"] = np.ascontiguousarray(np.moveaxis(arrays["videos"], -1, 1)[:, None])
        columns = tuple(arrays[k] for k in self.keys)
        return Batch([self.point(*fields) for fields in zip(*columns)], columns)

    _reading_rows = False

    def _read_rows_in_worker(self) -> None:
        """In a DataLoader worker, read static response rows with ``preadv`` rather than from
        the memory map: the matrix's pages then stay in the shared page cache instead of
        counting again in each worker's memory (BENCHMARKS.md, "DataLoader epochs")."""
        for reader in self._readers:
            reader.read_rows_without_mapping()
        self._reading_rows = True


def open_pinned(db_path: str | Path, wait: float, snapshot: int | None) -> ScanDB:
    """The database read at one snapshot: ``snapshot``, else on a lake the newest one now, so
    every query that makes a dataset sees the same commit whatever other processes write."""
    db = connect(db_path, wait=wait, snapshot=snapshot)
    if snapshot is not None or not db.database.has_snapshots:
        return db
    newest = db.snapshot
    db.close()
    return connect(db_path, wait=wait, snapshot=newest)


def _names_sessions(db: ScanDB, selection, params) -> bool:
    """Whether a selection ScanDataset refused is SQL whose ``scan_key`` column names sessions."""
    if not isinstance(selection, str):
        return False
    try:
        relation = db.sql(selection, params=params)
        if relation is None or "scan_key" not in relation.columns:
            return False
        keys = {row[0] for row in relation.select("scan_key").fetchall()}
        kinds = dict(db.sql("SELECT scan_key, kind FROM scans").fetchall())
    except Exception:  # not SQL a relation comes from: the original refusal stands
        return False
    return bool(keys) and all(kinds.get(key) == "experanto" for key in keys)


class _FilesOnly:
    """Stands in for the database in a dataset's readers, which read only the store's files."""

    def __init__(self, store: Folder):
        self.store = store

    @property
    def conn(self):
        raise RuntimeError("ScanDataset reads only the store's files; everything from SQL is read when it is made")


from .torchsessions import ChunkSampler, SessionDataset, SessionLoader  # noqa: E402,F401
