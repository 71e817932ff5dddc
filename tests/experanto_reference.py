"""A written-out reference of experanto's interpolation and normalisation rules, for tests.

experanto cannot be installed (its PyPI release is an empty placeholder), so this restates
its rules (EXPERANTO_FORMAT.md §2-§7; experanto/interpolators.py, intervals.py, datasets.py
at 09fd691) one query time at a time, reading the session folder with plain numpy, yaml and
cv2, as experanto does. It never imports scandb.session: scandb is checked against it.
Where experanto crashes (a phase-shifted linear query past the data, colour frames with
``rescale``), this follows the choice scandb documents, noted at the place.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from pathlib import Path

import cv2
import numpy as np
import yaml


def _meta(folder: Path) -> dict:
    with open(folder / "meta.yml") as f:
        return yaml.safe_load(f)


def data_key(root: Path) -> str:
    """ChunkDataset.get_data_key_from_root_folder."""
    meta_file = root / "meta.json"
    if meta_file.is_file():
        meta = json.loads(meta_file.read_text())
        if "data_key" in meta:
            return meta["data_key"]
        if "scan_key" in meta:
            key = meta["scan_key"]
            return f"{key['animal_id']}-{key['session']}-{key['scan_idx']}"
        if "dynamic" in root.name:
            return root.name.split("dynamic")[1].split("-Video")[0]
    return root.name


def in_interval(t: float, start: float, end: float) -> bool:
    return start <= t <= end


class Sequence:
    def __init__(self, folder: Path, interpolation_mode: str = "nearest_neighbor", keep_nans: bool = False,
                 **_ignored):
        meta = _meta(folder)
        self.mode, self.keep_nans = interpolation_mode, keep_nans
        self.start, self.end = meta["start_time"], meta["end_time"]
        self.time_delta = 1.0 / meta["sampling_rate"]
        if meta.get("is_mem_mapped", False):
            self.data = np.memmap(folder / "data.mem", dtype=meta["dtype"], mode="r",
                                  shape=(meta["n_timestamps"], meta["n_signals"]))
        else:
            self.data = np.load(folder / "data.npy")
        self.shifts = None
        self.valid_start, self.valid_end = self.start, self.end
        if meta.get("phase_shift_per_signal", False):
            self.shifts = np.load(folder / "meta/phase_shifts.npy")
            self.valid_start = self.start + np.max(self.shifts)
            self.valid_end = self.end + np.min(self.shifts)

    def _one(self, t: float):
        """One row at time t, or None when linear needs a sample past the data."""
        n_signals = self.data.shape[1]
        row = []
        for j in range(n_signals):
            tj = t - self.shifts[j] - self.start if self.shifts is not None else t - self.start
            q = t - self.shifts[j] if self.shifts is not None else t
            i = math.floor(tj / self.time_delta)
            if self.mode == "nearest_neighbor":
                row.append(self.data[i, j])
                continue
            if i + 1 >= self.data.shape[0] or i < 0:
                return None
            t_lower = self.start + i * self.time_delta
            t_upper = self.start + (i + 1) * self.time_delta
            denom = t_upper - t_lower
            row.append((t_upper - q) / denom * float(self.data[i, j]) + (q - t_lower) / denom * float(self.data[i + 1, j]))
        return row

    def interpolate(self, times):
        rows, valid = [], []
        for k, t in enumerate(times):
            if not in_interval(t, self.valid_start, self.valid_end):
                continue
            row = self._one(t)
            if row is None:
                continue
            rows.append(row)
            valid.append(k)
        dtype = self.data.dtype if self.mode == "nearest_neighbor" else np.float64
        values = np.array(rows, dtype=dtype).reshape(len(rows), self.data.shape[1])
        if self.mode == "linear" and not self.keep_nans:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                means = np.nanmean(values, axis=0)  # experanto's own call: its summation order matters
            for k in range(values.shape[0]):
                for j in range(values.shape[1]):
                    if np.isnan(values[k, j]):
                        values[k, j] = means[j]
        return values, np.array(valid, dtype=np.int64)


class Screen:
    def __init__(self, folder: Path, rescale: bool = False, rescale_size=None, **_ignored):
        self.folder = folder
        meta = _meta(folder)
        self.timestamps = np.load(folder / "timestamps.npy")
        self.rescale = rescale
        combined = folder / "combined_meta.json"
        if combined.exists():
            trials = list(json.loads(combined.read_text()).items())
        else:
            files = sorted((f for f in (folder / "meta").iterdir() if re.fullmatch(r"\d{5}\.yml", f.name)),
                           key=lambda f: int(f.stem))
            trials = [(f.stem, yaml.safe_load(f.read_text())) for f in files]
        self.trials = []
        for key, trial in trials:
            stem = trial["stimulus_name"] if meta.get("use_stimuli_names", False) else key
            frames = trial["num_frames"] if trial["modality"] == "video" else 1
            self.trials.append((folder / "data" / f"{stem}.npy", trial, frames))
        self.frame_trial = [i for i, (_, _, n) in enumerate(self.trials) for _ in range(n)]
        self.native = tuple(self.trials[0][1]["image_size"])
        self.size = tuple(rescale_size) if rescale_size else self.native

    def _frame(self, frame_index: int) -> np.ndarray:
        path, trial, _ = self.trials[self.frame_trial[frame_index]]
        if trial["modality"] in ("blank", "invalid"):
            data = np.full((1,) + tuple(trial["image_size"]), trial["interleave_value"], dtype=np.float32)
        else:
            data = np.load(path)
            if data.ndim == 2 or (data.shape[-1] == 3 and data.ndim < 4):
                data = data[None]
        frame = data[frame_index - trial["first_frame_idx"]]
        if not self.rescale:
            return frame
        frame = np.asarray(frame, dtype=np.float32)
        if frame.ndim == 3:  # experanto cannot rescale colour frames; scandb transposes the spatial axes only
            resized = cv2.resize(np.ascontiguousarray(np.transpose(frame, (1, 0, 2))), tuple(self.size[:2]),
                                 interpolation=cv2.INTER_AREA)
            return resized.astype(np.float32).transpose(1, 0, 2)
        return cv2.resize(frame.T, tuple(self.size), interpolation=cv2.INTER_AREA).astype(np.float32).T

    def interpolate(self, times):
        shape = tuple(self.size[:2]) + self.native[2:]
        rows, valid = [], []
        for k, t in enumerate(times):
            if not in_interval(t, self.timestamps[0], self.timestamps[-1]):
                continue
            index = int(np.searchsorted(self.timestamps, t + 1e-4)) - 1
            out = np.zeros(shape, dtype=np.float32)
            out[...] = self._frame(index)
            rows.append(out)
            valid.append(k)
        return np.array(rows, dtype=np.float32).reshape((len(rows),) + shape), np.array(valid, dtype=np.int64)


class TimeIntervals:
    def __init__(self, folder: Path, **_ignored):
        meta = _meta(folder)
        self.start, self.end = meta["start_time"], meta["end_time"]
        self.labels = [np.load(folder / name) for name in meta["labels"].values()]

    def interpolate(self, times):
        rows, valid = [], []
        for k, t in enumerate(times):
            if not in_interval(t, self.start, self.end):
                continue
            rows.append([any(s <= t < e for s, e in rows_ if s <= e) for rows_ in self.labels])
            valid.append(k)
        return np.array(rows, dtype=bool).reshape(len(rows), len(self.labels)), np.array(valid, dtype=np.int64)


class Spikes:
    def __init__(self, folder: Path, interpolation_window: float = 0.3, interpolation_align: str = "center",
                 **_ignored):
        meta = _meta(folder)
        self.start, self.end = meta["start_time"], meta["end_time"]
        self.indices = meta["spike_indices"]
        self.spikes = np.load(folder / "spikes.npy")
        self.window, self.align = interpolation_window, interpolation_align

    def interpolate(self, times):
        rows, valid = [], []
        for k, t in enumerate(times):
            if not in_interval(t, self.start, self.end):
                continue
            lo, hi = {"center": (t - self.window / 2, t + self.window / 2), "left": (t, t + self.window),
                      "right": (t - self.window, t)}[self.align]
            row = []
            for n in range(len(self.indices) - 1):
                block = self.spikes[self.indices[n]:self.indices[n + 1]]
                row.append(float(sum(1 for s in block if lo <= s < hi)))
            rows.append(row)
            valid.append(k)
        return np.array(rows, dtype=np.float64).reshape(len(rows), len(self.indices) - 1), np.array(valid, dtype=np.int64)


INTERPOLATORS = {"sequence": Sequence, "screen": Screen, "time_interval": TimeIntervals, "spikes": Spikes}


def interpolate(root: Path, device: str, times, **interpolation):
    """(values, valid) of one device at the times, as experanto's interpolator returns them."""
    folder = Path(root) / device
    return INTERPOLATORS[_meta(folder)["modality"]](folder, **interpolation).interpolate(list(times))


