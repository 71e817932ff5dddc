"""The Python layer: connect, select trials with SQL, fetch aligned numpy arrays.

A selection is anything naming trials by ``scan_key`` and ``trial_id``: an SQL query
returning those columns, a DataFrame or Arrow table with them (what ``trials()`` returns),
or a list of ``(scan_key, trial_id)`` pairs. Arrays come back row by row in the
selection's order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .catalog.database import DEFAULT_DB, Database
from .catalog.transaction import explain
from .errors import BadScanError, DatabaseError, UsageError
from .query.normalize import Normalizer
from .source.npyfile import load as load_npy

if TYPE_CHECKING:
    from .ingest import IngestResult
    from .ingest.writer import Progress
    from .maintenance.checks import RemoveResult, VerifyReport
    from .query.summary import ScanSummary

DATA_KEYS = ("images", "responses", "behavior", "pupil_center")
BEHAVIOR_COLUMNS = ("pupil_dilation", "pupil_dilation_derivative", "running_speed")
PUPIL_COLUMNS = ("pupil_x", "pupil_y")
ARROW_BATCH = 2048
"""Rows per Arrow batch when exporting list columns (a default batch of wide lists can
try to allocate tens of GiB on DuckDB 1.5)."""

Selection = str | pd.DataFrame | pa.Table | Sequence[tuple[str, int]]


def connect(path: str | Path = DEFAULT_DB, read_only: bool = True, wait: float = 0.0) -> "ScanDB":
    """Open a scandb database; read-only by default so many processes can read one file.

    ``read_only=False`` opens it for ``ingest``, ``remove`` and ``migrate`` (creating the
    file when there is none); DuckDB then keeps every other process out until ``close()``.
    """
    db = Database(path, read_only=read_only, wait=wait)
    try:
        if read_only:
            db.check_revision()
    except BaseException:
        db.close()
        raise
    return ScanDB(db)


class ScanDB:
    """A scandb database opened for queries (a context manager).

    One DuckDB connection underneath: use one ScanDB per thread or process.
    """

    def __init__(self, db: Database):
        self.database = db
        self.conn: duckdb.DuckDBPyConnection = db.conn
        self._normalizers: dict[str, Normalizer] = {}
        self._matrices: dict[str, np.ndarray | None] = {}
        self._scan_tables: dict[str, _ScanTables | None] = {}

    # -- SQL ------------------------------------------------------------------------------

    def sql(self, query: str, params: Sequence | Mapping | None = None) -> duckdb.DuckDBPyRelation:
        """A DuckDB relation: ``.df()``, ``.arrow()``, ``.fetchall()``, ``.fetchnumpy()``."""
        if params is None:
            return self.conn.sql(query)
        return self.conn.sql(query, params=params)

    def run(self, query: str, params: Sequence | Mapping | None = None) -> tuple[list[str], list[tuple]]:
        """Column names and rows of one query; a failing query is a one-line UsageError."""
        try:
            relation = self.conn.execute(query, params or ())
            return [d[0] for d in relation.description or ()], relation.fetchall()
        except duckdb.Error as exc:
            raise explain(exc, "query", users_sql=True) from None

    def _df(self, query: str, params: Sequence | Mapping = ()) -> pd.DataFrame:
        return self.conn.execute(query, params).df()

    # -- tables ---------------------------------------------------------------------------

    def scans(self) -> pd.DataFrame:
        return self._df("SELECT * FROM scans ORDER BY scan_key")

    def trials(self, scan: str | Iterable[str] | None = None, tier: str | Iterable[str] | None = None,
               image_id: int | Iterable[int] | None = None, where: str | None = None,
               params: Sequence | None = None) -> pd.DataFrame:
        """Trials with behavior and image path, filtered; ``where`` is extra SQL with ``?`` params."""
        clauses, values = _filters(scan_key=scan, tier=tier, image_id=image_id)
        if where:
            clauses.append(f"({where})")
            values.extend(params or ())
        return self._df(f"SELECT * FROM trials_full {_where(clauses)} ORDER BY scan_key, trial_id", values)

    def neurons(self, scan: str | Iterable[str] | None = None, area: str | Iterable[str] | None = None,
                layer: str | Iterable[str] | None = None, unit_id: int | Iterable[int] | None = None
                ) -> pd.DataFrame:
        clauses, values = _filters(scan_key=scan, area=area, layer=layer, unit_id=unit_id)
        return self._df(f"SELECT * FROM neurons {_where(clauses)} ORDER BY scan_key, neuron_idx", values)

    def repeats(self, scan: str, tier: str = "test") -> dict[int, np.ndarray]:
        """Trial ids of each image shown in a tier, by image id (test images repeat ~10 times)."""
        rows = self.conn.execute(
            "SELECT image_id, list(trial_id ORDER BY trial_id) FROM trials WHERE scan_key = ? AND tier = ? "
            "GROUP BY image_id ORDER BY image_id", [scan, tier]).fetchall()
        return {image_id: np.array(ids, dtype=np.int64) for image_id, ids in rows}

    def statistic(self, scan: str, variable: str, stat: str, source: str = "all") -> np.ndarray:
        """One meta/statistics array, with its stored dtype and shape."""
        row = self.conn.execute(
            "SELECT dtype, shape, data FROM statistics WHERE scan_key = ? AND variable = ? AND source = ? "
            "AND stat = ?", [scan, variable, source, stat]).fetchone()
        if row is None:
            raise UsageError(f"no statistic {variable}/{source}/{stat} for scan {scan!r}")
        dtype, shape, data = row
        return np.array(data, dtype=np.float64).astype(dtype).reshape(shape)

    def file(self, scan: str, path: str) -> np.ndarray | bytes:
        """A file the scan shipped outside data/ (meta arrays, config.json), as it was."""
        row = self.conn.execute("SELECT content FROM scan_files WHERE scan_key = ? AND path = ?",
                                [scan, path]).fetchone()
        if row is None:
            raise UsageError(f"scan {scan!r} has no file {path!r}")
        return load_npy(row[0]).copy() if path.endswith(".npy") else row[0]

    # -- arrays ---------------------------------------------------------------------------

    def fetch(self, selection: Selection, *keys: str, normalize: bool = False,
              neurons: pd.DataFrame | Mapping[str, Sequence[int]] | None = None, per_scan: bool = False,
              image_dtype: str | np.dtype | None = None, params: Sequence | None = None
              ) -> dict[str, np.ndarray] | dict[str, dict[str, np.ndarray]]:
        """Arrays for the selected trials, aligned row by row with the selection.

        ``keys`` are data keys (images, responses, behavior, pupil_center; all four when
        none are given) or trial columns of ``trials_full`` by name. ``neurons`` picks
        neurons per scan, in order: a DataFrame with scan_key and neuron_idx (or unit_id)
        columns, or a mapping of scan key to neuron_idx lists. With ``per_scan=True`` the
        result is one dict of arrays per scan key, which allows scans of different sizes.
        """
        keys = keys or DATA_KEYS
        selected = self._resolve(selection, params)
        if per_scan:
            out = {}
            for scan in dict.fromkeys(selected["scan_key"].to_pylist()):
                mask = pc.equal(selected["scan_key"], scan)
                out[scan] = self._fetch(selected.filter(mask), keys, normalize, neurons, image_dtype)
            return out
        return self._fetch(selected, keys, normalize, neurons, image_dtype)

    def responses(self, selection: Selection, neurons=None, normalize: bool = False) -> np.ndarray:
        """The (n_trials, n_neurons) float32 response matrix, in the order asked."""
        return self.fetch(selection, "responses", neurons=neurons, normalize=normalize)["responses"]

    def images(self, selection: Selection, dtype=None, normalize: bool = False) -> np.ndarray:
        return self.fetch(selection, "images", image_dtype=dtype, normalize=normalize)["images"]

    def _fetch(self, selected: pa.Table, keys: Sequence[str], normalize: bool, neurons, image_dtype
               ) -> dict[str, np.ndarray]:
        scans = selected["scan_key"].to_numpy(zero_copy_only=False)
        trial_ids = selected["trial_id"].to_numpy()
        self._check_exists(scans, trial_ids)
        out = {}
        for key in keys:
            if key == "responses":
                out[key] = self._responses(scans, trial_ids, neurons, normalize)
            elif key == "images":
                out[key] = self._images(scans, trial_ids, normalize, image_dtype)
            elif key in ("behavior", "pupil_center"):
                out[key] = self._small_arrays(scans, trial_ids, key, normalize)
            else:
                out[key] = self._trial_column(selected, key)
        return out

    def _resolve(self, selection: Selection, params: Sequence | None) -> pa.Table:
        if isinstance(selection, str):
            try:
                table = self.conn.execute(selection, params or ()).to_arrow_reader(ARROW_BATCH).read_all()
            except duckdb.Error as exc:
                raise explain(exc, "selection query", users_sql=True) from None
        elif isinstance(selection, pd.DataFrame):
            table = pa.Table.from_pandas(selection, preserve_index=False)
        elif isinstance(selection, pa.Table):
            table = selection
        else:
            pairs = list(selection)
            table = pa.table({"scan_key": pa.array([p[0] for p in pairs], pa.string()),
                              "trial_id": pa.array([p[1] for p in pairs], pa.int64())})
        missing = {"scan_key", "trial_id"} - set(table.column_names)
        if missing:
            raise UsageError(f"a selection needs columns scan_key and trial_id; missing {', '.join(sorted(missing))}")
        return pa.table({"scan_key": table["scan_key"].cast(pa.string()),
                         "trial_id": table["trial_id"].cast(pa.int64())})

    def _check_exists(self, scans: np.ndarray, trial_ids: np.ndarray) -> None:
        missing = np.zeros(len(scans), bool)
        for scan in dict.fromkeys(scans):
            rows = scans == scan
            tables = self._tables(scan)
            n_trials = tables.n_trials if tables else 0
            missing[rows] = (trial_ids[rows] < 0) | (trial_ids[rows] >= n_trials)
        if missing.any():
            shown = ", ".join(f"({scans[i]}, {trial_ids[i]})" for i in np.flatnonzero(missing)[:3])
            raise UsageError(f"selected trials not in the database: {shown}")

    def _tables(self, scan: str) -> "_ScanTables | None":
        """A scan's small per-trial arrays, read once: batches then need no SQL at all."""
        if scan not in self._scan_tables:
            self._scan_tables[scan] = _ScanTables.read(self.conn, scan)
        return self._scan_tables[scan]

    def _gather(self, scans: np.ndarray, trial_ids: np.ndarray, column: str) -> np.ndarray:
        """Rows of one per-trial array, across the selection's scans, in the selection's order."""
        order = list(dict.fromkeys(scans))
        if len(order) == 1:
            return getattr(self._tables(order[0]), column)[trial_ids]
        first = getattr(self._tables(order[0]), column)
        dtypes = {getattr(self._tables(scan), column).dtype for scan in order}
        out = np.empty((len(scans), *first.shape[1:]), dtype=np.result_type(*dtypes))
        for scan in order:
            rows = scans == scan
            out[rows] = getattr(self._tables(scan), column)[trial_ids[rows]]
        return out

    def _responses(self, scans: np.ndarray, trial_ids: np.ndarray, neurons, normalize: bool) -> np.ndarray:
        order = list(dict.fromkeys(scans))
        picks = self._neuron_picks(order, neurons) or {}
        widths = {scan: len(picks[scan]) if picks else self._tables(scan).n_neurons for scan in order}
        if len(set(widths.values())) > 1:
            sizes = ", ".join(f"{s}: {w}" for s, w in widths.items())
            raise UsageError(f"the selection spans scans with different neuron counts ({sizes}); "
                             "pass per_scan=True, or neurons= with as many neurons per scan")
        if len(order) == 1 and not picks and not normalize:
            return self._scan_responses(order[0], trial_ids)
        out = np.empty((len(scans), widths[order[0]] if order else 0), np.float32)
        for scan in order:
            rows = np.flatnonzero(scans == scan)
            block = self._scan_responses(scan, trial_ids[rows])
            if scan in picks:
                block = block[:, picks[scan]]
            if normalize:
                block = self._normalizer(scan).responses(block, picks.get(scan))
            out[rows] = block
        return out

    def _scan_responses(self, scan: str, trial_ids: np.ndarray) -> np.ndarray:
        """Rows of one scan's response matrix, from its file (or from SQL for scans ingested
        before response matrices existed)."""
        matrix = self._matrix(scan)
        if matrix is not None:
            return matrix[trial_ids]
        self.conn.register("_wanted", pa.table({"trial_id": pa.array(trial_ids, pa.int64()),
                                                "pos": pa.array(np.arange(len(trial_ids)))}))
        try:
            table = self.conn.execute(
                "SELECT r.response FROM _wanted w JOIN responses r ON r.trial_id = w.trial_id AND r.scan_key = ? "
                "ORDER BY w.pos", [scan]).to_arrow_reader(ARROW_BATCH).read_all()
        finally:
            self.conn.unregister("_wanted")
        column = table["response"].combine_chunks()
        values = column.values.to_numpy(zero_copy_only=False)
        return values.reshape(len(column), -1).copy()

    def _matrix(self, scan: str) -> np.ndarray | None:
        """The scan's (n_trials, n_neurons) matrix, memory-mapped read-only, or None."""
        if scan not in self._matrices:
            row = self.conn.execute("SELECT path, n_trials, n_neurons FROM response_matrices WHERE scan_key = ?",
                                    [scan]).fetchone()
            matrix = None
            if row is not None:
                path = self.database.path.parent / row[0]
                try:
                    matrix = np.asarray(np.load(path, mmap_mode="r", allow_pickle=False))
                except OSError as exc:
                    raise DatabaseError(f"{path}: response matrix of scan {scan} unreadable "
                                        f"({exc.strerror or exc}); run 'scandb verify'") from None
                if matrix.shape != (row[1], row[2]) or matrix.dtype != np.float32:
                    raise DatabaseError(f"{path}: response matrix of scan {scan} is {matrix.shape} "
                                        f"{matrix.dtype}, expected ({row[1]}, {row[2]}) float32; "
                                        "run 'scandb verify'")
            self._matrices[scan] = matrix
        return self._matrices[scan]

    def _neuron_picks(self, scans: Iterable[str], neurons) -> dict[str, np.ndarray] | None:
        if neurons is None:
            return None
        picks: dict[str, np.ndarray] = {}
        if isinstance(neurons, pd.DataFrame):
            by = "neuron_idx" if "neuron_idx" in neurons.columns else "unit_id"
            if by not in neurons.columns or "scan_key" not in neurons.columns:
                raise UsageError("neurons= needs scan_key and neuron_idx (or unit_id) columns")
            groups = {s: g[by].to_numpy() for s, g in neurons.groupby("scan_key", sort=False)}
        else:
            by, groups = "neuron_idx", {s: np.asarray(v) for s, v in neurons.items()}
        for scan in scans:
            if scan not in groups:
                raise UsageError(f"neurons= selects no neurons of scan {scan!r}")
            picks[scan] = self._neuron_indexes(scan, groups[scan], by)
        return picks

    def _neuron_indexes(self, scan: str, wanted: np.ndarray, by: str) -> np.ndarray:
        known = self.conn.execute(f"SELECT {by}, neuron_idx FROM neurons WHERE scan_key = ?", [scan]).fetchnumpy()
        lookup = dict(zip(known[by].tolist(), known["neuron_idx"].tolist()))
        unknown = [int(w) for w in wanted if int(w) not in lookup]
        if unknown:
            raise UsageError(f"scan {scan!r} has no neurons with {by} {unknown[:5]}")
        return np.array([lookup[int(w)] for w in wanted], dtype=np.int64)

    def _images(self, scans: np.ndarray, trial_ids: np.ndarray, normalize: bool, dtype) -> np.ndarray:
        paths = self._gather(scans, trial_ids, "image_paths").tolist()
        root = self.database.path.parent
        loaded = {p: load_npy((root / p).read_bytes()) for p in dict.fromkeys(paths)}
        shapes = {a.shape for a in loaded.values()}
        if len(shapes) > 1:
            raise UsageError(f"the selection spans scans with different image shapes ({sorted(shapes)}); "
                             "pass per_scan=True")
        stacked = np.stack([loaded[p] for p in paths]) if paths else np.empty((0,))
        if normalize:
            stacked = self._per_scan(scans, stacked, lambda nz, block: nz.images(block))
        if dtype is not None:
            stacked = stacked.astype(dtype)
        return stacked

    def _small_arrays(self, scans: np.ndarray, trial_ids: np.ndarray, key: str, normalize: bool) -> np.ndarray:
        matrix = self._gather(scans, trial_ids, key)
        if normalize:
            matrix = self._per_scan(scans, matrix, lambda nz, block: getattr(nz, key)(block))
        return matrix

    def _trial_column(self, selected: pa.Table, name: str) -> np.ndarray:
        allowed = {r[0] for r in self.conn.execute(
            "SELECT column_name FROM duckdb_columns() WHERE table_name = 'trials_full'").fetchall()}
        if name not in allowed:
            raise UsageError(f"unknown key {name!r}: use one of {', '.join(DATA_KEYS)} or a trials_full "
                             f"column ({', '.join(sorted(allowed))})")
        positions = pa.array(np.arange(selected.num_rows, dtype=np.int64))
        self.conn.register("_selection", selected.append_column("pos", positions))
        try:
            table = self.conn.execute(
                f'SELECT t."{name}" FROM _selection s JOIN trials_full t USING (scan_key, trial_id) ORDER BY s.pos'
            ).to_arrow_reader(ARROW_BATCH).read_all()
        finally:
            self.conn.unregister("_selection")
        return table[name].to_numpy(zero_copy_only=False)

    def _normalizer(self, scan: str) -> Normalizer:
        if scan not in self._normalizers:
            self._normalizers[scan] = Normalizer.from_statistics(
                lambda variable, stat: self.statistic(scan, variable, stat))
        return self._normalizers[scan]

    def _per_scan(self, scans: np.ndarray, array: np.ndarray, apply) -> np.ndarray:
        """Apply a normaliser to each scan's rows; the result is float32."""
        out = np.empty(array.shape, np.float32)
        for scan in dict.fromkeys(scans):
            rows = scans == scan
            out[rows] = apply(self._normalizer(scan), array[rows])
        return out

    # -- writing and upkeep ---------------------------------------------------------------

    def ingest(self, paths: str | Path | Iterable[str | Path], replace: bool = False, *,
               response_matrix: bool = True, keep_going: bool = False,
               progress: "Callable[[Path], Progress | None] | None" = None,
               on_result: "Callable[[IngestResult], None] | None" = None) -> list["IngestResult"]:
        """Load scans (zips or folders), one transaction each; returns one result per path.

        Re-ingesting the same content does nothing; a different file for a scan already
        present raises ``BadScanError`` unless ``replace=True``. A bad scan raises
        ``BadScanError`` (the scans before it stay ingested); with ``keep_going=True`` it is
        returned as a result with status ``'failed'`` and the remaining paths go in.
        """
        from .ingest import IngestResult, ingest as ingest_one
        from .maintenance.checks import collect_orphans

        self._require_writable("ingest")
        self.database.ensure_schema()
        collect_orphans(self.database)
        results = []
        for path in [paths] if isinstance(paths, (str, Path)) else list(paths):
            path = Path(path)
            try:
                result = ingest_one(self.database, path, replace=replace, response_matrix=response_matrix,
                                    progress=progress(path) if progress else None)
            except BadScanError as exc:
                if not keep_going:
                    raise
                result = IngestResult(str(path), "", "failed", error=exc)
            self._forget_cached()
            results.append(result)
            if on_result:
                on_result(result)
        return results

    def remove(self, scan: str) -> "RemoveResult":
        """Delete a scan: its rows in one transaction, then the files no other scan uses."""
        from .maintenance.checks import remove_scan

        self._require_writable("remove")
        self.database.check_revision()
        result = remove_scan(self.database, scan)
        self._forget_cached()
        return result

    def verify(self) -> "VerifyReport":
        """Check the rows agree with each other and with the files on disk."""
        from .maintenance.checks import verify

        return verify(self.database)

    def summary(self, scan: str) -> "ScanSummary":
        """What one scan holds: trials per tier, neurons per area and layer, images, statistics."""
        from .query.summary import scan_summary

        return scan_summary(self.conn, scan)

    def migrate(self, target: str = "head") -> tuple[str | None, str]:
        """Create the schema, or upgrade it to this scandb's revision; returns (before, after)."""
        self._require_writable("migrate")
        return self.database.upgrade(target)

    def _require_writable(self, action: str) -> None:
        if self.database.read_only:
            raise UsageError(f"{self.database.path}: opened read-only; to {action}, open it with "
                             "scandb.connect(path, read_only=False)")

    def _forget_cached(self) -> None:
        """Drop per-scan arrays read earlier: a write may have replaced them."""
        self._normalizers.clear()
        self._matrices.clear()
        self._scan_tables.clear()

    # -- lifetime -------------------------------------------------------------------------

    def close(self) -> None:
        self.database.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@dataclass(frozen=True)
