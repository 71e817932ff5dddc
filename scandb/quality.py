"""Per-neuron repeat reliability (table ``neuron_quality``), numpy only.

Each value is what neuralpredictors 0.3.0 (``neuralpredictors.measures.np_functions``)
computes for a list over stimuli of ``(n_repeats, n_neurons)`` arrays, with the same
formulas, constants and ``ddof``:

- ``oracle_correlation``: ``oracle_corr_jackknife``: each repeat paired with the mean of the
  other repeats of its stimulus, all pairs pooled, Pearson correlation with ``ddof=0``
  standard deviations plus ``eps = 1e-8`` (``corr``);
- ``oracle_correlation_conservative``: ``oracle_corr_conservative``: with ``var_noise`` the
  mean over stimuli of the ``ddof=0`` variance across repeats and ``var_mean`` the ``ddof=0``
  variance over stimuli of the repeat means, ``var_mean / sqrt(var_mean * (var_mean + var_noise))``;
- ``explainable_variance``: ``explainable_var``: ``(total - noise) / (total + 1e-9)`` with
  ``total`` the ``ddof=1`` variance of all repeats pooled and ``noise`` the mean over stimuli
  of the ``ddof=1`` variance across repeats;
- ``snr``: ``snr`` on the Anscombe transform ``2 sqrt(x + 3/8)``: the ``ddof=0`` variance over
  stimuli of the repeat means over the mean of the ``ddof=1`` variances across repeats.

What the stimuli are (``stimuli``): the trials of the scan's repeat tier (``test`` for static
scans, ``oracle`` for video scans) whose responses were released (``responses_withheld``
trials, zeros standing in for withheld data, are left out), grouped by the image they show:
by ``trials.image_id`` for static scans (as ``ScanDB.repeats``), by the video's content hash
(``trials.image_hash``) for video scans, whose ids may be missing (all 0). A stimulus shown
once is left out: neuralpredictors' ``explainable_var`` and
``snr`` are NaN with one (their ``ddof=1`` variance of a single repeat) and its jackknife pairs
it with a zero oracle. For a video each valid frame of each video is one stimulus (as the
report's oracle pooled images and frames): frame ``f`` of a video's repeats is the
``(n_repeats, n_neurons)`` array of that stimulus, for the frames every repeat has
(``f < min(n_frames)`` over the video's repeats).

``n_repeats`` is the number of trials used (repeats of stimuli shown at least twice); with
none (every trial withheld, or no stimulus repeated) every metric is NULL and ``n_repeats``
0. A metric neuralpredictors gives as NaN (a neuron that never varies) is NULL.

Everything is computed in float64 from the stored float32 responses (neuralpredictors would
compute in its input's dtype; the tests call it on float64 copies of the source arrays), and
accumulated stimulus by stimulus as sums about a per-neuron reference (the first stimulus's
mean), so memory stays bounded by one stimulus group (a block of a video's frames) however
many there are. What it costs an ingest: BENCHMARKS.md, Numbers behind the code: neuron quality.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pyarrow as pa

EPS_CORR = 1e-8
"""``corr``'s offset to the standard deviations."""
EPS_EXPLAINABLE = 1e-9
"""``explainable_var``'s offset to the total variance."""
FRAME_BLOCK = 32
"""Frames of a video read at once: a block of a full-size video's 10 repeats is 20 MB as float64."""
METRICS = ("oracle_correlation", "oracle_correlation_conservative", "explainable_variance", "snr")
REPEAT_TIERS = {"static": "test", "dynamic": "oracle"}
"""The tier whose images (videos) are shown repeatedly, by scan kind."""


