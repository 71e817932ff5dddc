"""Per stimulus trial, each sequence's mean over the trial's window, and the responses'
per-sample sums per (area, layer): SQL over time without reading the matrices (tables
``trial_means`` and ``area_frame_responses``).

A trial's window is ``[onset_time, end_time)`` (its first frame's onset to the next trial's).
Sample ``i`` of signal ``j`` is at ``start_time + i / sampling_rate + phase_shift[j]``: the
time experanto reads it at (``t - phase_shift`` maps a query back onto the grid), so a
neuron's window mean is over the samples experanto would give for times inside the window.
NaN samples (blinks) are left out of the mean; a signal without a finite sample in the
window has NaN here and NULL in ``trial_means``. Rows come a block at a time (``WindowSums``), so
memory stays one block; the ingest feeds them from its copy of the matrix.

The per-sample sums (``AreaSums``) take, for each neuron, its k-th sample at or after the
trial's onset (k = 0 .. n_samples - 1, n_samples the grid's samples in the window as in
``trial_means``): element k sums those over the group's neurons. A NaN sample makes its sum
NaN (a gap in the recording is not a zero), as does a sample past the end of the data.
"""

from __future__ import annotations

import math

import numpy as np

from .modalities import Sequence, StimulusTrial


BLOCK_ROWS = 4096
"""Rows read at a time when the means are computed from the memory map (``window_means``)."""
AREA_BLOCK_BYTES = 16 << 20
"""Float64 rows ``AreaSums`` puts in order and sums at a time (262 rows of 8,000 neurons)."""


class WindowSums:
    """Per trial and signal, the sum and count of the finite samples in the trial's window,
    fed the sequence's rows in order, a block at a time (``add``), as the ingest copies them:
    the matrix is read once for its copy, digest and means."""

    def __init__(self, seq: Sequence, trials: list[StimulusTrial]):
        n_rows, n_signals = seq.data.shape
        shifts = np.zeros(n_signals) if seq.phase_shifts is None else np.asarray(seq.phase_shifts, dtype=np.float64)
        rate, start = float(seq.sampling_rate), float(seq.start_time)
        self.n_signals = n_signals
        onsets = np.array([t.onset for t in trials], dtype=np.float64)[:, np.newaxis]
        ends = np.array([t.end for t in trials], dtype=np.float64)[:, np.newaxis]
        # first sample at or after the onset, first at or after the end, per signal
        self.first = np.clip(np.ceil((onsets - shifts - start) * rate).astype(np.int64), 0, n_rows)
        self.stop = np.clip(np.ceil((ends - shifts - start) * rate).astype(np.int64), 0, n_rows)
        self.lo, self.hi = self.first.min(axis=1), self.stop.max(axis=1)
        self.core_lo, self.core_hi = self.first.max(axis=1), self.stop.min(axis=1)
        """Rows inside the window for every signal: summed without a mask."""
        self.counts = [min(max(math.ceil((t.end - start) * rate), 0), n_rows)
                       - min(max(math.ceil((t.onset - start) * rate), 0), n_rows) for t in trials]
        self.total = np.zeros((len(trials), n_signals))
        self.n = np.zeros((len(trials), n_signals), dtype=np.int64)

    def add(self, row: int, block: np.ndarray) -> None:
        """Rows ``row .. row + len(block)`` of the sequence."""
        end = row + len(block)
        for t in np.flatnonzero((self.lo < end) & (self.hi > row)):
            lo, hi = max(row, int(self.lo[t])), min(end, int(self.hi[t]))
            core_lo, core_hi = max(lo, int(self.core_lo[t])), min(hi, int(self.core_hi[t]))
            if core_hi > core_lo:
                core = block[core_lo - row:core_hi - row].sum(axis=0, dtype=np.float64)
                if np.all(np.isfinite(core)):
                    self.total[t] += core
                    self.n[t] += core_hi - core_lo
                    self._masked(t, row, block, lo, core_lo)
                    self._masked(t, row, block, core_hi, hi)
                    continue
            self._masked(t, row, block, lo, hi)

    def _masked(self, t: int, row: int, block: np.ndarray, lo: int, hi: int) -> None:
        if hi <= lo:
            return
        values = np.asarray(block[lo - row:hi - row], dtype=np.float64)
        rows = np.arange(lo, hi)[:, np.newaxis]
        inside = (rows >= self.first[t][np.newaxis, :]) & (rows < self.stop[t][np.newaxis, :]) & np.isfinite(values)
        self.total[t] += np.where(inside, values, 0.0).sum(axis=0)
        self.n[t] += inside.sum(axis=0)

    def result(self) -> tuple[list[np.ndarray], list[int]]:
        """Per trial the per-signal mean (NaN without a finite sample) and the grid samples in the window."""
        with np.errstate(invalid="ignore", divide="ignore"):
            means = np.where(self.n > 0, self.total / np.maximum(self.n, 1), np.nan)
        return list(means), list(self.counts)


