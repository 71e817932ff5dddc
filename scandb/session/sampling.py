"""A session's modalities at arbitrary times, by experanto's interpolators' rules (EXPERANTO_FORMAT.md §6).

Vectorised numpy over the memory-mapped arrays: one gather per sequence (per-neuron phase
shifts included), each screen frame rescaled once however many times ask for it. Times
outside a modality's closed valid interval are dropped; ``valid`` holds the indexes into
``times`` of the rows returned, as experanto's ``interpolate(..., return_valid=True)`` does.
"""

from __future__ import annotations

import warnings

import cv2
import numpy as np

from ..errors import UsageError
from .config import merged_config
from .modalities import Screen, Sequence, Spikes, TimeIntervals
from .normalize import frame_normalizer, normalize_values

PARALLEL_TIMES = 1000
"""From this many query times on, modalities are sampled in two threads."""
SCREEN_ONSET_SLACK = 1e-4
"""experanto adds 0.1 ms to every query before looking up the frame onsets."""


def valid_indexes(times: np.ndarray, interval: tuple[float, float]) -> np.ndarray:
    """Indexes of the times inside the closed interval (``TimeInterval.intersect``)."""
    start, end = interval
    return np.where((times >= start) & (times <= end))[0]


def sample_sequence(seq: Sequence, times: np.ndarray, interpolation_mode: str = "nearest_neighbor",
                    keep_nans: bool = False, **_ignored) -> tuple[np.ndarray, np.ndarray]:
    """Previous sample (``nearest_neighbor``) or ``linear``, each neuron at ``t - phase_shift``."""
    times = np.asarray(times, dtype=np.float64)
    valid = valid_indexes(times, seq.valid_interval)
    valid_times = times[valid]
    data = seq.data
    if len(valid_times) == 0:
        return np.empty((0, data.shape[1]), dtype=data.dtype), valid
    time_delta = 1.0 / seq.sampling_rate
    shifted = seq.phase_shifts is not None
    if shifted and interpolation_mode == "nearest_neighbor":
        return _nearest_shifted(seq, valid_times, time_delta), valid
    if shifted:
        query = valid_times[:, np.newaxis] - seq.phase_shifts[np.newaxis, :]
    else:
        query = valid_times
    lower_float = query - seq.start_time  # (t - start) / time_delta, floored: experanto's exact steps, in place
    np.divide(lower_float, time_delta, out=lower_float)
    lower = np.floor(lower_float, out=lower_float).astype(int)
    del lower_float
    columns = np.arange(data.shape[1])
    if interpolation_mode == "nearest_neighbor":
        return (_gather(data, lower, columns) if shifted else data[lower]), valid
    if interpolation_mode != "linear":
        raise UsageError(f"interpolation_mode {interpolation_mode!r}: use 'nearest_neighbor' or 'linear'")
    upper = lower + 1
    overflow = (upper >= data.shape[0]) | (lower < 0)
    keep = ~overflow.any(axis=1) if shifted else ~overflow
    valid, lower, upper, query = valid[keep], lower[keep], upper[keep], query[keep]
    times_lower = seq.start_time + lower * time_delta
    times_upper = seq.start_time + upper * time_delta
    denom = times_upper - times_lower
    lower_ratio = (times_upper - query) / denom
    upper_ratio = (query - times_lower) / denom
    if shifted:
        values = lower_ratio * _gather(data, lower, columns) + upper_ratio * _gather(data, upper, columns)
    else:
        values = lower_ratio[:, None] * data[lower] + upper_ratio[:, None] * data[upper]
    if not keep_nans:
        _fill_nans_with_column_means(values)
    return values, valid


QUERY_BLOCK = 256
"""Times whose rows are copied and patched together (a few MB)."""


def _floor_index(times, shifts, start: float, time_delta: float) -> np.ndarray:
    """experanto's row index ``floor((t - shift - start) / time_delta)``, in its exact steps."""
    lower = np.subtract(times, shifts)
    lower -= start
    np.divide(lower, time_delta, out=lower)
    return np.floor(lower, out=lower).astype(np.intp)


