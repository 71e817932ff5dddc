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

Static scores are computed as the scorer computes them: the same numpy operations in the
same order, in the arrays' dtype (float32 responses with float32 predictions: float32), the
tier's trials in trial order, so they equal the scorer's to the bit. Video scores are
accumulated trial by trial in float64 (sums about the first trial's means), so memory stays
one trial's frames where the 2023 scorer concatenates every frame of the tier; they agree
with it to float32 rounding. A value a scorer gives as NaN or infinite (a neuron that never
varies) is stored as NULL.
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
    """neuralpredictors' ``corr(x, y, axis=0)``, the same operations in the same order."""
    x = (x - x.mean(axis=0, keepdims=True)) / (x.std(axis=0, keepdims=True, ddof=0) + EPS)
    y = (y - y.mean(axis=0, keepdims=True)) / (y.std(axis=0, keepdims=True, ddof=0) + EPS)
    return (x * y).mean(axis=0)


def static_scores(responses: np.ndarray, predictions: np.ndarray, image_ids: np.ndarray) -> dict[str, np.ndarray]:
    """The four metrics per neuron for one tier: ``responses`` and ``predictions``
    ``(n_trials, n_neurons)``, aligned, rows in trial order (as the scorer orders them),
    ``image_ids`` ``(n_trials,)``. Computed in the arrays' dtype (float32 for float32
    predictions), as the scorer computes; images in ``np.unique`` order, as its ``split_images``."""
    dtype = np.result_type(responses, predictions, np.float32)
    responses = np.asarray(responses, dtype=dtype)
    predictions = np.asarray(predictions, dtype=dtype)
    image_ids = np.asarray(image_ids)
    masks = [image_ids == image for image in np.unique(image_ids)]
    split_responses = [responses[mask] for mask in masks]
    split_predictions = [predictions[mask] for mask in masks]
    means = lambda groups: np.vstack([g.mean(axis=0, keepdims=True) for g in groups])  # noqa: E731
    scores = {"single_trial_correlation": corr(predictions, responses),
              "correlation_to_average": corr(means(split_responses), means(split_predictions))}
    repeated = [k for k, group in enumerate(split_responses) if len(group) >= 2]
    if repeated:
        scores["fev"], scores["feve"] = fev([split_responses[k] for k in repeated],
                                            [split_predictions[k] for k in repeated])
    else:
        scores["fev"] = scores["feve"] = np.full(responses.shape[1], np.nan)
    return scores


def fev(targets: list[np.ndarray], predictions: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """neuralpredictors' ``fev(targets, predictions, return_exp_var=True)``: per image
    ``(n_repeats, n_neurons)`` arrays; a neuron whose total and noise variance agree gets
    NaN or infinity there, which the caller stores as NULL."""
    with np.errstate(divide="ignore", invalid="ignore"):
        prediction_error = np.vstack([(t - p) ** 2 for t, p in zip(targets, predictions)])
        image_var = np.vstack([np.var(t, axis=0, ddof=1) for t in targets])
        total_var = np.var(np.vstack(targets), axis=0, ddof=1)
        noise_var = np.mean(image_var, axis=0)
        fev = (total_var - noise_var) / total_var
        feve = 1 - (np.mean(prediction_error, axis=0) - noise_var) / (total_var - noise_var)
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
        r = np.asarray(responses[SKIP_FRAMES:], dtype=np.float64)  # a copy: shifted in place below
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