class AreaSums:
    """Per trial and group of signals, the sum of each one's k-th sample in the trial's window,
    fed the rows in order a block at a time (``add``) as ``WindowSums`` is.

    A signal's first sample in a window, ``ceil((onset - shift - start) * rate)``, falls as
    its phase shift grows; so with the columns put in order of (group, shift descending) once,
    each trial's signals fall into few contiguous runs of one group and one first sample.
    Each block is put in that order and cast to float64 once (``np.take`` into a buffer kept
    between blocks), then one ``np.add.reduceat`` per trial sums every run of every row
    (pairwise, as ``sum`` does); each run's column is added at its samples."""

    def __init__(self, seq: Sequence, trials: list[StimulusTrial], groups: list[np.ndarray]):
        n_rows, n_signals = seq.data.shape
        shifts = np.zeros(n_signals) if seq.phase_shifts is None else np.asarray(seq.phase_shifts, dtype=np.float64)
        rate, start = float(seq.sampling_rate), float(seq.start_time)
        onsets = np.array([t.onset for t in trials], dtype=np.float64)[:, np.newaxis]
        first = np.clip(np.ceil((onsets - shifts - start) * rate).astype(np.int64), 0, n_rows)
        self.counts = np.array([min(max(math.ceil((t.end - start) * rate), 0), n_rows)
                                - min(max(math.ceil((t.onset - start) * rate), 0), n_rows) for t in trials],
                               dtype=np.int64)
        group_of = np.empty(n_signals, dtype=np.int64)
        for g, columns in enumerate(groups):
            group_of[columns] = g
        self.sizes = np.array([len(c) for c in groups], dtype=np.int64)
        self.order = np.lexsort((-shifts, group_of))
        self.in_order = bool(np.array_equal(self.order, np.arange(n_signals)))
        """Already in that order (no column gather needed)."""
        owners = group_of[self.order]
        self.lo = first.min(axis=1)
        self.hi = first.max(axis=1) + self.counts
        self.runs = []
        """Per trial: each run's first column (in ``order``, an index array for reduceat), and
        each run's first sample, group and size."""
        for t in range(len(trials)):
            firsts = first[t][self.order]
            starts = np.flatnonzero(np.r_[True, (np.diff(firsts) != 0) | (np.diff(owners) != 0)])
            self.runs.append((starts, firsts[starts].tolist(), owners[starts].tolist(),
                              np.diff(np.r_[starts, n_signals]).tolist()))
        self.total = [np.zeros((len(groups), n)) for n in self.counts]
        self.seen = [np.zeros((len(groups), n), dtype=np.int64) for n in self.counts]
        self._buffers: tuple[np.ndarray, np.ndarray] | None = None

    def _ordered(self, block: np.ndarray) -> np.ndarray:
        """The block's columns in ``order``, as float64, in buffers kept while blocks keep their shape."""
        if self._buffers is None or self._buffers[0].shape != block.shape or self._buffers[0].dtype != block.dtype:
            self._buffers = (np.empty(block.shape, block.dtype), np.empty(block.shape, np.float64))
        gathered, cast = self._buffers
        if block.dtype == np.float64:
            gathered = cast
        if self.in_order:
            gathered = block
        else:
            np.take(block, self.order, axis=1, out=gathered, mode="clip")  # a permutation: in bounds
        if gathered is not cast:
            np.copyto(cast, gathered)
        return cast

    def add(self, row: int, block: np.ndarray) -> None:
        """Rows ``row .. row + len(block)``, summed ``AREA_BLOCK_BYTES`` of float64 at a time."""
        step = max(1, AREA_BLOCK_BYTES // max(1, 8 * block.shape[1]))
        for first in range(0, len(block), step):
            self._add(row + first, block[first:first + step])

    def _add(self, row: int, block: np.ndarray) -> None:
        end = row + len(block)
        touched = np.flatnonzero((self.lo < end) & (self.hi > row) & (self.counts > 0))
        if not len(touched) or not block.shape[1]:
            return
        ordered = self._ordered(block)
        for t in touched:
            r0, r1 = max(row, int(self.lo[t])), min(end, int(self.hi[t]))
            starts, firsts, owners, sizes = self.runs[t]
            sums = np.add.reduceat(ordered[r0 - row:r1 - row], starts, axis=1)
            count, total, seen = int(self.counts[t]), self.total[t], self.seen[t]
            for run, (first, group, size) in enumerate(zip(firsts, owners, sizes)):
                a, b = max(r0, first), min(r1, first + count)
                if b > a:
                    total[group, a - first:b - first] += sums[a - r0:b - r0, run]
                    seen[group, a - first:b - first] += size

    def result(self) -> list[np.ndarray]:
        """Per trial float64 ``(n_groups, n_samples)``; NaN where a signal had no such sample."""
        return [np.where(seen == self.sizes[:, np.newaxis], total, np.nan) for total, seen in zip(self.total, self.seen)]


def feed(data: np.ndarray, *accumulators) -> None:
    """Every row of a memory-mapped sequence to the accumulators, ``BLOCK_ROWS`` at a time."""
    for row in range(0, data.shape[0], BLOCK_ROWS):
        block = np.asarray(data[row:row + BLOCK_ROWS])
        for accumulator in accumulators:
            accumulator.add(row, block)


def area_sums(seq: Sequence, trials: list[StimulusTrial], groups: list[np.ndarray]) -> list[np.ndarray]:
    """``AreaSums`` of a sequence read from its memory map."""
    sums = AreaSums(seq, trials, groups)
    feed(seq.data, sums)
    return sums.result()


def window_means(seq: Sequence, trials: list[StimulusTrial]) -> tuple[list[np.ndarray], list[int]]:
    """For each trial, the per-signal mean over its window (float64 ``(n_signals,)``) and how
    many grid samples the window holds (phase shifts aside)."""
    sums = WindowSums(seq, trials)
    feed(seq.data, sums)
    return sums.result()
