"""Normalisation as the Sensorium loaders do it (neuralpredictors' ``NeuroNormalizer``),
from a scan's stored statistics (source ``all``):

- images are z-scored: ``(x - mean) / std``;
- responses are divided by their per-neuron std; a std at or below 1% of the mean std is
  replaced by that threshold (so silent neurons are not blown up);
- behavior is divided by its std;
- pupil_center is z-scored.

Results are float32.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

StatisticGetter = Callable[[str, str], np.ndarray]
"""(variable, stat) -> the stored statistics array."""


def response_precision(std: np.ndarray) -> np.ndarray:
    """1 / std per neuron, with small stds replaced by 1% of the mean std."""
    threshold = 0.01 * std.mean()
    precision = np.ones_like(std) / threshold
    idx = std > threshold
    precision[idx] = 1 / std[idx]
    return precision


@dataclass(frozen=True)
class Normalizer:
    image_mean: np.ndarray
    image_std: np.ndarray
    precision: np.ndarray
    behavior_precision: np.ndarray
    pupil_mean: np.ndarray
    pupil_std: np.ndarray

    @classmethod
    def from_statistics(cls, get: StatisticGetter) -> "Normalizer":
        return cls(image_mean=get("images", "mean"), image_std=get("images", "std"),
                   precision=response_precision(get("responses", "std")),
                   behavior_precision=1 / get("behavior", "std"),
                   pupil_mean=get("pupil_center", "mean"), pupil_std=get("pupil_center", "std"))

    def images(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.image_mean) / self.image_std).astype(np.float32)

    def responses(self, x: np.ndarray, neurons: np.ndarray | None = None) -> np.ndarray:
        precision = self.precision if neurons is None else self.precision[neurons]
        return (x * precision).astype(np.float32)

    def behavior(self, x: np.ndarray) -> np.ndarray:
        return (x * self.behavior_precision.reshape(-1)).astype(np.float32)

    def pupil_center(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.pupil_mean.reshape(-1)) / self.pupil_std.reshape(-1)).astype(np.float32)