def _nearest_shifted(seq: Sequence, times: np.ndarray, time_delta: float) -> np.ndarray:
    """Previous sample of each neuron at ``t - phase_shift``, without an index per value.

    The floor index, computed in experanto's exact steps, never increases with the shift (each
    step rounds monotonically), so with the neurons sorted by shift each time reads row ``lo``
    (that of the largest shift) for a suffix of them and row ``lo + 1`` for the prefix before:
    the prefix's length is found from the shift where the exact quotient crosses ``lo + 1``,
    then settled by evaluating the same expression either side (``_prefix_lengths``). Each time's row is copied whole and the prefix patched from the next row.
    Shifts spanning more than one sample take the per-value gather instead."""
    data, shifts, start = seq.data, seq.phase_shifts, seq.start_time
    order, sorted_shifts, rank = seq.shift_order
    lo = _floor_index(times, sorted_shifts[-1], start, time_delta)
    hi = _floor_index(times, sorted_shifts[0], start, time_delta)
    if np.any(hi - lo > 1):
        lower = _floor_index(times[:, np.newaxis], shifts[np.newaxis, :], start, time_delta)
        return _gather(data, lower, np.arange(data.shape[1]))
    count = _prefix_lengths(times, sorted_shifts, lo, hi, start, time_delta)
    rows = data.view(np.ndarray) if isinstance(data, np.memmap) else np.asarray(data)  # no memmap subclass per row
    if len(lo) and (lo.min() < 0 or lo.max() >= len(rows)):
        raise IndexError(f"row {int(lo.min())}..{int(lo.max())} of {len(rows)}: outside the sequence")
    out = np.empty((len(times), data.shape[1]), dtype=data.dtype)
    for first in range(0, len(times), QUERY_BLOCK):
        block = slice(first, first + QUERY_BLOCK)
        np.take(rows, lo[block], axis=0, out=out[block], mode="clip")  # in bounds (checked): unbuffered
        prefix = count[block]
        if prefix.any():
            following = np.take(rows, np.minimum(lo[block] + 1, len(rows) - 1), axis=0)
            _patch_prefixes(out[block], following, rank, prefix)
    return out


def _patch_prefixes(out: np.ndarray, following: np.ndarray, rank: np.ndarray, prefix: np.ndarray) -> None:
    """``out[t, j] = following[t, j]`` where ``rank[j] < prefix[t]``. float32 and float64 rows
    take ``cv2.copyTo`` with that mask: one masked copy of whole elements (NaN bits untouched),
    instead of four integer passes and their temporaries. For other 4- and 8-byte values the
    choice is made on the bits (``out ^ ((out ^ following) & select)``, ``select`` all ones
    where ``rank - prefix`` is negative): whole-array integer passes, about twice as fast as
    a masked copy, and any value (NaN too) is moved untouched."""
    if out.dtype in (np.float32, np.float64) and out.ndim == 2:  # cv2's masked copy: one pass, bytes moved as they are
        mask = np.less(rank[np.newaxis, :], prefix[:, np.newaxis]).view(np.uint8)
        written = cv2.copyTo(following, mask, dst=out)
        if not np.shares_memory(written, out):
            np.copyto(out, written)
        return
    size = out.dtype.itemsize
    if size not in (4, 8):
        np.putmask(out, rank[np.newaxis, :] < prefix[:, np.newaxis], following)
        return
    signed, unsigned = np.dtype(f"i{size}"), np.dtype(f"u{size}")
    select = np.subtract(rank.astype(signed)[np.newaxis, :], prefix.astype(signed)[:, np.newaxis])
    np.right_shift(select, size * 8 - 1, out=select)
    bits = out.view(unsigned)
    difference = np.bitwise_xor(bits, following.view(unsigned))
    np.bitwise_and(difference, select.view(unsigned), out=difference)
    np.bitwise_xor(bits, difference, out=bits)