def normalize(root: Path, device: str, values: np.ndarray, mode) -> np.ndarray:
    """ChunkDataset.initialize_statistics, then torchvision's Normalize: element by element."""
    folder = Path(root) / device
    means = np.load(folder / "meta/means.npy")
    stds = np.load(folder / "meta/stds.npy")
    if device == "responses":
        threshold = 0.01 * np.nanmean(stds)
        for j in range(stds.shape[1]):
            if stds[0, j] < threshold:
                stds[0, j] = threshold
    if isinstance(mode, dict):
        means = np.array(mode.get("means", means))
        stds = np.array(mode.get("stds", stds))
    elif mode == "normalize_variance_only":
        means = np.zeros_like(means)
    elif mode == "screen_default":
        means, stds = np.array(80), np.array(60)
    means, stds = means.reshape(1, -1), stds.reshape(1, -1)
    dtype = values.dtype.type
    out = np.empty_like(values)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for index in np.ndindex(values.shape):
            column = index[-1] if means.shape[1] > 1 else 0
            out[index] = (values[index] - dtype(means[0, column])) / dtype(stds[0, column])
    return out


# -- ChunkDataset (EXPERANTO_FORMAT.md §3, §7): chunk starts and items --------------------------

CHUNK_CONFIG = {
    "screen": {"sampling_rate": 30, "chunk_size": 60, "offset": 0,
               "interpolation": {"rescale": True, "rescale_size": [144, 256]}, "normalization": "normalize"},
    "responses": {"sampling_rate": 8, "chunk_size": 16, "offset": 0.0,
                  "interpolation": {"interpolation_mode": "nearest_neighbor"},
                  "normalization": "normalize_variance_only", "nan_filter": 0.05},
    "eye_tracker": {"sampling_rate": 30, "chunk_size": 60, "offset": 0,
                    "interpolation": {"interpolation_mode": "nearest_neighbor"}, "normalization": "normalize",
                    "nan_filter": 0.05},
    "treadmill": {"sampling_rate": 30, "chunk_size": 60, "offset": 0,
                  "interpolation": {"interpolation_mode": "nearest_neighbor"}, "normalization": "normalize",
                  "nan_filter": 0.05},
}
"""configs/default.yaml's dataset.modality_config, flattened: ``nan_filter`` is the vicinity of
the modality's nan filter (absent: no filter)."""