class _ScanTables:
    """One scan's per-trial behavior, pupil position and image paths, indexed by trial_id."""

    n_trials: int
    n_neurons: int
    behavior: np.ndarray
    pupil_center: np.ndarray
    image_paths: np.ndarray

    @classmethod
    def read(cls, conn: duckdb.DuckDBPyConnection, scan: str) -> "_ScanTables | None":
        found = conn.execute("SELECT n_trials, n_neurons, behavior_dtype, pupil_center_dtype FROM scans "
                             "WHERE scan_key = ?", [scan]).fetchone()
        if found is None:
            return None
        n_trials, n_neurons, behavior_dtype, pupil_dtype = found
        rows = conn.execute(f"""
            SELECT t.trial_id, {', '.join(BEHAVIOR_COLUMNS + PUPIL_COLUMNS)}, i.path
            FROM trials t JOIN behavior b USING (scan_key, trial_id) JOIN images i USING (image_hash)
            WHERE t.scan_key = ? ORDER BY t.trial_id""", [scan]).fetchnumpy()
        if not np.array_equal(rows["trial_id"], np.arange(n_trials)):
            raise DatabaseError(f"scan {scan}: trials, behavior or images rows are incomplete; run 'scandb verify'")
        return cls(n_trials, n_neurons,
                   np.column_stack([rows[c] for c in BEHAVIOR_COLUMNS]).astype(behavior_dtype),
                   np.column_stack([rows[c] for c in PUPIL_COLUMNS]).astype(pupil_dtype),
                   np.asarray(rows["path"], dtype=object))


def _filters(**columns) -> tuple[list[str], list]:
    """Equality (or IN) clauses with bound parameters; column names are ours, never users'."""
    clauses, values = [], []
    for column, value in columns.items():
        if value is None:
            continue
        if isinstance(value, (str, int, np.integer)):
            clauses.append(f"{column} = ?")
            values.append(value.item() if isinstance(value, np.integer) else value)
        else:
            items = [v.item() if isinstance(v, np.integer) else v for v in value]
            clauses.append(f"{column} IN ({', '.join('?' * len(items)) or 'NULL'})")
            values.extend(items)
    return clauses, values


def _where(clauses: list[str]) -> str:
    return f"WHERE {' AND '.join(clauses)}" if clauses else ""
