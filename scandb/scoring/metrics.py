"""The Sensorium metrics per neuron, exactly as the competitions' scorers compute them.

Static scans, as ``sensorium/utility/metrics.py`` (sinzlab/sensorium) over
``neuralpredictors.measures.np_functions``:

- ``single_trial_correlation``: ``corr(prediction, response, axis=0)`` over the tier's
  trials: ``ddof=0`` standard deviations plus ``eps = 1e-8``;
- ``correlation_to_average``: the same ``corr`` of the per-image means over repeats (images
  by ``trials.image_id``, as the scorer's ``split_images``);
- ``fev``, ``feve``: ``fev(targets, predictions, return_exp_var=True)`` over the trials
  grouped by image: ``total`` the ``ddof=1`` variance of every trial's response, ``noise``
  the mean over images of the ``ddof=1`` variance across repeats, ``fev = (total - noise) /
  total`` and ``feve = 1 - (mean squared error - noise) / (total - noise)``. Only images
  shown at least twice enter (the scorer's test tier has no other; one shown once would make
  every neuron's value NaN). The competition reports FEVE averaged over neurons with
  ``fev >= 0.15`` (``FEV_THRESHOLD``); rows keep every neuron's.

Video scans, as ``sensorium/utility/scores.py`` (ecker-lab/sensorium_2023): the first 50
frames of each trial skipped (``SKIP_FRAMES``), the rest up to the trial's end concatenated
across trials, ``corr`` per neuron, NaN set to 0. That scorer defines no other metric, so
the other three are NULL for video scans.

Everything is computed in float64 (the scorers compute in their inputs' float32); a value
a scorer gives as NaN or infinite (a neuron that never varies) is None.
"""

from __future__ import annotations

import numpy as np

EPS = 1e-8
"""``corr``'s offset to the standard deviations."""
SKIP_FRAMES = 50
"""Frames at the start of each video trial the 2023 scorer leaves out (a model's burn-in)."""
FEV_THRESHOLD = 0.15
"""The competition averages FEVE over neurons with at least this FEV."""
METRICS = ("single_trial_correlation", "correlation_to_average", "fev", "feve")


def corr(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """neuralpredictors' ``corr(x, y, axis=0)``, in float64."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    x = (x - x.mean(axis=0)) / (x.std(axis=0) + EPS)
    y = (y - y.mean(axis=0)) / (y.std(axis=0) + EPS)
    return (x * y).mean(axis=0)


def static_scores(responses: np.ndarray, predictions: np.ndarray, image_ids: np.ndarray) -> dict[str, np.ndarray]:
    """The four metrics per neuron for one tier: ``responses`` and ``predictions``
    ``(n_trials, n_neurons)``, aligned, ``image_ids`` ``(n_trials,)``."""
    responses = np.asarray(responses, dtype=np.float64)
    predictions = np.asarray(predictions, dtype=np.float64)
    images, group = np.unique(np.asarray(image_ids), return_inverse=True)
    n_images, n_neurons = len(images), responses.shape[1]
    counts = np.bincount(group, minlength=n_images).astype(np.float64)
    mean_responses = _group_sums(responses, group, n_images) / counts[:, None]
    mean_predictions = _group_sums(predictions, group, n_images) / counts[:, None]
    scores = {"single_trial_correlation": corr(predictions, responses),
              "correlation_to_average": corr(mean_responses, mean_predictions)}
    repeated = counts[group] >= 2
    if repeated.any():
        scores["fev"], scores["feve"] = _fev(responses[repeated], predictions[repeated],
                                             mean_responses[group[repeated]], counts[group[repeated]],
                                             int((counts >= 2).sum()))
    else:
        scores["fev"] = scores["feve"] = np.full(n_neurons, np.nan)
    return scores


def _group_sums(values: np.ndarray, group: np.ndarray, n_groups: int) -> np.ndarray:
    sums = np.zeros((n_groups, values.shape[1]))
    np.add.at(sums, group, values)
    return sums


def _fev(responses, predictions, image_means, repeats, n_images) -> tuple[np.ndarray, np.ndarray]:
    """neuralpredictors' ``fev(..., return_exp_var=True)`` for trials of repeated images:
    ``image_means`` and ``repeats`` are each trial's image's mean response and repeat count."""
    with np.errstate(divide="ignore", invalid="ignore"):
        total = responses.var(axis=0, ddof=1)
        noise = (((responses - image_means) ** 2) / (repeats[:, None] - 1)).sum(axis=0) / n_images
        error = ((responses - predictions) ** 2).mean(axis=0)
        fev = (total - noise) / total
        feve = 1 - (error - noise) / (total - noise)
    return fev, feve


class VideoScores:
    """The 2023 scorer's single-trial correlation, accumulated trial by trial (sums about the
    first trial's means, in float64), so memory stays one trial's frames however many
    trials: ``add`` each trial's valid ``(n_frames, N)`` responses and predictions."""

    def __init__(self, n_neurons: int):
        self.n_neurons = n_neurons
        self.n_trials = 0
        self.n_frames = 0
        self.shift_r = self.shift_p = None
        self.r = self.p = self.rr = self.pp = self.rp = np.zeros(n_neurons)

    def add(self, responses: np.ndarray, predictions: np.ndarray) -> None:
        """One trial's frames up to its end; the first ``SKIP_FRAMES`` are left out."""
        self.n_trials += 1
        if len(responses) <= SKIP_FRAMES:
            return
        r = np.asarray(responses[SKIP_FRAMES:], dtype=np.float64)
        p = np.asarray(predictions[SKIP_FRAMES:], dtype=np.float64)
        if self.shift_r is None:
            self.shift_r, self.shift_p = r.mean(axis=0), p.mean(axis=0)
        r -= self.shift_r
        p -= self.shift_p
        self.n_frames += len(r)
        self.r = self.r + r.sum(axis=0)
        self.p = self.p + p.sum(axis=0)
        self.rr = self.rr + (r * r).sum(axis=0)
        self.pp = self.pp + (p * p).sum(axis=0)
        self.rp = self.rp + (r * p).sum(axis=0)

    def scores(self) -> dict[str, np.ndarray]:
        nan = np.full(self.n_neurons, np.nan)
        single = nan.copy()
        if self.n_frames:
            n = self.n_frames
            mean_r, mean_p = self.r / n, self.p / n
            std_r = np.sqrt(np.maximum(self.rr / n - mean_r ** 2, 0))
            std_p = np.sqrt(np.maximum(self.pp / n - mean_p ** 2, 0))
            single = (self.rp / n - mean_r * mean_p) / ((std_r + EPS) * (std_p + EPS))
            single[np.isnan(single)] = 0
        return {"single_trial_correlation": single, "correlation_to_average": nan, "fev": nan, "feve": nan}


def fev_filtered_mean(fev: np.ndarray, feve: np.ndarray) -> float:
    """The competition's FEVE summary: the mean over neurons with ``fev >= FEV_THRESHOLD``."""
    keep = np.asarray(fev) >= FEV_THRESHOLD
    return float(np.mean(np.asarray(feve)[keep])) if keep.any() else float("nan")
