"""Turning whatever names trials into one Arrow table of (scan_key, trial_id), checked.

A selection is SQL returning ``scan_key`` and ``trial_id`` (with ``params``), a DuckDB
relation or its ``.arrow()`` reader, a DataFrame or Arrow table with those columns, a list
of ``(scan_key, trial_id)`` pairs, or bare trial ids (a list, range, numpy array or Series,
e.g. from ``repeats()``) together with ``scan=``. Order and repeats are kept.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import numpy as np
import pyarrow as pa

from ..catalog.database import Database
from ..catalog.transaction import explain
from ..errors import UsageError
from .frames import is_dataframe, is_series
from ..keys import ARROW_BATCH
from .readers import Readers

COLUMNS = ("scan_key", "trial_id")

Selection = ("str | duckdb.DuckDBPyRelation | pandas.DataFrame | pa.Table | pa.RecordBatchReader"
             " | Sequence[tuple[str, int]] | Sequence[int] | np.ndarray | pandas.Series | range")
"""What names trials (a type for annotations; pandas is imported only by callers that use it)."""

SCHEMA = pa.schema([("scan_key", pa.string()), ("trial_id", pa.int64())])


def resolve(database: Database, selection: Selection, params: Sequence | None = None,
            scan: str | None = None) -> pa.Table:
    """The selection as a table of ``scan_key`` (string) and ``trial_id`` (int64), unchecked;
    only SQL opens the database."""
    if is_series(selection) or isinstance(selection, (np.ndarray, range)) or _is_id_list(selection):
        return _trial_ids(selection, scan)
    table = _as_table(database, selection, params)
    if scan is not None and "scan_key" not in table.column_names and "trial_id" in table.column_names:
        table = table.append_column("scan_key", pa.array([scan] * table.num_rows, pa.string()))
    missing = [c for c in COLUMNS if c not in table.column_names]
    if missing:
        hint = "; pass scan= when all its trials are of one scan" if missing == ["scan_key"] else ""
        raise UsageError(f"a selection needs columns scan_key and trial_id; missing {', '.join(missing)}{hint}")
    table = _typed(table)
    if scan is not None:
        others = set(table["scan_key"].unique().to_pylist()) - {scan}
        if others:
            raise UsageError(f"scan={scan!r}, but the selection names trials of {', '.join(sorted(others))}")
    return table


def check(selected: pa.Table, readers: Readers) -> None:
    """Every selected trial exists: unknown scans name the scans there are, trial ids
    outside a scan name its range."""
    scans = selected["scan_key"].to_numpy(zero_copy_only=False)
    trial_ids = selected["trial_id"].to_numpy()
    for scan in dict.fromkeys(scans.tolist()):
        reader = readers.get(scan)
        ids = trial_ids[scans == scan]
        outside = ids[(ids < 0) | (ids >= reader.n_trials)]
        if len(outside):
            more = f" and {len(outside) - 3} more" if len(outside) > 3 else ""
            raise UsageError(f"selected trials not in the database: scan {scan} has trials 0..{reader.n_trials - 1}, "
                             f"the selection names {', '.join(map(str, outside[:3].tolist()))}{more}")


def _as_table(database: Database, selection, params: Sequence | None) -> pa.Table:
    if isinstance(selection, str):
        if not selection.strip():
            raise UsageError("the selection query is empty")
        try:
            return database.conn.execute(selection, params or ()).to_arrow_reader(ARROW_BATCH).read_all()
        except duckdb.Error as exc:
            raise explain(exc, "selection query", users_sql=True) from None
    if isinstance(selection, duckdb.DuckDBPyRelation):
        wanted = [c for c in COLUMNS if c in selection.columns]
        try:
            # Only the two columns leave DuckDB, so a relation with wide list columns stays cheap.
            return selection.select(*wanted).to_arrow_table(ARROW_BATCH) if wanted else pa.table({})
        except duckdb.Error as exc:
            raise explain(exc, "selection relation", users_sql=True) from None
    if isinstance(selection, pa.RecordBatchReader):
        return selection.read_all()
    if isinstance(selection, pa.RecordBatch):
        return pa.Table.from_batches([selection])
    if isinstance(selection, pa.Table):
        return selection
    if is_dataframe(selection):
        columns = [c for c in COLUMNS if c in selection.columns]
        return pa.Table.from_pandas(selection[columns], preserve_index=False)
    if hasattr(selection, "__arrow_c_stream__"):  # polars and other Arrow-speaking tables
        return pa.table(selection)
    if isinstance(selection, Sequence):
        return _pairs(selection)
    raise UsageError(f"cannot select trials with a {type(selection).__name__}: use SQL, a relation, a DataFrame "
                     "or Arrow table with scan_key and trial_id, (scan_key, trial_id) pairs, or trial ids with scan=")


def _is_id_list(selection) -> bool:
    """A list of plain integers (trial ids), not of pairs."""
    return (isinstance(selection, (list, tuple)) and len(selection) > 0
            and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in selection))


def _trial_ids(ids, scan: str | None) -> pa.Table:
    values = np.asarray(ids)
    if values.ndim != 1 or not (values.size == 0 or np.issubdtype(values.dtype, np.integer)):
        raise UsageError(f"trial ids must be a 1-D sequence of integers; got {values.dtype} of shape {values.shape}")
    if scan is None:
        raise UsageError("trial ids alone do not say which scan they belong to: pass scan='<scan_key>' too")
    return pa.table({"scan_key": pa.array([scan] * len(values), pa.string()),
                     "trial_id": pa.array(values.astype(np.int64), pa.int64())})


def _pairs(pairs: Sequence) -> pa.Table:
    rows = list(pairs)
    if any(not isinstance(p, (tuple, list)) or len(p) != 2 for p in rows):
        raise UsageError("a list selection holds (scan_key, trial_id) pairs, or trial ids with scan=")
    return pa.table({"scan_key": pa.array([str(p[0]) for p in rows], pa.string()),
                     "trial_id": pa.array([_integer(p[1]) for p in rows], pa.int64())})


def _integer(value) -> int:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    raise UsageError(f"trial ids are integers; the selection holds {value!r}")


def _typed(table: pa.Table) -> pa.Table:
    for name in COLUMNS:
        if table[name].null_count:
            raise UsageError(f"the selection has {table[name].null_count} rows without a {name}")
    trial_id = table["trial_id"]
    if not (pa.types.is_integer(trial_id.type) or trial_id.num_chunks == 0 or len(trial_id) == 0):
        raise UsageError(f"trial_id must be integers; the selection's trial_id column is {trial_id.type}")
    return pa.Table.from_arrays([table["scan_key"].cast(pa.string()), trial_id.cast(pa.int64())], schema=SCHEMA)
