"""Normalisation as the Sensorium loaders do it (neuralpredictors' ``NeuroNormalizer``),
from a scan's stored statistics (source ``all``):

- images are z-scored: ``(x - mean) / std``; videos per pixel and frame;
- responses are divided by their per-neuron std; a std at or below 1% of the mean std is
  replaced by that threshold (so silent neurons are not blown up);
- behavior is divided by its std;
- pupil_center is z-scored.

Dynamic scans ship time-resolved statistics (responses (N, T), videos (H, W, T), behavior
and pupil_center (2, T)): the same rules then apply per frame, and the 1% threshold of
responses is 1% of the mean over every (neuron, frame) std, as neuralpredictors computes it.

Statistics written as scalars (shape ``()``) broadcast over every pixel and frame.

Results are float32. Each key needs only its own statistics, so a scan that shipped some
of them can still be normalised for those keys.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

NEEDED: dict[str, tuple[str, ...]] = {
    "images": ("mean", "std"),
    "videos": ("mean", "std"),
    "responses": ("std",),
    "behavior": ("std",),
    "pupil_center": ("mean", "std"),
}
"""The statistics (``meta/statistics/<key>/all/<stat>.npy``) each key's rule uses."""


def response_precision(std: np.ndarray) -> np.ndarray:
    """1 / std per neuron, with small stds replaced by 1% of the mean std."""
    threshold = 0.01 * std.mean()
    precision = np.ones_like(std) / threshold
    idx = std > threshold
    precision[idx] = 1 / std[idx]
    return precision


def _per_row(stat: np.ndarray) -> np.ndarray:
    """A static scan's (3,) or (1, 3) statistic as (3,); a dynamic scan's (2, T) as it is."""
    return stat if stat.ndim == 2 and stat.shape[0] > 1 else stat.reshape(-1)


def cut_frames(values: np.ndarray, frames) -> np.ndarray:
    """``values`` (time last) at these frames; an (n, F) array of consecutive frames per row
    gives (n, ..., F), each row one contiguous block of a time-major copy, returned with the
    time-major strides of the windows it scales (a gather along the last axis was several
    times slower; BENCHMARKS.md, Numbers behind the code: statistics windows).
    A scalar (shape ``()``, as some releases write video statistics) has no frames: it
    broadcasts over every frame as it is, as the Sensorium loaders use it."""
    if values.ndim == 0:
        return values
    if isinstance(frames, slice):
        return values if frames == slice(None) else values[..., frames]
    width = frames.shape[1]
    time_major = np.ascontiguousarray(np.moveaxis(values, -1, 0))
    blocks = np.empty((len(frames), width, *values.shape[:-1]), values.dtype)
    for row, first in enumerate(frames[:, 0].tolist()):
        blocks[row] = time_major[first:first + width]
    return np.moveaxis(blocks, 1, -1)


def normalize(key: str, x: np.ndarray, stats: Mapping[str, np.ndarray],
              neurons: np.ndarray | None = None, frames=slice(None)) -> np.ndarray:
    """``x`` (rows of one key of one scan) normalised with that scan's ``stats`` for the key;
    ``neurons`` are the response columns ``x`` holds, when not all; ``frames`` the window
    ``x`` holds of a dynamic scan (factors are computed on the whole statistics first, so
    the 1% threshold is the same for every window)."""
    if key in ("images", "videos"):
        return ((x - cut_frames(stats["mean"], frames)) / cut_frames(stats["std"], frames)).astype(np.float32,
                                                                                                 copy=False)
    if key == "responses":
        precision = response_precision(stats["std"])
        if neurons is not None and precision.ndim:
            precision = precision[neurons]
        return (x * cut_frames(precision, frames)).astype(np.float32, copy=False)
    if key == "behavior":
        return (x * cut_frames(1 / _per_row(stats["std"]), frames)).astype(np.float32)
    if key == "pupil_center":
        return ((x - cut_frames(_per_row(stats["mean"]), frames))
                / cut_frames(_per_row(stats["std"]), frames)).astype(np.float32)
    raise ValueError(f"no normalisation rule for {key!r}")
