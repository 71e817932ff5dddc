"""The numbers behind each report figure, as plain arrays: what the tests check and what
analyses can reuse (``ScanDB.oracle``). Nothing here draws."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..keys import BEHAVIOR_COLUMNS, PUPIL_COLUMNS
from ..quality import REPEAT_TIERS

RESPONSE_SAMPLE = 1000
"""Trials read for the response distributions (all of them in smaller scans)."""
LOG_BINS = np.logspace(-3, 2, 51)
"""Bins of the response distributions: positive responses from 0.001 to 100."""


@dataclass(frozen=True)
class Neurons:
    """Per neuron, in neuron_idx order: area, layer and position (microns)."""

    area: np.ndarray
    layer: np.ndarray
    x: np.ndarray
    y: np.ndarray
    z: np.ndarray


def neurons(db, scan: str) -> Neurons:
    rows = db.conn.execute("SELECT coalesce(area, '?'), coalesce(layer, '?'), x, y, z FROM neurons "
                           "WHERE scan_key = ? ORDER BY neuron_idx", [scan]).fetchnumpy()
    area, layer, x, y, z = (np.asarray(rows[c]) for c in rows)
    return Neurons(area.astype(str), layer.astype(str), x.astype(float), y.astype(float), z.astype(float))


def counts(db, query: str, scan: str) -> dict:
    """``{group: count}`` of a two- or three-column GROUP BY query over one scan."""
    return {tuple(row[:-1]) if len(row) > 2 else row[0]: row[-1]
            for row in db.conn.execute(query, [scan]).fetchall()}


def neurons_per_area_layer(db, scan: str) -> dict[tuple[str, str], int]:
    return counts(db, "SELECT coalesce(area, '?'), coalesce(layer, '?'), count(*) FROM neurons "
                      "WHERE scan_key = ? GROUP BY ALL ORDER BY ALL", scan)


def trials_per_tier(db, scan: str) -> dict[str, int]:
    return counts(db, "SELECT tier, count(*) FROM trials WHERE scan_key = ? GROUP BY ALL ORDER BY ALL", scan)


def kind(db, scan: str) -> str:
    return db.conn.execute("SELECT kind FROM scans WHERE scan_key = ?", [scan]).fetchone()[0]


MEAN_BY_TIER = {
    "static": """SELECT coalesce(a.area, '?'), t.tier, sum(a.response_sum) / sum(a.n_neurons)
                 FROM area_responses a JOIN trials t USING (scan_key, trial_id)
                 WHERE a.scan_key = ? AND NOT coalesce(t.responses_withheld, false) GROUP BY ALL ORDER BY ALL""",
    "dynamic": """SELECT coalesce(a.area, '?'), t.tier,
                         sum(list_sum(a.response_sum)) / sum(a.n_neurons * len(a.response_sum))
                  FROM area_frame_responses a JOIN trials t USING (scan_key, trial_id)
                  WHERE a.scan_key = ? AND NOT coalesce(t.responses_withheld, false) GROUP BY ALL ORDER BY ALL""",
}
"""Mean response per (area, tier) from the per-area sums stored at ingest (per trial for
static scans, per valid frame for dynamic ones), over trials whose responses were released:
zeros standing in for withheld responses would read as silent neurons."""


def mean_response_by_tier(db, scan: str) -> dict[tuple[str, str], float]:
    rows = db.conn.execute(MEAN_BY_TIER[kind(db, scan)], [scan]).fetchall()
    return {(area, tier): float(mean) for area, tier, mean in rows if mean is not None}


@dataclass(frozen=True)
class ResponseDistribution:
    """Per area: counts of positive responses in ``LOG_BINS`` and the fraction exactly zero."""

    n_trials: int
    histograms: dict[str, np.ndarray]
    zero_fraction: dict[str, float]


def withheld_tiers(db, scan: str) -> list[str]:
    """Tiers whose every trial has withheld (zero-filled) responses, as competition scans ship them."""
    return [row[0] for row in db.conn.execute(
        "SELECT tier FROM trials WHERE scan_key = ? GROUP BY tier HAVING bool_and(coalesce(responses_withheld, false)) "
        "ORDER BY tier", [scan]).fetchall()]


def released_trials(db, scan: str) -> np.ndarray:
    """Trial ids whose responses were released (not withheld as zeros), in trial order."""
    return db.conn.execute("SELECT trial_id FROM trials WHERE scan_key = ? AND NOT coalesce(responses_withheld, false) "
                           "ORDER BY trial_id", [scan]).fetchnumpy()["trial_id"].astype(np.int64)


def response_distribution(db, scan: str, areas: np.ndarray, sample: int = RESPONSE_SAMPLE) -> ResponseDistribution:
    """Over every trial with released responses, or an evenly spaced ``sample`` of them in
    larger scans (withheld trials' zeros would inflate the share of exact zeros)."""
    released = released_trials(db, scan)
    ids = released[np.unique(np.linspace(0, len(released) - 1, min(sample, len(released))).round().astype(np.int64))]
    values = db.responses(ids, scan=scan)
    values = values.reshape(len(ids), values.shape[1], -1)  # dynamic scans: (trials, neurons, frames)
    histograms, zeros = {}, {}
    for area in sorted(set(areas.tolist())):
        chosen = values[:, areas == area].reshape(-1)
        chosen = chosen[~np.isnan(chosen)]
        histograms[area] = np.histogram(chosen[chosen > 0], LOG_BINS)[0]
        zeros[area] = float((chosen == 0).mean()) if chosen.size else float("nan")
    return ResponseDistribution(len(ids), histograms, zeros)


@dataclass(frozen=True)
class BehaviorOverOrder:
    """Behavior and pupil position of every trial, sorted by presentation order."""

    order: np.ndarray
    """trial_idx when the scan gives it as a number, else trial_id."""
    by: str
    values: dict[str, np.ndarray]


FRAME_COLUMNS = ("pupil_dilation", "running_speed") + PUPIL_COLUMNS
"""The per-frame behavior of dynamic scans (table frame_behavior)."""


def behavior_over_order(db, scan: str) -> BehaviorOverOrder:
    """Per trial; for dynamic scans each value is the trial's mean over its valid frames."""
    if kind(db, scan) == "dynamic":
        columns = FRAME_COLUMNS
        means = ", ".join(f"list_avg(list_filter(b.{c}, v -> NOT isnan(v))) AS {c}" for c in columns)
        query = (f"SELECT t.trial_idx, t.trial_id, {means} FROM trials t JOIN frame_behavior b "
                 "USING (scan_key, trial_id) WHERE t.scan_key = ? ORDER BY t.trial_idx, t.trial_id")
    else:
        columns = BEHAVIOR_COLUMNS + PUPIL_COLUMNS
        query = (f"SELECT trial_idx, trial_id, {', '.join(columns)} FROM trials_full "
                 "WHERE scan_key = ? ORDER BY trial_idx, trial_id")
    rows = db.conn.execute(query, [scan]).fetchnumpy()
    numeric = not np.ma.is_masked(rows["trial_idx"]) and len(rows["trial_idx"]) > 0
    by = "trial_idx" if numeric else "trial_id"
    order = np.asarray(rows[by], dtype=np.int64)
    sort = np.argsort(order, kind="stable")
    values = {c: np.ma.filled(np.ma.asarray(rows[c], dtype=float), np.nan)[sort] for c in columns}
    return BehaviorOverOrder(order[sort], by, values)


def repeat_tier(db, scan: str) -> str:
    return REPEAT_TIERS.get(kind(db, scan), "test")


def oracle(db, scan: str, tier: str | None = None) -> np.ndarray:
    """Per-neuron oracle correlation over the repeated images of ``tier``.

    Each repeat's response is paired with the mean of the other repeats of its image
    (leave-one-out); the correlation of those pairs, pooled over all images (and frames,
    for videos), is the neuron's oracle, as in the Sensorium evaluation code. Images shown
    once are skipped.

    For the scan's repeat tier this is ``neuron_quality.oracle_correlation``, computed at
    ingest (neuralpredictors' ``oracle_corr_jackknife`` over the released repeats; NaN where
    NULL: withheld responses). Another tier is computed here from its responses (a neuron
    that never varies then gets NaN).
    """
    tier = tier or repeat_tier(db, scan)
    stored = stored_oracle(db, scan, tier)
    if stored is not None:
        return stored
    groups = [ids for ids in db.repeats(scan, tier).values() if len(ids) > 1]
    n_neurons = db.conn.execute("SELECT n_neurons FROM scans WHERE scan_key = ?", [scan]).fetchone()[0]
    if not groups:
        return np.full(n_neurons, np.nan)
    responses, others = [], []
    for ids in groups:
        r = db.responses(ids, scan=scan).astype(np.float64)
        r = r.reshape(len(ids), n_neurons, -1)
        loo = (r.sum(axis=0, keepdims=True) - r) / (len(ids) - 1)
        responses.append(np.moveaxis(r, 1, -1).reshape(-1, n_neurons))
        others.append(np.moveaxis(loo, 1, -1).reshape(-1, n_neurons))
    return _column_correlation(np.concatenate(responses), np.concatenate(others))


def stored_oracle(db, scan: str, tier: str) -> np.ndarray | None:
    """``neuron_quality.oracle_correlation`` of every neuron, NULL as NaN; None without rows for this tier."""
    rows = db.conn.execute("SELECT q.oracle_correlation, q.neuron_idx IS NOT NULL FROM neurons n LEFT JOIN "
                           "neuron_quality q ON q.scan_key = n.scan_key AND q.neuron_idx = n.neuron_idx "
                           "AND q.tier = ? WHERE n.scan_key = ? ORDER BY n.neuron_idx", [tier, scan]).fetchall()
    if not rows or not all(present for _, present in rows):
        return None
    return np.array([np.nan if v is None else v for v, _ in rows], dtype=np.float64)


def _column_correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each column of ``a`` with the same column of ``b``, NaN-aware."""
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b = np.where(keep, a, 0.0), np.where(keep, b, 0.0)
    n = keep.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        ma, mb = a.sum(axis=0) / n, b.sum(axis=0) / n
        da, db_ = np.where(keep, a - ma, 0.0), np.where(keep, b - mb, 0.0)
        return (da * db_).sum(axis=0) / np.sqrt((da ** 2).sum(axis=0) * (db_ ** 2).sum(axis=0))


def oracle_frame(db, scan: str, tier: str | None = None):
    """``oracle`` as a DataFrame: scan_key, neuron_idx, unit_id, area, layer, oracle."""
    frame = db.conn.execute("SELECT scan_key, neuron_idx, unit_id, area, layer FROM neurons WHERE scan_key = ? "
                            "ORDER BY neuron_idx", [scan]).df()
    frame["oracle"] = oracle(db, scan, tier)
    return frame


@dataclass(frozen=True)
class ModelScores:
    """The models scored on one scan, for the report's model section: per model the
    single-trial correlation of every neuron (``neuron_idx`` order, NaN where the scorer
    gives none) in ``tier``, and its mean per area (NaN ignored, as SQL's ``avg``)."""

    tier: str
    models: list[str]
    areas: np.ndarray
    correlation: dict[str, np.ndarray]
    per_area: dict[str, dict[str, float]]
    """``{model: {area: mean}}``, areas sorted, plus ``"all"`` over every neuron."""
    n_neurons: dict[str, int]
    """Neurons per area (and ``"all"``)."""

    def best(self) -> str:
        """The model with the highest mean single-trial correlation over all neurons (ties: by name)."""
        return min(self.models, key=lambda m: (-np.nan_to_num(self.per_area[m]["all"], nan=-np.inf), m))


def model_tier(db, scan: str) -> str | None:
    """The tier the model section shows: the scan's repeat tier (test; oracle for video
    scans) when a model was scored on it, else the scored tier with the most trials; None
    when no model has scores for the scan."""
    rows = db.conn.execute("SELECT tier, max(n_trials) FROM neuron_scores WHERE scan_key = ? GROUP BY tier "
                           "ORDER BY 2 DESC, 1", [scan]).fetchall()
    if not rows:
        return None
    tiers = [tier for tier, _ in rows]
    preferred = repeat_tier(db, scan)
    return preferred if preferred in tiers else tiers[0]


def model_scores(db, scan: str) -> ModelScores | None:
    """Every model's single-trial correlation on ``scan`` in ``model_tier``; None without scores."""
    tier = model_tier(db, scan)
    if tier is None:
        return None
    areas = neurons(db, scan).area
    rows = db.conn.execute("SELECT model, neuron_idx, single_trial_correlation FROM neuron_scores "
                           "WHERE scan_key = ? AND tier = ? ORDER BY model, neuron_idx", [scan, tier]).fetchall()
    correlation: dict[str, np.ndarray] = {}
    for model, neuron_idx, value in rows:
        values = correlation.setdefault(model, np.full(len(areas), np.nan))
        values[neuron_idx] = np.nan if value is None else value
    groups = {area: areas == area for area in sorted(set(areas.tolist()))}
    groups["all"] = np.ones(len(areas), dtype=bool)
    per_area = {model: {area: _nanmean(values[chosen]) for area, chosen in groups.items()}
                for model, values in correlation.items()}
    return ModelScores(tier, list(correlation), areas, correlation, per_area,
                       {area: int(chosen.sum()) for area, chosen in groups.items()})


def _nanmean(values: np.ndarray) -> float:
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float("nan")