def chunk_config(**changes) -> dict:
    """CHUNK_CONFIG with per-modality keys replaced (``interpolation`` replaced whole)."""
    config = {name: dict(settings) for name, settings in CHUNK_CONFIG.items()}
    for name, keys in changes.items():
        config.setdefault(name, {}).update(keys)
    return config


def _valid_range(folder: Path) -> tuple[float, float]:
    meta = _meta(folder)
    if meta["modality"] == "screen":
        timestamps = np.load(folder / "timestamps.npy")
        return float(timestamps[0]), float(timestamps[-1])
    sequence = Sequence(folder)
    return sequence.valid_start, sequence.valid_end


def _trial_metas(folder: Path) -> list[dict]:
    combined = folder / "combined_meta.json"
    if combined.exists():
        return list(json.loads(combined.read_text()).values())
    files = sorted((f for f in (folder / "meta").iterdir() if re.fullmatch(r"\d{5}\.yml", f.name)),
                   key=lambda f: int(f.stem))
    return [yaml.safe_load(f.read_text()) for f in files]


def _nan_points(folder: Path) -> tuple[float, float, list[float]]:
    """A sequence's start, end and the time of every row holding a NaN."""
    meta = _meta(folder)
    sequence = Sequence(folder)
    points = []
    for row in range(sequence.data.shape[0]):
        if any(math.isnan(float(v)) for v in sequence.data[row]):
            points.append(meta["start_time"] + row * (1.0 / meta["sampling_rate"]))
    return meta["start_time"], meta["end_time"], points