def _prefix_lengths(times, sorted_shifts, lo, hi, start: float, time_delta: float) -> np.ndarray:
    """Per time, how many of the sorted shifts give a floor index above ``lo`` (all the others
    give ``lo``). The shift where ``(t - s - start) / dt`` reaches ``lo + 1`` in exact arithmetic
    gives a first guess (searchsorted); the rounded steps may put the boundary a place or two
    away, so the guess moves until the expression itself agrees on both sides of it."""
    n = len(sorted_shifts)
    step = hi > lo
    crossing = (times - start) - (lo + 1) * time_delta
    count = np.where(step, np.searchsorted(sorted_shifts, crossing, side="right"), 0)

    def above(index):  # the floor at sorted_shifts[index] is above lo (index within 0..n-1)
        return _floor_index(times, sorted_shifts[np.clip(index, 0, n - 1)], start, time_delta) > lo

    while True:  # invariant sought: above(count - 1) (or count == 0) and not above(count) (or count == n)
        grow = step & (count < n) & above(count)
        shrink = step & (count > 0) & ~above(count - 1)
        if not (grow.any() or shrink.any()):
            return count
        count = count + grow - shrink


def _gather(data: np.ndarray, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """``take_along_axis(data, rows, 0)`` on a memmap: only the touched rows are read."""
    if rows.size == 0:
        return np.empty(rows.shape, dtype=data.dtype)
    first, last = int(rows.min()), int(rows.max())
    window = np.asarray(data[first:last + 1])
    return window[rows - first, columns[np.newaxis, :]]


def _fill_nans_with_column_means(values: np.ndarray) -> None:
    """experanto's linear mode: NaNs become the column's mean over the queried batch."""
    nans = np.isnan(values)
    if nans.any():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            means = np.nanmean(values, axis=0)
        np.copyto(values, np.broadcast_to(means, values.shape), where=nans)


def screen_shape(screen: Screen, rescale: bool = False, rescale_size: tuple[int, int] | None = None,
                 **_ignored) -> tuple[int, ...]:
    """The shape of one sampled frame: (H, W[, 3]), rescaled or native."""
    native = screen.trials[0].image_size
    return (tuple(rescale_size) if rescale and rescale_size else tuple(native[:2])) + tuple(native[2:])


def sample_screen(screen: Screen, times: np.ndarray, rescale: bool = False,
                  rescale_size: tuple[int, int] | None = None, transform=None,
                  **_ignored) -> tuple[np.ndarray, np.ndarray]:
    """The frame shown at each time (last onset <= t + 0.1 ms), float32 (n, H, W[, 3]),
    rescaled with ``cv2.resize`` (INTER_AREA) as experanto does (on the transposed frame).
    ``transform`` normalises float32 frames of our own in place (``frame_normalizer``)."""
    times = np.asarray(times, dtype=np.float64)
    valid = valid_indexes(times, screen.valid_interval)
    valid_times = times[valid] + SCREEN_ONSET_SLACK
    if np.any(np.diff(valid_times) <= 0):
        raise UsageError("screen times must be strictly increasing (experanto asserts it)")
    frame_index = np.searchsorted(screen.timestamps, valid_times) - 1
    native = screen.trials[0].image_size
    size = tuple(rescale_size) if rescale and rescale_size else native[:2]
    factors = whole_factors(native[:2], size)
    if factors is not None:
        looked_up = _looked_up(screen, frame_index, size, factors, transform)
        if looked_up is not None:
            return looked_up, valid
    # times increase, so each frame shown fills one run of rows
    unique_frames, run_starts, runs = np.unique(frame_index, return_index=True, return_inverse=True)
    if factors is not None:
        return _replicated(_native_frames(screen, unique_frames), runs, factors, transform), valid
    out = np.empty((len(valid_times),) + size + native[2:], dtype=np.float32)
    run_ends = np.append(run_starts[1:], len(frame_index))
    for pick, frame in enumerate(_native_frames(screen, unique_frames)):
        frame = _rescale(frame, size)
        if transform is not None:
            transform(frame)
        out[run_starts[pick]:run_ends[pick]] = frame
    return out, valid


def whole_factors(native: tuple[int, int], size: tuple[int, int]) -> tuple[int, int] | None:
    """(rows, columns) each native pixel becomes, when ``size`` is a whole multiple of ``native``.

    ``cv2.resize`` with INTER_AREA enlarging by whole factors gives every source pixel an
    interpolation weight of 1 and its neighbour 0 (``(dx + 1) - (sx + 1) / scale`` is never
    positive), so the result is each pixel repeated: the same floats, without the arithmetic."""
    if size[0] % native[0] or size[1] % native[1]:
        return None
    return size[0] // native[0], size[1] // native[1]


LOOKUP_BLOCK = 256
"""Frames looked up at a time (bounds the enlarged uint8 indexes: 9 MB at 144 x 256)."""


def _looked_up(screen: Screen, frame_index: np.ndarray, size: tuple[int, int], factors: tuple[int, int],
               transform) -> np.ndarray | None:
    """The frames at these (sorted) screen indexes, enlarged by whole factors and normalised,
    each output value written once from a 256-entry table: uint8 pixels have 256 values, so
    ``(float32(v) - mean) / std`` worked out per value is the same float the frames' own
    arithmetic gives. None when that does not apply (pixels other than uint8, or a
    normalisation that differs from pixel to pixel); blank trials are one value each."""
    if transform is not None and not getattr(transform, "uniform", False):
        return None
    trial_of = screen.frame_trial[frame_index]
    firsts = np.flatnonzero(np.r_[True, np.diff(trial_of) != 0]) if len(trial_of) else np.empty(0, np.intp)
    lasts = np.r_[firsts[1:], len(trial_of)] if len(trial_of) else firsts
    trials = [screen.trials[int(trial_of[first])] for first in firsts]
    if any(t.data_file is not None and screen.frames(t).dtype != np.uint8 for t in trials):
        return None
    table = np.arange(256, dtype=np.float32)
    if transform is not None:
        transform(table)
    native = screen.trials[0].image_size
    out = np.empty((len(frame_index),) + tuple(size) + tuple(native[2:]), dtype=np.float32)
    for trial, first, last in zip(trials, firsts.tolist(), lasts.tolist()):
        if trial.data_file is None:
            level = np.full(1, trial.interleave_value, dtype=np.float32)
            out[first:last] = level if transform is None else transform(level)
            continue
        frames = screen.frames(trial)
        for lo in range(first, last, LOOKUP_BLOCK):
            hi = min(lo + LOOKUP_BLOCK, last)
            wanted = frame_index[lo:hi] - trial.first_frame
            if wanted[-1] - wanted[0] == hi - lo - 1:
                pixels = frames[wanted[0]:wanted[-1] + 1]
            else:
                pixels = frames[wanted]
            _look_up_into(np.asarray(pixels), table, factors, out[lo:hi])
    return out


def _look_up_into(pixels: np.ndarray, table: np.ndarray, factors: tuple[int, int], out: np.ndarray) -> None:
    """``out`` (k, H * fy, W * fx[, 3]) = ``table[pixels]`` each pixel repeated ``factors`` times,
    in one ``cv2.LUT`` pass over indexes enlarged as uint8. A grey frame enlarged by an even
    width factor takes a table of float32 pairs (as float64 bit patterns, which LUT copies
    untouched): half the indexes, and the pairs land side by side."""
    rows, columns = factors
    paired = pixels.ndim == 3 and columns % 2 == 0
    indexes = np.repeat(pixels, rows, axis=1) if rows > 1 else pixels
    step = columns // 2 if paired else columns
    if step > 1:
        indexes = np.repeat(indexes, step, axis=2)
    indexes = np.ascontiguousarray(indexes)
    entries = np.repeat(table, 2).view(np.float64) if paired else table
    n_rows = out.shape[0] * out.shape[1]
    target = out.reshape(n_rows, -1).view(entries.dtype)
    written = cv2.LUT(indexes.reshape(n_rows, -1), entries.reshape(1, 256), dst=target)
    if not np.shares_memory(written, out):
        np.copyto(target, written.reshape(target.shape))


def _native_frames(screen: Screen, unique_frames: np.ndarray) -> np.ndarray:
    """The frames at these screen indexes, float32 (k, H, W[, 3]) (``np.asarray(frame,
    float32)``, as experanto casts each before rescaling), each trial's file read once."""
    native = screen.trials[0].image_size
    out = np.empty((len(unique_frames),) + tuple(native), dtype=np.float32)
    trial_of = screen.frame_trial[unique_frames]
    # the frames are sorted, so each trial's are one run of ``out``, often consecutive frames
    # (a slice of the file, copied and cast in one pass, without fancy indexing)
    trials, starts = np.unique(trial_of, return_index=True)
    for trial_number, first, last in zip(trials, starts, np.append(starts[1:], len(trial_of))):
        trial = screen.trials[trial_number]
        wanted = unique_frames[first:last] - trial.first_frame
        frames = screen.frames(trial)
        if wanted[-1] - wanted[0] == last - first - 1:
            out[first:last] = frames[wanted[0]:wanted[-1] + 1]
        else:
            out[first:last] = frames[wanted]
    return out


def _replicated(frames: np.ndarray, runs: np.ndarray, factors: tuple[int, int], transform) -> np.ndarray:
    """Each time's frame (``frames[runs]``), every pixel repeated ``factors`` times: the frames
    stacked into one tall image that one nearest-neighbour ``cv2.resize`` enlarges. A
    per-pixel-uniform normalisation runs on the native frames, four times fewer values."""
    uniform = transform is not None and getattr(transform, "uniform", False)
    if uniform:
        transform(frames)
    rows = frames[runs] if len(frames) < len(runs) else frames
    n, height, width = rows.shape[:3]
    if factors == (1, 1):
        out = rows
    elif n == 0:
        out = np.empty((0, height * factors[0], width * factors[1]) + rows.shape[3:], dtype=np.float32)
    else:
        tall = rows.reshape((n * height, width) + rows.shape[3:])
        out = cv2.resize(tall, (width * factors[1], n * height * factors[0]), interpolation=cv2.INTER_NEAREST)
        out = out.reshape((n, height * factors[0], width * factors[1]) + rows.shape[3:])
    if transform is not None and not uniform:
        transform(out)
    return out


def _rescale(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """experanto's ``rescale_frame(frame.T).T``: cv2 sees the transposed image and a
    (height, width) dsize. Colour frames transpose only their two spatial axes."""
    frame = np.asarray(frame, dtype=np.float32)
    if frame.ndim == 3:
        resized = cv2.resize(np.ascontiguousarray(frame.transpose(1, 0, 2)), tuple(size), interpolation=cv2.INTER_AREA)
        return resized.astype(np.float32, copy=False).transpose(1, 0, 2)
    return cv2.resize(np.ascontiguousarray(frame.T), tuple(size), interpolation=cv2.INTER_AREA).astype(
        np.float32, copy=False).T


def sample_time_intervals(intervals: TimeIntervals, times: np.ndarray, **_ignored) -> tuple[np.ndarray, np.ndarray]:
    """Bool (n_valid, n_labels): inside any [start, end) row of each label; reversed rows skipped."""
    times = np.asarray(times, dtype=np.float64)
    valid = valid_indexes(times, intervals.valid_interval)
    valid_times = times[valid]
    out = np.zeros((len(valid_times), len(intervals.labels)), dtype=bool)
    for column, rows in enumerate(intervals.labels.values()):
        rows = rows[rows[:, 0] <= rows[:, 1]]
        if len(rows) == 0:
            continue
        inside = (valid_times[:, None] >= rows[None, :, 0]) & (valid_times[:, None] < rows[None, :, 1])
        out[:, column] = inside.any(axis=1)
    return out, valid


def sample_spikes(spikes: Spikes, times: np.ndarray, interpolation_window: float = 0.3,
                  interpolation_align: str = "center", smoothing_sigma: float = 0.0,
                  **_ignored) -> tuple[np.ndarray, np.ndarray]:
    """Spike counts per neuron in a window at each time (float64 (n_valid, N))."""
    times = np.asarray(times, dtype=np.float64)
    valid = valid_indexes(times, spikes.valid_interval)
    valid_times = times[valid]
    if interpolation_align == "center":
        starts, ends = valid_times - interpolation_window / 2, valid_times + interpolation_window / 2
    elif interpolation_align == "left":
        starts, ends = valid_times, valid_times + interpolation_window
    elif interpolation_align == "right":
        starts, ends = valid_times - interpolation_window, valid_times
    else:
        raise UsageError(f"interpolation_align {interpolation_align!r}: use 'center', 'left' or 'right'")
    counts = np.zeros((len(valid_times), spikes.n_signals), dtype=np.float64)
    all_spikes = np.asarray(spikes.spikes)
    for neuron in range(spikes.n_signals):
        block = all_spikes[spikes.indices[neuron]:spikes.indices[neuron + 1]]
        counts[:, neuron] = np.searchsorted(block, ends) - np.searchsorted(block, starts)
    if smoothing_sigma > 0 and len(valid_times) > 1:
        from scipy.ndimage import gaussian_filter1d

        counts = gaussian_filter1d(counts, sigma=smoothing_sigma, axis=0)
    return counts, valid


SAMPLERS = {Sequence: sample_sequence, Screen: sample_screen, TimeIntervals: sample_time_intervals,
            Spikes: sample_spikes}


def sample(session, times, modalities=None, *, config: dict | None = None, return_valid: bool = False,
           normalize: bool = True) -> dict:
    """Each modality's values at ``times`` (seconds on the session's clock), by experanto's rules.

    ``modalities`` defaults to the config's modalities the session has (the default config:
    screen, responses, eye_tracker, treadmill). ``config`` takes experanto's modality-config
    keys (``interpolation``, ``transforms.normalization``) and is merged over the default.
    With ``normalize``, values are normalised as ChunkDataset does. Returns name -> values,
    or name -> (values, valid indexes into ``times``) with ``return_valid``.
    """
    times = np.asarray(times, dtype=np.float64)
    if times.ndim != 1:
        raise UsageError(f"times must be a 1-d array of seconds, not shape {times.shape}")
    full_config = merged_config(config)
    if modalities is None:
        names = [n for n in full_config if n in session.modalities]
    else:
        names = [modalities] if isinstance(modalities, str) else list(modalities)
        missing = [n for n in names if n not in session.modalities]
        if missing:
            raise UsageError(f"session {session.key} has no modality {missing[0]!r} "
                             f"(it has {', '.join(session.modalities)})")
    return sample_merged(session, times, names, full_config, return_valid=return_valid, normalize=normalize)


def sample_merged(session, times: np.ndarray, names, full_config: dict, *, return_valid: bool = False,
                  normalize: bool = True) -> dict:
    """``sample`` with the modalities checked and the config already merged over the default
    (a training dataset's per-chunk calls merge it once, not per chunk)."""

    def one(name: str):
        modality = session.modalities[name]
        settings = full_config.get(name, {})
        interpolation = settings.get("interpolation", {})
        mode = (settings.get("transforms") or {}).get("normalization")
        if normalize and mode and isinstance(modality, Screen):  # each frame shown normalised once
            transform = frame_normalizer(session, modality, mode, screen_shape(modality, **interpolation))
            return sample_screen(modality, times, **interpolation, transform=transform)
        values, valid = SAMPLERS[type(modality)](modality, times, **interpolation)
        if normalize and mode:
            values = normalize_values(session, modality, values, mode, in_place=True)  # the samplers' own arrays
        return values, valid

    if len(names) > 1 and len(times) >= PARALLEL_TIMES:
        # the screen's frames and the sequences' rows are independent work that mostly runs
        # outside the GIL (cv2, numpy copies): two threads share it
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=2) as pool:
            futures = [pool.submit(one, name) for name in names]
            answers = [f.result() for f in futures]
    else:
        answers = [one(name) for name in names]
    result = {}
    for name, (values, valid) in zip(names, answers):
        result[name] = (values, valid) if return_valid else values
    return result
