"""Turning ``neurons=`` into response columns per scan.

Two kinds of value: per-scan choices (a DataFrame with ``scan_key`` and ``neuron_idx`` or
``unit_id``, as ``neurons()`` returns, or a ``{scan_key: indexes}`` mapping), which fit any
selection; and positions in one scan's responses (a list, range, numpy array, Series of
``neuron_idx``, or a boolean mask over the scan's neurons), which fit a selection of one
scan. A Series named ``unit_id`` picks by unit id.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..errors import UsageError
from .frames import is_dataframe, is_series
from .readers import Readers

if TYPE_CHECKING:
    import pandas

Neurons = "pandas.DataFrame | Mapping[str, Sequence[int]] | Sequence[int] | np.ndarray | pandas.Series | range"
"""What ``neurons=`` takes (a type for annotations; pandas is imported only by callers that use it)."""


def picks(readers: Readers, scans: Sequence[str], neurons: Neurons | None) -> dict[str, np.ndarray] | None:
    """Response columns to keep for each scan, in the order given; None keeps them all."""
    if neurons is None:
        return None
    if is_dataframe(neurons):
        return _per_scan(readers, scans, *_frame_groups(neurons))
    if isinstance(neurons, Mapping):
        return _per_scan(readers, scans, "neuron_idx", {s: np.asarray(v) for s, v in neurons.items()})
    if len(scans) > 1:
        raise UsageError(f"neurons={_short(neurons)} names neurons of one scan, but the selection spans "
                         f"{len(scans)} scans ({', '.join(scans)}); pass a DataFrame with scan_key and neuron_idx "
                         "(e.g. from db.neurons(...)) or a {scan_key: [neuron_idx, ...]} dict")
    if not scans:
        return {}
    reader = readers.get(scans[0])
    return {scans[0]: reader.neuron_indexes(*_positions(neurons, reader.n_neurons, scans[0]))}


def width(neurons: Neurons | None) -> int | None:
    """How many neurons ``neurons`` picks, when that is known without a scan (else None)."""
    if neurons is None or is_dataframe(neurons) or isinstance(neurons, Mapping):
        return None
    values = np.asarray(neurons)
    return int(values.sum()) if values.dtype == bool else int(values.size)


def _frame_groups(frame: pandas.DataFrame) -> tuple[str, dict[str, np.ndarray]]:
    by = "neuron_idx" if "neuron_idx" in frame.columns else "unit_id"
    if by not in frame.columns or "scan_key" not in frame.columns:
        raise UsageError("a neurons= DataFrame needs scan_key and neuron_idx (or unit_id) columns")
    return by, {s: g[by].to_numpy() for s, g in frame.groupby("scan_key", sort=False)}


def _per_scan(readers: Readers, scans: Sequence[str], by: str, groups: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {}
    for scan in scans:
        if scan not in groups:
            raise UsageError(f"neurons= picks no neurons of scan {scan!r}, which the selection includes "
                             f"(it names scans {', '.join(map(str, groups)) or 'none'})")
        out[scan] = readers.get(scan).neuron_indexes(groups[scan], by)
    return out


def _positions(neurons, n_neurons: int, scan: str) -> tuple[np.ndarray, str]:
    by = "unit_id" if is_series(neurons) and neurons.name == "unit_id" else "neuron_idx"
    values = np.asarray(neurons)
    if values.ndim != 1:
        raise UsageError(f"neurons= must be one-dimensional; got shape {values.shape}")
    if values.dtype == bool:
        if len(values) != n_neurons:
            raise UsageError(f"a boolean neurons= mask needs one value per neuron of scan {scan} "
                             f"({n_neurons}); got {len(values)}")
        return np.flatnonzero(values), by
    if values.size and not np.issubdtype(values.dtype, np.integer):
        raise UsageError(f"neurons= holds neuron_idx integers or a boolean mask; got {values.dtype}")
    return values.astype(np.int64), by


def _short(neurons) -> str:
    text = repr(neurons if isinstance(neurons, (list, range)) else np.asarray(neurons).tolist())
    return text if len(text) <= 30 else text[:27] + "...]"
