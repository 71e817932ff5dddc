"""``format="submission"``: a model's stored predictions in the Sensorium 2023 submission layout.

The layout is what ecker-lab/sensorium_2023's ``sensorium/utility/submission.py`` writes, one
Parquet file per tier (``predictions_<tier>.parquet``, brotli-compressed as there), one row
per trial:

- ``mouse``: the scan's folder name (``scans.name``), the competition's data key;
- ``trial_indices``: the trial's file number (``trial_id``), int64;
- ``prediction``: for a video trial a list over neurons of lists over frames, the frames from
  the 50th (the scorer's skip, ``scoring.metrics.SKIP_FRAMES``) to the trial's end (empty
  lists for a trial of 50 frames or fewer); for a static trial a list over neurons. float32
  (the competition's writer goes through Python floats, which Parquet stores as doubles; the
  values are the same float32 numbers);
- ``neuron_ids``: the unit ids (``neurons.unit_id``) of the neurons in ``prediction``'s order,
  uint32.

Rows follow the selection, scan by scan (first appearance). Every selected trial must have a
stored prediction of the model, and a tier holds one kind of scan (the two layouts of
``prediction`` differ). Each file is written under a temporary name and renamed into place
when complete; every target is checked before the first is written.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import UsageError
from ..scoring.metrics import SKIP_FRAMES
from ..store.predictions import PredictionStore

FILE = "predictions_{tier}.parquet"
COMPRESSION = "brotli"
CHUNK = 16
"""Trials per Parquet row group (a full-size video trial's predictions are ~8 MB)."""


def file_name(tier: str) -> str:
    return FILE.format(tier=re.sub(r"[^A-Za-z0-9._-]", "_", tier))


def write_submission(db, selected: pa.Table, picked: dict[str, np.ndarray], out: Path, model: str) -> list[Path]:
    """One Parquet file per tier of ``selected`` (scan_key, trial_id) under ``out``; returns them."""
    from . import _refuse_existing, reserve

    model = _check_model(db, model)
    scans = list(dict.fromkeys(selected["scan_key"].to_pylist()))
    scan_keys = selected["scan_key"].to_numpy(zero_copy_only=False)
    trial_ids = selected["trial_id"].to_numpy().astype(np.int64)
    info = {scan_key: _scan(db, model, scan_key, trial_ids[scan_keys == scan_key], picked.get(scan_key))
            for scan_key in scans}
    tiers = list(dict.fromkeys(tier for scan_key in scans for tier in info[scan_key]["tiers"].tolist()))
    for tier in tiers:
        kinds = {info[s]["kind"] for s in scans if (info[s]["tiers"] == tier).any()}
        if len(kinds) > 1:
            raise UsageError(f"tier {tier!r} holds static and video trials; the submission layout has one kind "
                             "of prediction per file: export static and video scans separately")
    files = {tier: out / file_name(tier) for tier in tiers}
    if len(set(files.values())) < len(files):
        raise UsageError(f"tiers {', '.join(tiers)}: two of them give the same file name")
    for path in files.values():  # every target refused before the first is written
        _refuse_existing(path)
    written = []
    for tier, path in files.items():
        partial = reserve(path)
        try:
            writer = None
            for scan_key in scans:
                for table in _tables(info[scan_key], np.flatnonzero(info[scan_key]["tiers"] == tier)):
                    if writer is None:
                        writer = pq.ParquetWriter(partial, table.schema, compression=COMPRESSION)
                    writer.write_table(table)
            writer.close()
            partial.rename(path)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        written.append(path)
    return written


def _check_model(db, model: str) -> str:
    known = [r[0] for r in db.conn.execute("SELECT name FROM models ORDER BY 1").fetchall()]
    if model not in known:
        raise UsageError(f"{db.database.name}: no model {model!r} "
                         f"({'models: ' + ', '.join(known) if known else 'it holds no models'})")
    return model


def _scan(db, model: str, scan_key: str, trial_ids: np.ndarray, picked: np.ndarray | None) -> dict:
    """What writing one scan's rows needs: its name and kind, the selected trials' tiers,
    valid lengths and where their predictions are, the neurons and their unit ids."""
    conn = db.conn
    name, kind = conn.execute("SELECT name, kind FROM scans WHERE scan_key = ?", [scan_key]).fetchone()
    table = conn.execute(
        "SELECT t.trial_id, t.tier, coalesce(t.n_frames, 0) AS n_frames, p.trial_id IS NOT NULL AS predicted, "
        "p.row, p.prediction FROM trials t LEFT JOIN predictions p ON p.scan_key = t.scan_key "
        "AND p.trial_id = t.trial_id AND p.model = ? "
        "WHERE t.scan_key = ? AND t.trial_id IN (SELECT unnest(?::INTEGER[]))",
        [model, scan_key, trial_ids.tolist()]).arrow()
    if isinstance(table, pa.RecordBatchReader):
        table = table.read_all()
    at = {int(t): i for i, t in enumerate(table["trial_id"].to_pylist())}
    position = np.array([at[int(t)] for t in trial_ids], dtype=np.int64)  # selection order
    predicted = np.asarray(table["predicted"].to_pylist(), dtype=bool)[position]
    missing = trial_ids[~predicted].tolist()
    if missing:
        raise UsageError(f"model {model!r} has no prediction of trial {missing[0]} of scan {scan_key}"
                         f"{f' (nor of {len(missing) - 1} other selected trials)' if len(missing) > 1 else ''}; "
                         "select only the trials it predicted, or add its predictions of these")
    unit_ids = conn.execute("SELECT unit_id FROM neurons WHERE scan_key = ? ORDER BY neuron_idx",
                            [scan_key]).fetchnumpy()["unit_id"].astype(np.int64)
    neurons = np.arange(len(unit_ids)) if picked is None else np.asarray(picked, dtype=np.int64)
    if ((unit_ids[neurons] < 0) | (unit_ids[neurons] > np.iinfo(np.uint32).max)).any():
        raise UsageError(f"scan {scan_key}: unit ids outside 0..2^32-1; the submission layout stores them as uint32")
    matrix = static = None
    if kind == "static":
        static = table["prediction"].take(pa.array(position)).combine_chunks()
    else:
        key, = conn.execute("SELECT path FROM prediction_matrices WHERE model = ? AND scan_key = ?",
                            [model, scan_key]).fetchone()
        matrix = PredictionStore(db.database.store).load(key)
    return {"name": name, "kind": kind, "trial_ids": trial_ids,
            "tiers": np.array(table["tier"].to_pylist(), dtype=object)[position],
            "n_frames": table["n_frames"].to_numpy().astype(np.int64)[position],
            "rows": np.asarray(table["row"].fill_null(-1).to_numpy(), dtype=np.int64)[position],
            "static": static, "matrix": matrix, "neurons": neurons, "unit_ids": unit_ids[neurons].astype(np.uint32)}


def _tables(scan: dict, positions: np.ndarray):
    """The scan's trials at ``positions`` (of its selected trials) as tables of ``CHUNK`` rows."""
    neurons, n_neurons = scan["neurons"], len(scan["neurons"])
    for start in range(0, len(positions), CHUNK):
        chunk = positions[start:start + CHUNK]
        n = len(chunk)
        if scan["kind"] == "dynamic":
            values, lengths = [], []
            for position in chunk.tolist():
                frames = scan["matrix"][scan["rows"][position], SKIP_FRAMES:scan["n_frames"][position]]
                values.append(np.ascontiguousarray(np.asarray(frames)[:, neurons].T, dtype=np.float32).ravel())
                lengths.append(max(int(scan["n_frames"][position]) - SKIP_FRAMES, 0))
            inner_offsets = np.concatenate([[0], np.cumsum(np.repeat(lengths, n_neurons))])
            inner = pa.ListArray.from_arrays(pa.array(inner_offsets, pa.int32()),
                                             pa.array(np.concatenate(values), pa.float32()))
            prediction = pa.ListArray.from_arrays(pa.array(np.arange(n + 1) * n_neurons, pa.int32()), inner)
        else:
            chosen = scan["static"].take(pa.array(chunk))
            flat = chosen.flatten().to_numpy().astype(np.float32).reshape(n, -1)[:, neurons].ravel()
            prediction = pa.ListArray.from_arrays(pa.array(np.arange(n + 1) * n_neurons, pa.int32()),
                                                  pa.array(flat, pa.float32()))
        neuron_ids = pa.ListArray.from_arrays(pa.array(np.arange(n + 1) * n_neurons, pa.int32()),
                                              pa.array(np.tile(scan["unit_ids"], n), pa.uint32()))
        yield pa.table({"mouse": pa.array([scan["name"]] * n, pa.string()),
                        "trial_indices": pa.array(scan["trial_ids"][chunk], pa.int64()),
                        "prediction": prediction, "neuron_ids": neuron_ids})