def valid_chunk_starts(root: Path, config: dict, valid_condition, include_blanks: bool = True,
                       safe_interval_threshold: float = 0.5) -> np.ndarray:
    """ChunkDataset's chunk starts, one screen sample at a time.

    A sample time t is valid when some trial matching the condition has onset <= t < the next
    trial's onset (the last never ends) and, for every nan filter, t lies in its device's
    [start, end) and not within [p - vicinity, p + vicinity) of any NaN row's time p (both
    clipped to the device's range): what intersecting experanto's closed intervals and then
    testing ``start <= t < end`` gives. A start is kept when its next chunk_size samples are
    valid. (ChunkDataset ignores filters that leave no interval at all; no fixture does.)
    """
    root = Path(root)
    ranges = [_valid_range(root / name) for name in config]
    start = max(r[0] for r in ranges) + safe_interval_threshold
    end = min(r[1] for r in ranges) - safe_interval_threshold
    screen = config["screen"]
    grid = np.arange(start, end, 1.0 / screen["sampling_rate"])
    timestamps = np.load(root / "screen" / "timestamps.npy")
    trials = _trial_metas(root / "screen")
    onsets = [float(timestamps[t["first_frame_idx"]]) for t in trials]
    ends = onsets[1:] + [math.inf]
    wanted = [valid_condition] if isinstance(valid_condition, dict) else list(valid_condition)
    if include_blanks:
        wanted = wanted + [{"tier": "blank"}]

    def value(trial, key):
        return trial.get(key) if trial.get(key) is not None else "blank"

    matching = [any(all(value(trial, k) == v for k, v in condition.items()) for condition in wanted)
                for trial in trials]
    filters = [(_nan_points(root / name), settings["nan_filter"]) for name, settings in config.items()
               if settings.get("nan_filter") is not None]

    def valid(t: float) -> bool:
        if not any(ok and on <= t < off for ok, on, off in zip(matching, onsets, ends)):
            return False
        for (first, last, points), vicinity in filters:
            if not first <= t < last:
                return False
            if any(max(first, p - vicinity) <= t < min(last, p + vicinity) for p in points):
                return False
        return True

    sample_ok = [valid(float(t)) for t in grid]
    size = screen["chunk_size"]
    kept = [grid[i] for i in range(len(grid) - size + 1) if all(sample_ok[i:i + size])]
    return np.array(kept, dtype=np.float64)


def chunk(root: Path, start: float, config: dict) -> dict:
    """ChunkDataset.__getitem__ at a start: per device its times (s + offset + k / rate, rounded
    to 1e-5 s), values interpolated and normalised, the screen as (C, T, H, W), and the times
    minus responses' start_time as float32."""
    root = Path(root)
    out, stamps = {}, {}
    responses_start = _meta(root / "responses")["start_time"]
    for name, settings in config.items():
        times = np.array([np.round(start + settings["offset"] + k / settings["sampling_rate"], 5)
                          for k in range(settings["chunk_size"])])
        values, _ = interpolate(root, name, times, **settings["interpolation"])
        if settings.get("normalization"):
            values = normalize(root, name, values, settings["normalization"])
        if name == "screen":
            values = values[None] if values.ndim == 3 else np.transpose(values, (3, 0, 1, 2))
        out[name] = values
        stamps[name] = (times - responses_start).astype(np.float32)
    out["timestamps"] = stamps
    return out
