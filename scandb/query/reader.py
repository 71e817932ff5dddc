"""One scan's arrays, read once and kept: what every fetch of that scan needs.

A ``ScanReader`` holds a scan's response matrix memory-mapped, its per-trial behavior,
pupil position and image keys as small arrays indexed by trial id, and the statistics
its normalisation uses. After the first fetch of a scan, a batch of trials costs no SQL.
What differs by kind of scan is in ``static_reader.py`` and ``dynamic_reader.py``; every
file is read through the database's store (``store/folder.py``).
"""

from __future__ import annotations

from functools import cached_property

import duckdb
import numpy as np

from ..catalog.database import Database
from ..errors import DatabaseError, UsageError
from ..keys import STIMULUS_KEY
from ..maintenance.digests import store_folder
from ..source.npyfile import MAX_HEADER, NpyError, header_length, parse_header
from ..source.npyfile import load as load_npy
from ..store.folder import Folder
from ..store.meta import stored_content
from .normalize import NEEDED, normalize
from .ranged import RangedMatrix


def read_statistic(conn: duckdb.DuckDBPyConnection, scan: str, variable: str, stat: str,
                   source: str = "all", store: Folder | None = None) -> np.ndarray | None:
    """One meta/statistics array with its stored dtype and shape, or None when not stored;
    from its row, or from its file in the database's ``store``."""
    row = conn.execute("""
        SELECT s.dtype, s.shape, s.data, f.stored_as FROM statistics s
        LEFT JOIN scan_files f ON f.scan_key = s.scan_key
             AND f.path = 'meta/statistics/' || s.variable || '/' || s.source || '/' || s.stat || '.npy'
        WHERE s.scan_key = ? AND s.variable = ? AND s.source = ? AND s.stat = ?""",
                       [scan, variable, source, stat]).fetchone()
    if row is None:
        return None
    dtype, shape, data, stored_as = row
    if data is not None:
        return np.array(data, dtype=np.float64).astype(dtype).reshape(shape)
    array = None
    if stored_as is not None:
        try:
            array = load_npy(stored_content(store or store_folder(conn), stored_as))
        except NpyError as exc:
            raise DatabaseError(f"{stored_as}: statistic {variable}/{source}/{stat} of scan {scan} unreadable "
                                f"({exc}); run 'scandb verify'") from None
    if array is None or array.dtype.str != dtype or list(array.shape) != list(shape):
        raise DatabaseError(f"scan {scan}: statistic {variable}/{source}/{stat} has no values or a file of "
                            f"another shape ({stored_as}); run 'scandb verify'")
    return array.copy()


IDENTITY = "ingested_at::VARCHAR || ' ' || source_sha256"
"""What differs between two ingests of one scan key (a replace): a reader of the scan's
older ingest is stale, one of the same ingest is not, whatever else was written since."""