class Accumulator:
    """Sums over stimuli of what the four measures need; ``add`` a batch of stimuli at a time."""

    def __init__(self, n_neurons: int):
        self.n_neurons = n_neurons
        self.shift = self.shift_a = None
        z = lambda: np.zeros(n_neurons)  # noqa: E731
        self.n_rows = 0
        self.n_stimuli = 0
        self.y, self.y2, self.o, self.o2, self.yo = z(), z(), z(), z(), z()
        self.var0, self.var1, self.m, self.m2 = z(), z(), z(), z()
        self.var1_a, self.m_a, self.m2_a = z(), z(), z()

    def add(self, x: np.ndarray) -> None:
        """``x``: ``(n_repeats, n_stimuli, n_neurons)``, stimuli with the same repeat count."""
        x = np.array(x, dtype=np.float64)  # a copy: shifted in place below
        k, s = x.shape[0], x.shape[1]
        if k < 2 or s == 0:
            return
        a = np.sqrt(x + 3 / 8)
        a *= 2
        if self.shift is None:
            self.shift = x.mean(axis=(0, 1))
            self.shift_a = a.mean(axis=(0, 1))
        total = x.sum(axis=0)
        mean = total / k
        squares = _sum_squares(x - mean)  # (stimuli, neurons): k * the ddof=0 variance across repeats
        oracle = (total - x) / (k - 1)
        oracle[np.isnan(oracle)] = 0  # as oracle_corr_jackknife does
        x -= self.shift
        oracle -= self.shift
        self.y += x.sum(axis=(0, 1))
        self.y2 += _sum_squares(x).sum(axis=0)
        self.o += oracle.sum(axis=(0, 1))
        self.o2 += _sum_squares(oracle).sum(axis=0)
        self.yo += np.einsum("ksn,ksn->n", x, oracle)
        self.var0 += squares.sum(axis=0) / k
        self.var1 += squares.sum(axis=0) / (k - 1)
        m = mean - self.shift
        self.m += m.sum(axis=0)
        self.m2 += (m * m).sum(axis=0)
        mean_a = a.mean(axis=0)
        self.var1_a += _sum_squares(a - mean_a).sum(axis=0) / (k - 1)
        mean_a -= self.shift_a
        self.m_a += mean_a.sum(axis=0)
        self.m2_a += (mean_a * mean_a).sum(axis=0)
        self.n_rows += k * s
        self.n_stimuli += s

    def result(self) -> dict[str, np.ndarray]:
        """The four measures per neuron (NaN where undefined; all NaN without stimuli)."""
        if self.n_stimuli == 0:
            return {name: np.full(self.n_neurons, np.nan) for name in METRICS}
        n, s = self.n_rows, self.n_stimuli
        with np.errstate(invalid="ignore", divide="ignore"):
            my, mo = self.y / n, self.o / n
            var_y = np.maximum(self.y2 / n - my * my, 0)
            var_o = np.maximum(self.o2 / n - mo * mo, 0)
            cov = self.yo / n - my * mo
            jackknife = cov / ((np.sqrt(var_y) + EPS_CORR) * (np.sqrt(var_o) + EPS_CORR))
            var_noise = self.var0 / s
            var_mean = np.maximum(self.m2 / s - (self.m / s) ** 2, 0)
            conservative = var_mean / np.sqrt(var_mean * (var_mean + var_noise))
            total = var_y * n / (n - 1)
            noise = self.var1 / s
            explainable = (total - noise) / (total + EPS_EXPLAINABLE)
            signal = np.maximum(self.m2_a / s - (self.m_a / s) ** 2, 0)
            snr = signal / (self.var1_a / s)
        return dict(zip(METRICS, (jackknife, conservative, explainable, snr)))


def _sum_squares(d: np.ndarray) -> np.ndarray:
    """Sum over the first axis of ``d * d``."""
    return np.einsum("k...,k...->...", d, d)


@dataclass(frozen=True)
class Stimuli:
    """The repeat tier's trials used, grouped by stimulus (trial ids, each group >= 2)."""

    tier: str
    groups: list[np.ndarray]
    frames: list[int]
    """Per group, the valid frames every repeat has (dynamic scans); 0 for static scans."""
    n_trials: int
    """Trials of the tier in the scan (0: the scan has no such tier, and no rows)."""

    @property
    def n_repeats(self) -> int:
        return int(sum(len(g) for g in self.groups))


def stimuli(conn, scan_key: str, kind: str, trials: str = "trials") -> Stimuli:
    """The stimuli of the scan's repeat tier, from its ``trials`` rows (see the module
    docstring; ``trials``: the table or view to read them from)."""
    tier = REPEAT_TIERS.get(kind, "test")
    stimulus = "image_hash" if kind == "dynamic" else "image_id"
    rows = conn.execute(
        f"SELECT list(trial_id ORDER BY trial_id), min(coalesce(n_frames, 0)), count(*) FROM {trials} "
        "WHERE scan_key = ? AND tier = ? AND NOT coalesce(responses_withheld, false) "
        f"GROUP BY {stimulus} ORDER BY min(trial_id)", [scan_key, tier]).fetchall()
    n_trials = conn.execute(f"SELECT count(*) FROM {trials} WHERE scan_key = ? AND tier = ?",
                            [scan_key, tier]).fetchone()[0]
    kept = [(np.array(ids, dtype=np.int64), int(frames)) for ids, frames, count in rows if count >= 2]
    if kind == "dynamic":
        kept = [(ids, frames) for ids, frames in kept if frames > 0]
    return Stimuli(tier, [ids for ids, _ in kept], [frames for _, frames in kept], int(n_trials))


