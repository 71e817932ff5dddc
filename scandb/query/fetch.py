"""Assembling the arrays of a checked selection, row by row in its order.

Each key is gathered scan by scan from that scan's ``ScanReader`` and placed at the rows
the scan holds in the selection. An empty selection gives arrays with zero rows and the
other dimensions of the scans it could have named (``shape_scans``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import duckdb
import numpy as np
import pyarrow as pa

from ..catalog.database import Database
from ..errors import UsageError
from ..keys import ARROW_BATCH, DATA_KEYS, STIMULUS_KEY, VIDEO_DATA_KEYS
from . import neurons as neuron_choice
from .reader import ScanReader
from .readers import Readers

WIDTHS = {"behavior": 3, "pupil_center": 2}
"""Columns of a static scan's per-trial arrays (a dynamic scan's are (2, T))."""
STIMULUS_KEYS = tuple(STIMULUS_KEY.values())


def fetch(readers: Readers, selected: pa.Table, keys: Sequence[str], *,
          normalize: bool = False, neurons=None, image_dtype=None,
          shape_scans: Sequence[str] = (), frames: tuple[int, int] | None = None) -> dict[str, np.ndarray]:
    """``{key: array}`` for a selection already checked by ``selection.check``. Data keys
    come from the readers without SQL; a trials_full column is one query."""
    scans = selected["scan_key"].to_numpy(zero_copy_only=False).astype(object)
    trial_ids = selected["trial_id"].to_numpy()
    order = list(dict.fromkeys(scans.tolist()))
    rows = _Rows(readers, scans, trial_ids, order, list(shape_scans) if not order else order)
    rows.window = window_of(rows, frames)
    out = {}
    for key in keys:
        if key == "responses":
            out[key] = _responses(rows, neurons, normalize)
        elif key in STIMULUS_KEYS:
            out[key] = _images(rows, key, normalize, image_dtype)
        elif key in WIDTHS:
            out[key] = _per_trial(rows, key, normalize)
        else:
            out[key] = trial_column(readers.database.conn, selected, key)
    return out


def default_keys(readers: Readers, selected: pa.Table, shape_scans: Sequence[str]) -> tuple[str, ...]:
    """The data keys of the selected scans' kind: images... for static, videos... for dynamic."""
    scans = list(dict.fromkeys(selected["scan_key"].to_pylist())) or list(shape_scans)
    kinds = {readers.get(s).kind for s in scans}
    return VIDEO_DATA_KEYS if kinds == {"dynamic"} else DATA_KEYS


def window_of(rows: "_Rows", frames):
    """``frames=(start, stop)``, or one ``(start, stop)`` per selected row (equal lengths),
    checked against every dynamic scan of the selection: a slice, or an (n, F) index array."""
    readers = [r for r, _, _ in rows.parts] or rows.shape_readers
    kinds = {r.kind: r.scan for r in readers}
    if len(kinds) > 1:
        raise UsageError(f"the selection mixes static scans (e.g. {kinds['static']}) and dynamic scans (e.g. "
                         f"{kinds['dynamic']}), whose arrays differ in shape; pass per_scan=True")
    if frames is None:
        return slice(None)
    if "static" in kinds:
        raise UsageError(f"frames= applies to dynamic (video) scans; scan {kinds['static']} is static")
    per_row = np.asarray(frames, dtype=object) if not isinstance(frames, str) else None
    if per_row is not None and per_row.ndim == 2:
        return _per_row_window(rows, readers, per_row)
    try:
        start, stop = (int(f) for f in frames)
    except (TypeError, ValueError):
        raise UsageError(f"frames= takes (start, stop), e.g. frames=(0, 50); got {frames!r}") from None
    shortest = min((r.frames for r in readers), default=stop)
    if not 0 <= start < stop <= shortest:
        raise UsageError(f"frames=({start}, {stop}) is outside the trials' {shortest} padded frames "
                         f"(0 <= start < stop <= {shortest})")
    return slice(start, stop)