class ScanReader:
    """Fetches rows of one scan; everything is read on first use and kept. Subclasses say
    how a kind of scan's trials are read (``rows``, ``images``, ``responses``)."""

    kind: str

    def __init__(self, database: Database, scan: str, n_trials: int, n_neurons: int,
                 image_shape: tuple[int, ...], image_dtype: str, behavior_dtype: str, pupil_dtype: str,
                 identity: str | None = None):
        self.database = database
        self.scan = scan
        self.n_trials = n_trials
        self.n_neurons = n_neurons
        self.image_shape = image_shape
        self.image_dtype = np.dtype(image_dtype)
        self.dtypes = {"behavior": np.dtype(behavior_dtype), "pupil_center": np.dtype(pupil_dtype)}
        self._statistics: dict[str, dict[str, np.ndarray]] = {}
        self.identity = identity
        """The scan's ingest this reader reads (see ``IDENTITY``)."""

    frames: int | None = None
    """T, the padded frames of a dynamic scan's trials (None for a static scan)."""

    @cached_property
    def store(self) -> Folder:
        """Where the scan's files are: every read goes through it."""
        return self.database.store

    @property
    def stimulus(self) -> str:
        return STIMULUS_KEY[self.kind]

    # -- what each kind reads ---------------------------------------------------------------

    _trials: dict[str, np.ndarray]
    """Per-trial arrays by trial id (behavior, pupil position, image keys...), read once."""

    def matrix_shape(self, n_trials: int, n_neurons: int) -> tuple[int, ...]:
        raise NotImplementedError

    def rows(self, key: str, trial_ids: np.ndarray, frames=None) -> np.ndarray:
        raise NotImplementedError

    def images(self, trial_ids: np.ndarray, frames=None) -> np.ndarray:
        raise NotImplementedError

    def responses(self, trial_ids: np.ndarray, frames=None) -> np.ndarray:
        raise NotImplementedError

    # -- reading ahead, for a dataset that never holds the database ------------------------

    def prepare(self, keys, normalize: bool, cache_images: bool = False) -> None:
        """Read now everything SQL gives that fetching ``keys`` needs (per-trial arrays, a
        matrix kept in SQL, statistics), so that afterwards only store files are read."""
        self._trials  # noqa: B018
        if "responses" in keys and self._matrix is None:  # a scan ingested without its matrix file
            self.__dict__["_matrix"] = self.responses(np.arange(self.n_trials))
        if normalize:
            for key in set(keys) & set(NEEDED):
                self._statistics_of(key)

    def detach(self, database) -> None:
        """Read through ``database`` from now on (a stand-in that has only the store)."""
        self.store = database.store
        self.database = database

    def read_rows_without_mapping(self) -> None:
        """In a DataLoader worker: avoid mapping pages this process would be charged for."""

    @cached_property
    def _withheld(self) -> dict[str, np.ndarray]:
        """Per trial id: responses / behavior withheld (zero-filled in the released data)."""
        rows = self.database.conn.execute(
            "SELECT trial_id, coalesce(responses_withheld, false) AS r, coalesce(behavior_withheld, false) AS b "
            "FROM trials WHERE scan_key = ? ORDER BY trial_id", [self.scan]).fetchnumpy()
        responses = np.zeros(self.n_trials, bool)
        behavior = np.zeros(self.n_trials, bool)
        responses[rows["trial_id"]] = rows["r"]
        behavior[rows["trial_id"]] = rows["b"]
        return {"responses": responses, "behavior": behavior, "pupil_center": behavior}

    def refuse_withheld(self, key: str, trial_ids: np.ndarray) -> None:
        """Normalising zero-filled data would train on zeros: a UsageError naming the trials."""
        flags = self._withheld.get(key)
        if flags is None:
            return
        withheld = np.unique(trial_ids[flags[trial_ids]])
        if len(withheld):
            column = "responses_withheld" if key == "responses" else "behavior_withheld"
            raise UsageError(f"scan {self.scan}: {len(withheld)} selected trial{'s' if len(withheld) != 1 else ''} "
                             f"(e.g. trial {withheld[0]}) {'have' if len(withheld) != 1 else 'has'} withheld {key} "
                             f"(all zero in the released data; trials.{column}): leave them out "
                             f"(WHERE NOT {column}) or pass normalize=False")

    def _read_matrix(self, jobs: list[tuple[str, int, memoryview]], parallel: bool = True) -> None:
        """Byte ranges of the response matrix into their buffers; a missing or short file is
        a DatabaseError naming it."""
        for got, (key, _, buffer) in zip(self.store.read_ranges(jobs, parallel), jobs):
            if isinstance(got, OSError):
                raise DatabaseError(f"{self.store.path(key)}: response matrix of scan {self.scan} unreadable "
                                    f"({got.strerror or got}); run 'scandb verify'")
            if got != len(buffer):
                raise DatabaseError(f"{self.store.path(key)}: response matrix of scan {self.scan} is shorter "
                                    "than its shape; run 'scandb verify'")

    @cached_property
    def _matrix(self) -> np.ndarray | None:
        """The (n_trials, n_neurons) matrix, memory-mapped read-only, or None."""
        if "_matrix_row" not in self.__dict__:
            self._matrix_row = self.database.conn.execute("SELECT path, n_trials, n_neurons FROM response_matrices "
                                                          "WHERE scan_key = ?", [self.scan]).fetchone()
        row = self._matrix_row
        if row is None:
            return None
        if self.store.reads_by_range:
            return self._ranged_matrix(row[0], self.matrix_shape(row[1], row[2]))
        path = self.store.path(row[0])  # memory-mapped: the local store's fast path
        try:
            mapped = np.load(path, mmap_mode="r", allow_pickle=False)
            matrix = np.asarray(mapped)
            self._matrix_file = (row[0], mapped.offset)
        except OSError as exc:
            raise DatabaseError(f"{path}: response matrix of scan {self.scan} unreadable "
                                f"({exc.strerror or exc}); run 'scandb verify'") from None
        shape = self.matrix_shape(row[1], row[2])
        if matrix.shape != shape or matrix.dtype != np.float32:
            raise DatabaseError(f"{path}: response matrix of scan {self.scan} is {matrix.shape} "
                                f"{matrix.dtype}, expected {shape} float32; run 'scandb verify'")
        return matrix

    def _ranged_matrix(self, key: str, shape: tuple[int, ...]) -> RangedMatrix:
        """The matrix of ``key`` read by range (a bucket's object), its header checked as the
        memory map's would be."""
        path = self.store.path(key)

        def first(n: int) -> bytes:
            prefix = bytearray(n)
            got = self.store.read_ranges([(key, 0, memoryview(prefix))])[0]
            if isinstance(got, OSError):
                raise DatabaseError(f"{path}: response matrix of scan {self.scan} unreadable "
                                    f"({got.strerror or got}); run 'scandb verify'")
            return bytes(prefix[:got])
        try:
            header = parse_header(first(min(header_length(first(12)), MAX_HEADER + 12)))
        except NpyError as exc:
            raise DatabaseError(f"{path}: response matrix of scan {self.scan} unreadable ({exc}); "
                                "run 'scandb verify'") from None
        if header.shape != shape or header.dtype != np.float32 or header.fortran_order:
            raise DatabaseError(f"{path}: response matrix of scan {self.scan} is {header.shape} "
                                f"{header.dtype}, expected {shape} float32; run 'scandb verify'")
        self._matrix_file = (key, header.data_offset)
        return RangedMatrix(self._read_matrix, key, header.data_offset, shape, getattr(self.store, "kept_file", None))

    def __getstate__(self) -> dict:
        """A pickled reader (a DataLoader worker's copy) maps the matrix file again rather
        than carrying its contents."""
        state = self.__dict__.copy()
        if state.get("_matrix_row") is not None:
            state.pop("_matrix", None)
        return state

    def neuron_indexes(self, wanted: np.ndarray, by: str = "neuron_idx") -> np.ndarray:
        """Positions in the response rows of neurons named by ``neuron_idx`` or ``unit_id``."""
        wanted = np.asarray(wanted).astype(np.int64, copy=False).reshape(-1)
        if by == "neuron_idx":
            unknown = wanted[(wanted < 0) | (wanted >= self.n_neurons)]
            if len(unknown):
                raise UsageError(f"scan {self.scan!r} has neurons 0..{self.n_neurons - 1}; neurons= names "
                                 f"{_few(unknown)}")
            return wanted
        known = self.database.conn.execute("SELECT unit_id, neuron_idx FROM neurons WHERE scan_key = ?",
                                           [self.scan]).fetchnumpy()
        lookup = dict(zip(known["unit_id"].tolist(), known["neuron_idx"].tolist()))
        unknown = [w for w in wanted.tolist() if w not in lookup]
        if unknown:
            raise UsageError(f"scan {self.scan!r} has no neurons with unit_id {_few(unknown)}")
        return np.array([lookup[w] for w in wanted.tolist()], dtype=np.int64)

    # -- normalisation --------------------------------------------------------------------

    def normalized(self, key: str, block: np.ndarray, neurons: np.ndarray | None = None,
                   frames: slice = slice(None)) -> np.ndarray:
        """Rows of ``key`` normalised with this scan's statistics (float32); a dynamic scan's
        time-resolved statistics are cut to the same ``frames``."""
        return normalize(key, block, self._statistics_of(key), neurons, frames)

    def _statistics_of(self, key: str) -> dict[str, np.ndarray]:
        if key not in self._statistics:
            found = {stat: read_statistic(self.database.conn, self.scan, key, stat, store=self.store)
                     for stat in NEEDED[key]}
            missing = [f"meta/statistics/{key}/all/{stat}.npy" for stat, value in found.items() if value is None]
            if missing:
                raise UsageError(f"scan {self.scan}: normalize=True needs {' and '.join(missing)}, which the scan "
                                 "did not ship; pass normalize=False or ingest the scan with its statistics")
            self._statistics[key] = found
        return self._statistics[key]


def _few(values, limit: int = 5) -> str:
    values = list(values)
    shown = ", ".join(str(v) for v in values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