Rows = Callable[[np.ndarray, slice], np.ndarray]
"""Response rows of these trial ids (sorted): ``(n, n_neurons)`` (static; the slice is
``slice(None)``) or ``(n, frames, n_neurons)``, the slice's frames of the time-major rows (dynamic)."""


def measure(found: Stimuli, kind: str, n_neurons: int, rows: Rows) -> dict[str, np.ndarray]:
    """The metrics of every neuron; NaN and inf responses (kept as shipped) make that
    neuron's values NaN, stored as NULL, without a warning per operation."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        return _measure(found, kind, n_neurons, rows)


def _measure(found: Stimuli, kind: str, n_neurons: int, rows: Rows) -> dict[str, np.ndarray]:
    acc = Accumulator(n_neurons)
    for ids, frames in zip(found.groups, found.frames):
        if kind == "dynamic":
            for start in range(0, frames, FRAME_BLOCK):
                acc.add(rows(ids, slice(start, min(start + FRAME_BLOCK, frames))))
        else:
            acc.add(rows(ids, slice(None))[:, None, :])
    return acc.result()


def quality_table(conn, scan_key: str, kind: str, n_neurons: int, rows: Rows, trials: str = "trials"
                  ) -> pa.Table | None:
    """The scan's ``neuron_quality`` rows; None when it has no trial of its repeat tier
    (``trials``: where its trials' rows are, see ``stimuli``)."""
    found = stimuli(conn, scan_key, kind, trials)
    if found.n_trials == 0:
        return None
    values = measure(found, kind, n_neurons, rows)
    columns = {
        "scan_key": pa.array([scan_key] * n_neurons, pa.string()),
        "neuron_idx": pa.array(np.arange(n_neurons, dtype=np.int32)),
        "tier": pa.array([found.tier] * n_neurons, pa.string()),
        "n_repeats": pa.array(np.full(n_neurons, found.n_repeats, dtype=np.int32)),
    }
    for name in METRICS:
        columns[name] = pa.array(values[name], pa.float64(), mask=~np.isfinite(values[name]))
    return pa.table(columns)


def matrix_rows(path) -> Rows:
    """Rows read from a response matrix file (memory-mapped: only the rows asked for are read)."""
    matrix = np.load(path, mmap_mode="r")
    def read(ids: np.ndarray, frames: slice) -> np.ndarray:
        return np.asarray(matrix[ids] if matrix.ndim == 2 else matrix[ids, frames])
    return read


def sql_rows(conn, scan_key: str) -> Rows:
    """Rows read from the ``responses`` list column (a static scan ingested without a matrix)."""
    def read(ids: np.ndarray, frames: slice) -> np.ndarray:
        got = conn.execute("SELECT response FROM responses WHERE scan_key = ? AND list_contains(?, trial_id) "
                           "ORDER BY trial_id", [scan_key, [int(i) for i in ids]]).fetchall()
        return np.array([r[0] for r in got], dtype=np.float32)
    return read


def insert(conn, table: pa.Table | None) -> None:
    if table is None:
        return
    conn.register("_neuron_quality", table)
    try:
        conn.execute("INSERT INTO neuron_quality BY NAME SELECT * FROM _neuron_quality")
    finally:
        conn.unregister("_neuron_quality")


def fill(conn, scan_key: str, kind: str, n_neurons: int, rows: Rows) -> None:
    """Compute and insert the scan's rows (inside the caller's transaction)."""
    insert(conn, quality_table(conn, scan_key, kind, n_neurons, rows))


def fill_stored(conn, folder, scan_key: str) -> None:
    """The scan's rows from what the database holds: its response matrix file in ``folder``
    (the store), or its ``responses`` rows (revision 0012, for scans ingested before it)."""
    kind, n_neurons = conn.execute("SELECT kind, n_neurons FROM scans WHERE scan_key = ?", [scan_key]).fetchone()
    matrix = conn.execute("SELECT path FROM response_matrices WHERE scan_key = ?", [scan_key]).fetchone()
    if matrix is not None and folder.exists(matrix[0]):
        rows = matrix_rows(folder.path(matrix[0]))
    else:
        rows = sql_rows(conn, scan_key)
    fill(conn, scan_key, kind, n_neurons, rows)