def _per_row_window(rows: "_Rows", readers, frames: np.ndarray) -> np.ndarray:
    if frames.shape != (rows.n, 2):
        raise UsageError(f"frames= with one window per row takes {rows.n} (start, stop) pairs; got an array of "
                         f"shape {frames.shape}")
    bounds = frames.astype(np.int64)
    lengths = bounds[:, 1] - bounds[:, 0]
    shortest = min(r.frames for r in readers)
    if len(set(lengths.tolist())) > 1 or (bounds < 0).any() or (lengths <= 0).any() or (bounds[:, 1] > shortest).any():
        raise UsageError(f"frames= windows must have one length and lie within the trials' {shortest} padded frames "
                         f"(0 <= start < stop <= {shortest})")
    return bounds[:, :1] + np.arange(lengths[0] if len(lengths) else 0)


class _Rows:
    """The selection split by scan: which rows each scan fills, and with which trials."""

    def __init__(self, readers: Readers, scans: np.ndarray, trial_ids: np.ndarray, order: list[str],
                 shape_scans: list[str]):
        self.readers, self.n = readers, len(scans)
        self.window = slice(None)
        """The frames= window of a dynamic selection."""
        self.parts: list[tuple[ScanReader, np.ndarray, np.ndarray]] = []
        for scan in order:
            where = np.flatnonzero(scans == scan)
            self.parts.append((readers.get(scan), where, trial_ids[where]))
        self.shape_readers = [readers.get(s) for s in shape_scans]

    def frames(self, where: np.ndarray):
        """The window of these rows: one slice, or their rows of a per-row index array."""
        return self.window if isinstance(self.window, slice) else self.window[where]

    def assemble(self, block_of: Callable[[ScanReader, np.ndarray], np.ndarray], empty: np.ndarray | None
                 ) -> np.ndarray:
        """Blocks of each scan placed at its rows; ``empty`` (zero rows) when nothing is selected."""
        if not self.parts:
            return empty
        if len(self.parts) == 1:
            return block_of(self.parts[0][0], self.parts[0][2], self.frames(self.parts[0][1]))
        blocks = [(where, block_of(reader, ids, self.frames(where))) for reader, where, ids in self.parts]
        first = blocks[0][1]
        out = np.empty((self.n, *first.shape[1:]), np.result_type(*(b.dtype for _, b in blocks)))
        for where, block in blocks:
            out[where] = block
        return out


def _common(values, default):
    """The one value all scans share, else ``default``."""
    distinct = set(values)
    return distinct.pop() if len(distinct) == 1 else default


def _responses(rows: _Rows, neurons, normalize: bool) -> np.ndarray:
    picked = neuron_choice.picks(rows.readers, [r.scan for r, _, _ in rows.parts], neurons) or {}
    widths = {r.scan: len(picked[r.scan]) if r.scan in picked else r.n_neurons for r, _, _ in rows.parts}
    if len(set(widths.values())) > 1:
        sizes = ", ".join(f"{s}: {w}" for s, w in widths.items())
        raise UsageError(f"the selection spans scans with different neuron counts ({sizes}); "
                         "pass per_scan=True, or neurons= with as many neurons per scan")

    def block_of(reader: ScanReader, ids: np.ndarray, window) -> np.ndarray:
        if normalize:
            reader.refuse_withheld("responses", ids)
        block = reader.responses(ids, window)
        columns = picked.get(reader.scan)
        if columns is not None:
            block = block[:, columns]
        return reader.normalized("responses", block, columns, window) if normalize else block

    if rows.parts:
        return rows.assemble(block_of, None)
    return np.empty((0, _empty_width(rows, neurons), *_empty_frames(rows)), np.float32)


def _empty_frames(rows: _Rows) -> tuple[int, ...]:
    """The frames axis of an empty dynamic selection's arrays (none for static scans)."""
    frames = _common((r.frames for r in rows.shape_readers), None)
    if frames is None:
        return ()
    return (len(range(frames)[rows.window]),) if isinstance(rows.window, slice) else (rows.window.shape[1],)


