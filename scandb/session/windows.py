"""Per stimulus trial, each sequence's mean over the trial's window: SQL over time without
reading the matrices (table ``trial_means``).

A trial's window is ``[onset_time, end_time)`` (its first frame's onset to the next trial's).
Sample ``i`` of signal ``j`` is at ``start_time + i / sampling_rate + phase_shift[j]``: the
time experanto reads it at (``t - phase_shift`` maps a query back onto the grid), so a
neuron's window mean is over the samples experanto would give for times inside the window.
NaN samples (blinks) are left out of the mean; a signal without a finite sample in the
window has NaN here and NULL in ``trial_means``. Read one trial's rows at a time, so memory stays one window.
"""

from __future__ import annotations

import math

import numpy as np

from .modalities import Sequence, StimulusTrial


def window_means(seq: Sequence, trials: list[StimulusTrial]) -> tuple[list[np.ndarray], list[int]]:
    """For each trial, the per-signal mean over its window (float64 ``(n_signals,)``) and how
    many grid samples the window holds (phase shifts aside)."""
    data = seq.data
    n_rows, n_signals = data.shape
    shifts = np.zeros(n_signals) if seq.phase_shifts is None else np.asarray(seq.phase_shifts, dtype=np.float64)
    rate, start = float(seq.sampling_rate), float(seq.start_time)
    means, counts = [], []
    for trial in trials:
        first = np.ceil((trial.onset - shifts - start) * rate).astype(np.int64)  # first sample at or after onset
        stop = np.ceil((trial.end - shifts - start) * rate).astype(np.int64)  # first sample at or after the end
        first, stop = np.clip(first, 0, n_rows), np.clip(stop, 0, n_rows)
        grid = [min(max(math.ceil((t - start) * rate), 0), n_rows) for t in (trial.onset, trial.end)]
        counts.append(grid[1] - grid[0])
        lo, hi = int(first.min()), int(stop.max())
        if hi <= lo:
            means.append(np.full(n_signals, np.nan))
            continue
        block = np.asarray(data[lo:hi], dtype=np.float64)
        rows = np.arange(lo, hi)[:, np.newaxis]
        inside = (rows >= first[np.newaxis, :]) & (rows < stop[np.newaxis, :]) & np.isfinite(block)
        total = np.where(inside, block, 0.0).sum(axis=0)
        n = inside.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            means.append(np.where(n > 0, total / n, np.nan))
    return means, counts
