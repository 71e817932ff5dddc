"""Per stimulus trial, each sequence's mean over the trial's window, and the responses'
per-sample sums per (area, layer): SQL over time without reading the matrices (tables
``trial_means`` and ``area_frame_responses``).

A trial's window is ``[onset_time, end_time)`` (its first frame's onset to the next trial's).
Sample ``i`` of signal ``j`` is at ``start_time + i / sampling_rate + phase_shift[j]``: the
time experanto reads it at (``t - phase_shift`` maps a query back onto the grid), so a
neuron's window mean is over the samples experanto would give for times inside the window.
NaN samples (blinks) are left out of the mean; a signal without a finite sample in the
window has NaN here and NULL in ``trial_means``. Read one trial's rows at a time, so memory stays one window.

The per-sample sums take, for each neuron, its k-th sample at or after the trial's onset
(k = 0 .. n_samples - 1, n_samples the grid's samples in the window as in ``trial_means``):
element k sums those over the group's neurons. A NaN sample makes its sum NaN (a gap in the
recording is not a zero), as does a sample past the end of the data.
"""

from __future__ import annotations

import math

import numpy as np

from .modalities import Sequence, StimulusTrial


def _windows(seq: Sequence, trial: StimulusTrial, shifts: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Per signal the first sample at or after the onset and the first at or after the end,
    and the grid's samples in the window (phase shifts aside)."""
    n_rows = seq.data.shape[0]
    rate, start = float(seq.sampling_rate), float(seq.start_time)
    first = np.ceil((trial.onset - shifts - start) * rate).astype(np.int64)
    stop = np.ceil((trial.end - shifts - start) * rate).astype(np.int64)
    grid = [min(max(math.ceil((t - start) * rate), 0), n_rows) for t in (trial.onset, trial.end)]
    return np.clip(first, 0, n_rows), np.clip(stop, 0, n_rows), grid[1] - grid[0]


def _shifts(seq: Sequence) -> np.ndarray:
    n_signals = seq.data.shape[1]
    return np.zeros(n_signals) if seq.phase_shifts is None else np.asarray(seq.phase_shifts, dtype=np.float64)


def window_area_sums(seq: Sequence, trials: list[StimulusTrial], groups: list[np.ndarray]) -> list[np.ndarray]:
    """For each trial, float64 ``(len(groups), n_samples)``: per group of signals (their
    column indexes) the sum of each one's k-th sample in the window."""
    data = seq.data
    n_rows = data.shape[0]
    shifts = _shifts(seq)
    sums = []
    for trial in trials:
        first, _, count = _windows(seq, trial, shifts)
        out = np.full((len(groups), count), np.nan)
        if count and n_rows:
            rows = first[np.newaxis, :] + np.arange(count)[:, np.newaxis]  # (count, n_signals)
            past_end = rows >= n_rows
            lo, hi = int(rows.min()), min(int(rows.max()) + 1, n_rows)
            if lo >= n_rows:
                sums.append(out)
                continue
            block = np.asarray(data[lo:hi], dtype=np.float64)
            values = block[np.minimum(rows, n_rows - 1) - lo, np.arange(data.shape[1])[np.newaxis, :]]
            values[past_end] = np.nan
            for g, columns in enumerate(groups):
                out[g] = values[:, columns].sum(axis=1)
        sums.append(out)
    return sums


def window_means(seq: Sequence, trials: list[StimulusTrial]) -> tuple[list[np.ndarray], list[int]]:
    """For each trial, the per-signal mean over its window (float64 ``(n_signals,)``) and how
    many grid samples the window holds (phase shifts aside)."""
    data = seq.data
    n_signals = data.shape[1]
    shifts = _shifts(seq)
    means, counts = [], []
    for trial in trials:
        first, stop, count = _windows(seq, trial, shifts)
        counts.append(count)
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