def _empty_width(rows: _Rows, neurons) -> int:
    """Responses columns of an empty selection: as many as ``neurons`` picks, else the
    neuron count the candidate scans share (0 when they differ)."""
    width = neuron_choice.width(neurons)
    if width is not None:
        return width
    scans = [r.scan for r in rows.shape_readers]
    if neurons is None:
        return _common((r.n_neurons for r in rows.shape_readers), 0)
    return _common((len(p) for p in neuron_choice.picks(rows.readers, scans, neurons).values()), 0)


def _images(rows: _Rows, key: str, normalize: bool, dtype) -> np.ndarray:
    shapes = {r.image_shape for r, _, _ in rows.parts}
    if len(shapes) > 1:
        raise UsageError(f"the selection spans scans with different {key} shapes ({sorted(shapes)}); "
                         "pass per_scan=True")
    for reader in [r for r, _, _ in rows.parts] or rows.shape_readers:
        if reader.stimulus != key:
            raise UsageError(f"scan {reader.scan} is {reader.kind}: its stimulus key is {reader.stimulus!r}, "
                             f"not {key!r}")
    def block_of(reader: ScanReader, ids: np.ndarray, window) -> np.ndarray:
        block = reader.images(ids, window)
        return reader.normalized(key, block, frames=window) if normalize else block

    stored = _common((r.image_dtype for r in rows.shape_readers), np.dtype(np.uint8))
    shape = _common((r.image_shape for r in rows.shape_readers), ())
    if shape and key == "videos":
        shape = (*shape[:-1], *_empty_frames(rows))
    images = rows.assemble(block_of, np.empty((0, *shape), np.float32 if normalize else stored))
    return images if dtype is None else images.astype(dtype, copy=False)


def _per_trial(rows: _Rows, key: str, normalize: bool) -> np.ndarray:
    def block_of(reader: ScanReader, ids: np.ndarray, window) -> np.ndarray:
        if normalize:
            reader.refuse_withheld(key, ids)
        block = reader.rows(key, ids, window)
        return reader.normalized(key, block, frames=window) if normalize else block

    stored = _common((r.dtypes[key] for r in rows.shape_readers), np.dtype(np.float32))
    frames = _empty_frames(rows)
    width = 2 if frames else WIDTHS[key]
    return rows.assemble(block_of, np.empty((0, width, *frames), np.float32 if normalize else stored))


def trial_column(conn: duckdb.DuckDBPyConnection, selected: pa.Table, name: str) -> np.ndarray:
    """A column of ``trials_full`` for the selected trials, in the selection's order."""
    allowed = trial_columns(conn)
    if name not in allowed:
        raise UsageError(f"unknown key {name!r}: use one of {', '.join(DATA_KEYS)} or a trials_full "
                         f"column ({', '.join(sorted(allowed))})")
    positions = pa.array(np.arange(selected.num_rows, dtype=np.int64))
    conn.register("_selection", selected.append_column("pos", positions))
    try:
        table = conn.execute(
            f'SELECT t."{name}" FROM _selection s JOIN trials_full t USING (scan_key, trial_id) ORDER BY s.pos'
        ).to_arrow_reader(ARROW_BATCH).read_all()
    finally:
        conn.unregister("_selection")
    return table[name].to_numpy(zero_copy_only=False)


def trial_columns(conn: duckdb.DuckDBPyConnection) -> set[str]:
    return {r[0] for r in conn.execute(
        "SELECT column_name FROM duckdb_columns() WHERE table_name = 'trials_full'").fetchall()}


def check_keys(database: Database, keys: Sequence[str]) -> None:
    """Every key is a data key or a trials_full column (checked before any array is read;
    only a column name opens the database)."""
    unknown = [k for k in keys if k not in DATA_KEYS and k not in VIDEO_DATA_KEYS]
    if unknown:
        allowed = trial_columns(database.conn)
        bad = [k for k in unknown if k not in allowed]
        if bad:
            raise UsageError(f"unknown key {bad[0]!r}: use one of {', '.join(DATA_KEYS)} or a trials_full "
                             f"column ({', '.join(sorted(allowed))})")
