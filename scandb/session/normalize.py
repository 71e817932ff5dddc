"""ChunkDataset's normalisation (``initialize_statistics`` + torchvision ``Normalize``), in numpy.

Statistics come from ``<modality>/meta/{means,stds}.npy``; responses' stds below 1 % of
their mean are raised to it (which needs their ``(1, N)`` shape); a mode names where the
mean and std come from. Both are reshaped to ``(1, -1)`` and cast to the values' dtype
before ``(x - mean) / std``, as ``Normalize`` casts them to the tensor's dtype.
"""

from __future__ import annotations

import numpy as np

from ..errors import BadScanError, UsageError
from .modalities import Modality, Sequence


def statistics(session, modality: Modality, mode) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std), each ``(1, k)``, for a normalisation mode (a string or a {means, stds} dict);
    a named mode's are worked out once per opened modality (a training item asks four times)."""
    if not isinstance(mode, str):
        return _statistics(session, modality, mode)
    kept = modality.__dict__.setdefault("_statistics_by_mode", {})
    if mode not in kept:
        mean, std = _statistics(session, modality, mode)
        mean.flags.writeable = std.flags.writeable = False  # shared by every later call
        kept[mode] = (mean, std)
    return kept[mode]


def _statistics(session, modality: Modality, mode) -> tuple[np.ndarray, np.ndarray]:
    stats = getattr(modality, "statistics", {})
    for stat in ("means", "stds"):
        if stat not in stats:
            raise BadScanError(session.path, f"{modality.name}/meta/{stat}.npy",
                               f"missing; normalisation {mode!r} needs it")
    means, stds = stats["means"].copy(), stats["stds"].copy()
    if modality.name == "responses":
        if stds.ndim != 2:
            raise BadScanError(session.path, "responses/meta/stds.npy",
                               f"shape {stds.shape}; ChunkDataset indexes stds[0, :], so it must be (1, N)")
        threshold = 0.01 * np.nanmean(stds)
        stds[0, stds[0, :] < threshold] = threshold
    if isinstance(mode, dict):
        means = np.array(mode.get("means", means))
        stds = np.array(mode.get("stds", stds))
    elif mode == "normalize_variance_only":
        means = np.zeros_like(means)
    elif mode == "recompute_responses":
        means = np.zeros_like(means)
        stds = np.nanstd(np.asarray(session.modalities["responses"].data), 0)[None, ...]
    elif mode == "recompute_behavior":
        if not isinstance(modality, Sequence):
            raise UsageError(f"normalisation 'recompute_behavior' needs a sequence, not {modality.name}")
        data = np.asarray(modality.data)
        means, stds = np.nanmean(data, 0)[None, ...], np.nanstd(data, 0)[None, ...]
    elif mode == "screen_default":
        means, stds = np.array(80), np.array(60)
    return means.reshape(1, -1), stds.reshape(1, -1)


def normalize_values(session, modality: Modality, values: np.ndarray, mode, in_place: bool = False) -> np.ndarray:
    """``(values - mean) / std`` in the values' dtype; a zero std is refused, as ``Normalize`` does.
    ``in_place``: the values are the caller's own (freshly sampled) and may be overwritten."""
    mean, std = statistics(session, modality, mode)
    dtype = values.dtype if values.dtype.kind == "f" else np.dtype(np.float32)
    mean, std = mean.astype(dtype), std.astype(dtype)
    if np.any(std == 0):
        raise BadScanError(session.path, f"{modality.name}/meta/stds.npy",
                           f"a std is zero; normalisation {mode!r} would divide by it (torchvision refuses)")
    if values.ndim == 2 or mean.shape[1] in (1, values.shape[-1]):
        if in_place and values.dtype == dtype and values.flags.writeable:
            if not _all_positive_zero(mean):  # x - (+0.0) is x for every float: a pass saved
                np.subtract(values, mean, out=values)  # no full-size temporaries
            return np.divide(values, std, out=values)
        return (values.astype(dtype, copy=False) - mean) / std
    raise BadScanError(session.path, f"{modality.name}/meta/means.npy",
                       f"{mean.shape[1]} values do not broadcast against frames of shape {values.shape[1:]}")


def _all_positive_zero(values: np.ndarray) -> bool:
    """Every value +0.0 (``normalize_variance_only``'s means); -0.0 would turn -0.0 into +0.0."""
    return not np.any(values) and not np.any(np.signbit(values))


def frame_normalizer(session, modality: Modality, mode, frame_shape: tuple[int, ...]):
    """``normalize_values`` for float32 screen values of frames of ``frame_shape``, as a
    function normalising frames in place (one frame, or a stack of them): the screen sampler
    normalises each frame shown once. Its ``uniform`` is true when one mean and one std apply
    to every pixel, so normalising before enlarging a frame gives the same floats.
    Refuses what ``normalize_values`` refuses."""
    mean, std = statistics(session, modality, mode)
    mean, std = mean.astype(np.float32), std.astype(np.float32)
    if np.any(std == 0):
        raise BadScanError(session.path, f"{modality.name}/meta/stds.npy",
                           f"a std is zero; normalisation {mode!r} would divide by it (torchvision refuses)")
    if not (len(frame_shape) == 1 or mean.shape[1] in (1, frame_shape[-1])):
        raise BadScanError(session.path, f"{modality.name}/meta/means.npy",
                           f"{mean.shape[1]} values do not broadcast against frames of shape {tuple(frame_shape)}")

    def normalise(frame: np.ndarray) -> np.ndarray:
        np.subtract(frame, mean[0] if frame.ndim == 1 else mean, out=frame)
        return np.divide(frame, std[0] if frame.ndim == 1 else std, out=frame)

    normalise.uniform = mean.size == 1 and std.size == 1
    return normalise
