"""Prediction files people exchange, read into a selection and its aligned predictions.

- ``.npz``: ``scan_key`` and ``trial_id`` per row, and ``predictions`` aligned with them
  (``(n, N)``, or ``(n, N, T)`` for video trials) when every scan's rows have one shape;
  otherwise ``predictions.<scan_key>`` holds each scan's rows in the order they appear (the
  layout ``scandb export --format npz`` writes, with ``predictions`` for ``responses``).
- The Sensorium 2023 submission Parquet (``sensorium/utility/submission.py`` of
  ecker-lab/sensorium_2023): per trial ``mouse`` (the scan's folder name), ``trial_indices``,
  ``prediction`` (per neuron the frames from the 50th to the trial's end; a list of
  ``N`` values for a static trial) and ``neuron_ids`` (unit ids, any order). Its frames are
  put at the end of each trial, the first 50 left NaN.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import BadScanError, UsageError
from ..query.scan_names import resolve_scan

SUBMISSION_COLUMNS = ("mouse", "trial_indices", "prediction", "neuron_ids")


def read(path: Path, conn) -> tuple[pa.Table, dict[str, np.ndarray]]:
    """The selection (``scan_key``, ``trial_id``) and ``{scan_key: predictions}`` of a file."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic == b"PAR1":
        return read_submission(path, conn)
    if magic[:2] == b"PK":
        return read_npz(path)
    raise BadScanError(str(path), None, "neither an .npz nor a Parquet file")


def read_npz(path: Path) -> tuple[pa.Table, dict[str, np.ndarray]]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise BadScanError(str(path), None, f"not a readable .npz ({exc})") from None
    for name in ("scan_key", "trial_id"):
        if name not in arrays:
            raise BadScanError(str(path), None, f"no '{name}' array (an .npz of predictions has scan_key, trial_id "
                                                "and predictions)")
    scan_keys, trial_ids = arrays["scan_key"].astype(str).ravel(), arrays["trial_id"]
    if len(scan_keys) != len(trial_ids) or not np.issubdtype(trial_ids.dtype, np.integer):
        raise BadScanError(str(path), None, f"scan_key ({len(scan_keys)}) and trial_id ({len(trial_ids)}, "
                                            f"{trial_ids.dtype}) must be one entry per row, trial ids integers")
    selected = pa.table({"scan_key": pa.array(scan_keys.tolist(), pa.string()),
                         "trial_id": pa.array(trial_ids.astype(np.int64))})
    scans = list(dict.fromkeys(scan_keys.tolist()))
    if "predictions" in arrays:
        values = arrays["predictions"]
        if len(values) != len(scan_keys):
            raise BadScanError(str(path), None, f"predictions has {len(values)} rows, scan_key and trial_id "
                                                f"{len(scan_keys)}")
        return selected, {scan: values[scan_keys == scan] for scan in scans}
    missing = [s for s in scans if f"predictions.{s}" not in arrays]
    if missing:
        raise BadScanError(str(path), None, f"no 'predictions' array, nor 'predictions.{missing[0]}'")
    return selected, {scan: arrays[f"predictions.{scan}"] for scan in scans}


def read_submission(path: Path, conn) -> tuple[pa.Table, dict[str, np.ndarray]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise BadScanError(str(path), None, f"not a readable Parquet file ({exc})") from None
    missing = [c for c in SUBMISSION_COLUMNS if c not in table.column_names]
    if missing:
        raise BadScanError(str(path), None, f"no column {', '.join(missing)} (a Sensorium 2023 submission has "
                                            f"{', '.join(SUBMISSION_COLUMNS)})")
    mice = table["mouse"].to_pylist()
    keys = {mouse: resolve_scan(conn, str(mouse)) for mouse in dict.fromkeys(mice)}
    scan_keys = [keys[m] for m in mice]
    selected = pa.table({"scan_key": pa.array(scan_keys, pa.string()),
                         "trial_id": pa.array(table["trial_indices"].to_numpy().astype(np.int64))})
    out = {}
    for mouse, scan_key in keys.items():
        rows = table.filter(pc.equal(table["mouse"], mouse))
        out[scan_key] = _submission_rows(path, conn, scan_key, rows)
    return selected, out


def _submission_rows(path: Path, conn, scan_key: str, rows: pa.Table) -> np.ndarray:
    """One scan's rows as ``(n, N)`` or ``(n, N, T)`` in ``neuron_idx`` order."""
    kind, n_neurons = conn.execute("SELECT kind, n_neurons FROM scans WHERE scan_key = ?", [scan_key]).fetchone()
    unit_ids = [r[0] for r in conn.execute("SELECT unit_id FROM neurons WHERE scan_key = ? ORDER BY neuron_idx",
                                           [scan_key]).fetchall()]
    position = {unit: idx for idx, unit in enumerate(unit_ids)}
    trial_ids = rows["trial_indices"].to_numpy().astype(np.int64)
    frames = dict(conn.execute("SELECT trial_id, coalesce(n_frames, 0) FROM trials WHERE scan_key = ? "
                               "AND trial_id IN (SELECT unnest(?::INTEGER[]))", [scan_key, trial_ids.tolist()]
                               ).fetchall())
    longest = max(frames.values(), default=0)
    shape = (len(trial_ids), n_neurons) if kind == "static" else (len(trial_ids), n_neurons, longest)
    out = np.full(shape, np.nan, dtype=np.float32)
    for i, (trial, neuron_ids, prediction) in enumerate(zip(trial_ids.tolist(), rows["neuron_ids"].to_pylist(),
                                                            rows["prediction"].to_pylist())):
        order = _neuron_order(path, scan_key, trial, neuron_ids, position, n_neurons)
        try:
            values = np.asarray(prediction, dtype=np.float32)
        except (ValueError, TypeError):
            raise UsageError(f"{path}: trial {trial} of {scan_key}: prediction is not one list of frames per neuron, "
                             "each as long") from None
        if len(values) != n_neurons:
            raise UsageError(f"{path}: trial {trial} of {scan_key}: {len(values)} predictions for {n_neurons} neurons")
        if kind == "static":
            out[i, order] = values.reshape(n_neurons)
            continue
        if trial not in frames:
            raise UsageError(f"{path}: scan {scan_key} has no trial {trial}")
        end = frames[trial]
        if values.ndim != 2 or values.shape[1] > end:
            raise UsageError(f"{path}: trial {trial} of {scan_key}: predictions of shape {values.shape}, expected "
                             f"({n_neurons}, frames) with at most the trial's {end} frames")
        out[i, order, end - values.shape[1]:end] = values
    return out


def _neuron_order(path, scan_key, trial, neuron_ids, position, n_neurons) -> np.ndarray:
    try:
        order = np.array([position[int(u)] for u in neuron_ids], dtype=np.int64)
    except KeyError as exc:
        raise UsageError(f"{path}: trial {trial}: unit id {exc.args[0]} is not a neuron of scan {scan_key}") from None
    if len(order) != n_neurons or len(set(order.tolist())) != n_neurons:
        raise UsageError(f"{path}: trial {trial}: neuron_ids must name each of the scan's {n_neurons} neurons once "
                         f"({len(order)} given)")
    return order
