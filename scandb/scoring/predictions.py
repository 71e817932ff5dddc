"""What a user hands ``add_predictions``, checked and split by scan before anything is written.

Every refusal is one ``UsageError`` naming the scan and what is wrong: a model name already
used (without ``replace``), predictions not aligned with the selection's rows, a neuron
count that is not the scan's, a trial twice, NaN or infinity where a response is scored.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import UsageError
from .metrics import SKIP_FRAMES

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+:@/-]{0,127}")
"""A model name: what a file name, a SQL string and a shell argument all take as they are."""


@dataclass
class ScanPredictions:
    """One scan's part of a run: its selected trials, in the selection's order, and their
    predictions aligned with them."""
    scan_key: str
    kind: str
    trial_ids: np.ndarray
    values: np.ndarray
    """``(n, N)`` for a static scan, ``(n, N, T)`` (the user's layout) for a video scan."""
    tiers: np.ndarray
    image_ids: np.ndarray
    image_hashes: np.ndarray
    n_frames: np.ndarray
    """Video trials' valid lengths (0 for static trials)."""
    withheld: np.ndarray


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise UsageError(f"model name {name!r}: 1-128 letters, digits and . _ + : @ / -, starting with a letter "
                         "or digit")
    return name


def config_json(config: Mapping | None) -> tuple[str | None, str]:
    """The configuration as JSON, and the sha256 of its JSON with sorted keys (so
    ``{"a": 1, "b": 2}`` and ``{"b": 2, "a": 1}`` hash alike)."""
    if config is None:
        config = {}
    if not isinstance(config, Mapping):
        raise UsageError(f"config: a mapping of settings (e.g. {{'lr': 3e-4}}), not {type(config).__name__}")
    try:
        text = json.dumps(config, default=_plain)
        canonical = json.dumps(config, default=_plain, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise UsageError(f"config: not storable as JSON ({exc})") from None
    return text, hashlib.sha256(canonical.encode()).hexdigest()


def _plain(value):
    """numpy scalars and arrays as the JSON numbers and lists they are."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON")


def split(selected: pa.Table, predictions, trial_info) -> list[ScanPredictions]:
    """The selection's rows grouped by scan (first appearance order), each with its
    predictions; ``trial_info(scan_key, trial_ids)`` gives the scan's kind, neuron count,
    padded frames and per-trial tier, image id, image hash, valid length and withheld flag."""
    if selected.num_rows == 0:
        raise UsageError("add_predictions: the selection has no trials")
    scans = list(dict.fromkeys(selected["scan_key"].to_pylist()))
    by_scan = _by_scan(predictions, scans, selected.num_rows)
    parts = []
    for scan_key in scans:
        rows = selected.filter(pc.equal(selected["scan_key"], scan_key))
        trial_ids = rows["trial_id"].to_numpy().astype(np.int64)
        unique, counts = np.unique(trial_ids, return_counts=True)
        if (counts > 1).any():
            raise UsageError(f"scan {scan_key}: trial {int(unique[counts > 1][0])} is selected twice; a model "
                             "predicts each trial once")
        info = trial_info(scan_key, trial_ids)
        values = np.asarray(by_scan[scan_key])
        parts.append(_checked(scan_key, trial_ids, values, info))
    return parts


def _by_scan(predictions, scans: list[str], n_rows: int) -> dict[str, np.ndarray]:
    if isinstance(predictions, Mapping):
        given = set(predictions)
        missing, extra = [s for s in scans if s not in given], sorted(given - set(scans))
        if missing or extra:
            said = [f"no predictions for {', '.join(missing)}"] if missing else []
            said += [f"predictions for {', '.join(extra)}, which the selection does not hold"] if extra else []
            raise UsageError(f"add_predictions: {'; '.join(said)}")
        return dict(predictions)
    if len(scans) > 1:
        raise UsageError(f"add_predictions: the selection spans {len(scans)} scans ({', '.join(scans)}); pass "
                         "predictions as a dict {scan_key: array}, each aligned with that scan's rows")
    if not hasattr(predictions, "shape"):
        predictions = np.asarray(predictions)
    return {scans[0]: predictions}


def _checked(scan_key: str, trial_ids: np.ndarray, values: np.ndarray, info: dict) -> ScanPredictions:
    n, n_neurons, kind = len(trial_ids), info["n_neurons"], info["kind"]
    if not np.issubdtype(values.dtype, np.number) or np.issubdtype(values.dtype, np.complexfloating):
        raise UsageError(f"scan {scan_key}: predictions are {values.dtype}, not real numbers")
    if kind == "static":
        expected = f"({n}, {n_neurons}): one row per selected trial, one column per neuron in neuron_idx order"
        if values.shape != (n, n_neurons):
            raise UsageError(f"scan {scan_key}: predictions have shape {values.shape}, expected {expected}")
        bad = ~np.isfinite(values)
        if bad.any():
            row = int(np.argwhere(bad)[0][0])
            raise UsageError(f"scan {scan_key}: prediction of trial {int(trial_ids[row])} holds NaN or infinity")
    else:
        longest = int(info["n_frames"].max())
        expected = (f"({n}, {n_neurons}, T) with T >= {longest}: one row per selected trial, neurons in neuron_idx "
                    "order, frames in time")
        if values.ndim != 3 or values.shape[:2] != (n, n_neurons) or values.shape[2] < longest:
            raise UsageError(f"scan {scan_key}: predictions have shape {values.shape}, expected {expected}")
        for row, frames in enumerate(info["n_frames"].tolist()):
            scored = values[row, :, SKIP_FRAMES:frames]
            if not np.isfinite(scored).all():
                frame = SKIP_FRAMES + int(np.argwhere(~np.isfinite(scored))[0][1])
                raise UsageError(f"scan {scan_key}: prediction of trial {int(trial_ids[row])} holds NaN or infinity "
                                 f"at frame {frame}, inside the trial (frames {SKIP_FRAMES}-{frames - 1} are scored; "
                                 f"the first {SKIP_FRAMES} may be NaN)")
    return ScanPredictions(scan_key, kind, trial_ids, values, info["tiers"], info["image_ids"],
                           info["image_hashes"], info["n_frames"], info["withheld"])
