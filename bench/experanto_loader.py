"""What experanto does with an extracted session folder, per query and per chunk: the baseline.

experanto cannot be installed (its PyPI release is an empty placeholder), so this restates
its interpolators' code paths (``experanto/interpolators.py`` and ``datasets.py`` at
09fd691, EXPERANTO_FORMAT.md §2-§7) over the extracted folder, vectorised within one call
as experanto is:

- sequences: ``np.memmap`` of ``data.mem`` (``np.load`` of ``data.npy``), the previous
  sample at ``floor((t - shift - start) / dt)``, neurons at their phase shifts
  (``take_along_axis``);
- screen: ``searchsorted(timestamps, t + 1e-4) - 1``, the trial's ``data/NNNNN.npy`` loaded
  with ``np.load`` on each call that touches it (experanto's lazy trial data), each frame
  rescaled with ``cv2.resize`` (INTER_AREA, on the transposed frame);
- ChunkDataset's normalisation (responses divided by their thresholded std, the others
  standardised with ``meta/{means,stds}.npy``), in the values' dtype.

``per_query`` calls the interpolators once per query time (what a loader that asks for one
time at a time costs); ``epoch`` gives ChunkDataset's items (per chunk start, every default
modality at the chunk's times), for the epoch comparison. ``tests/experanto_reference.py``
states the same rules one neuron at a time for the tests; this one is fast enough for
full-size sessions.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import yaml

DEFAULT_CONFIG = {
    "screen": {"sampling_rate": 30, "chunk_size": 60, "offset": 0, "normalization": "normalize",
               "rescale_size": (144, 256)},
    "responses": {"sampling_rate": 8, "chunk_size": 16, "offset": 0.0, "normalization": "normalize_variance_only"},
    "eye_tracker": {"sampling_rate": 30, "chunk_size": 60, "offset": 0, "normalization": "normalize"},
    "treadmill": {"sampling_rate": 30, "chunk_size": 60, "offset": 0, "normalization": "normalize"},
}
"""experanto's ``configs/default.yaml`` (the keys used here)."""
SAFE_INTERVAL = 0.5
NAN_VICINITY = 0.05


def _meta(folder: Path) -> dict:
    with open(folder / "meta.yml") as f:
        return yaml.safe_load(f)


class SequenceInterpolator:
    def __init__(self, folder: Path):
        meta = _meta(folder)
        self.start_time, self.end_time = meta["start_time"], meta["end_time"]
        self.time_delta = 1.0 / meta["sampling_rate"]
        if meta.get("is_mem_mapped", False):
            self.data = np.memmap(folder / "data.mem", dtype=meta["dtype"], mode="r",
                                  shape=(meta["n_timestamps"], meta["n_signals"]))
        else:
            self.data = np.load(folder / "data.npy")
        self.phase_shifts = None
        self.valid_interval = (self.start_time, self.end_time)
        if meta.get("phase_shift_per_signal", False):
            self.phase_shifts = np.load(folder / "meta/phase_shifts.npy")
            self.valid_interval = (self.start_time + np.max(self.phase_shifts),
                                   self.end_time + np.min(self.phase_shifts))

    def interpolate(self, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        valid = np.where((times >= self.valid_interval[0]) & (times <= self.valid_interval[1]))[0]
        valid_times = times[valid]
        if self.phase_shifts is None:
            idx = np.floor((valid_times - self.start_time) / self.time_delta).astype(int)
            return self.data[idx], valid
        idx = np.floor((valid_times[:, np.newaxis] - self.phase_shifts[np.newaxis, :] - self.start_time)
                       / self.time_delta).astype(int)
        return np.take_along_axis(self.data, idx, axis=0), valid


class ScreenInterpolator:
    def __init__(self, folder: Path, rescale_size=(144, 256)):
        self.folder = folder
        meta = _meta(folder)
        self.timestamps = np.load(folder / "timestamps.npy")
        combined = folder / "combined_meta.json"
        if combined.exists():
            trials = list(json.loads(combined.read_text()).items())
        else:
            files = sorted((f for f in (folder / "meta").iterdir() if re.fullmatch(r"\d{5}\.yml", f.name)),
                           key=lambda f: int(f.stem))
            trials = [(f.stem, yaml.safe_load(f.read_text())) for f in files]
        use_names = meta.get("use_stimuli_names", False)
        self.trials = []
        for key, trial in trials:
            stem = trial["stimulus_name"] if use_names else key
            self.trials.append((folder / "data" / f"{stem}.npy", trial))
        counts = [t["num_frames"] if t["modality"] == "video" else 1 for _, t in self.trials]
        self.frame_trial = np.repeat(np.arange(len(self.trials)), counts)
        self.native = tuple(self.trials[0][1]["image_size"])
        self.size = tuple(rescale_size)
        self.valid_interval = (self.timestamps[0], self.timestamps[-1])

    def _trial_data(self, number: int) -> np.ndarray:
        path, trial = self.trials[number]
        if trial["modality"] in ("blank", "invalid"):
            return np.full((1,) + tuple(trial["image_size"]), trial["interleave_value"], dtype=np.float32)
        data = np.load(path)
        return data[None] if data.ndim == 2 else data

    def _rescale(self, frame: np.ndarray) -> np.ndarray:
        frame = np.asarray(frame, dtype=np.float32)
        return cv2.resize(frame.T, self.size, interpolation=cv2.INTER_AREA).astype(np.float32).T

    def interpolate(self, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        valid = np.where((times >= self.valid_interval[0]) & (times <= self.valid_interval[1]))[0]
        valid_times = times[valid] + 1e-4
        idx = np.searchsorted(self.timestamps, valid_times) - 1
        out = np.zeros((len(valid_times),) + self.size, dtype=np.float32)
        trial_of = self.frame_trial[idx]
        for number in np.unique(trial_of):
            data = self._trial_data(int(number))
            first = self.trials[number][1]["first_frame_idx"]
            for k in np.flatnonzero(trial_of == number):
                out[k] = self._rescale(data[idx[k] - first])
        return out, valid


def _statistics(folder: Path, name: str, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """ChunkDataset.initialize_statistics: (mean, std), each (1, k)."""
    means = np.load(folder / name / "meta/means.npy")
    stds = np.load(folder / name / "meta/stds.npy").copy()
    if name == "responses":
        threshold = 0.01 * np.nanmean(stds)
        stds[0, stds[0, :] < threshold] = threshold
    if mode == "normalize_variance_only":
        means = np.zeros_like(means)
    return means.reshape(1, -1), stds.reshape(1, -1)


class Session:
    """The four default modalities of an extracted session folder, opened as experanto opens them."""

    def __init__(self, root: Path, config: dict = DEFAULT_CONFIG):
        self.root, self.config = Path(root), config
        self.devices = {}
        self.stats = {}
        for name, settings in config.items():
            folder = self.root / name
            if name == "screen":
                self.devices[name] = ScreenInterpolator(folder, settings["rescale_size"])
            else:
                self.devices[name] = SequenceInterpolator(folder)
            mean, std = _statistics(self.root, name, settings["normalization"])
            self.stats[name] = (mean, std)

    def interpolate(self, name: str, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One device at ``times``, normalised (``(x - mean) / std`` in the values' dtype)."""
        values, valid = self.devices[name].interpolate(np.asarray(times, dtype=np.float64))
        mean, std = self.stats[name]
        dtype = values.dtype if values.dtype.kind == "f" else np.dtype(np.float32)
        return (values.astype(dtype, copy=False) - mean.astype(dtype)) / std.astype(dtype), valid


def per_query(root: Path, times: np.ndarray, names=tuple(DEFAULT_CONFIG)) -> dict[str, np.ndarray]:
    """Every default modality at each time, one interpolator call per time and modality."""
    session = Session(root)
    rows: dict[str, list] = {name: [] for name in names}
    for t in np.asarray(times, dtype=np.float64):
        one = np.array([t])
        for name in names:
            values, valid = session.interpolate(name, one)
            if len(valid):
                rows[name].append(values[0])
    return {name: np.stack(r) if r else np.empty((0,)) for name, r in rows.items()}


# -- ChunkDataset: the train chunks and their items ------------------------------------------


def _valid_trial_intervals(screen: ScreenInterpolator, tiers=("train", "blank")) -> list[tuple[float, float]]:
    """[onset, next onset) of every trial whose tier (missing: ``blank``) is allowed."""
    out = []
    for number, (_, trial) in enumerate(screen.trials):
        onset = screen.timestamps[trial["first_frame_idx"]]
        end = (screen.timestamps[screen.trials[number + 1][1]["first_frame_idx"]]
               if number + 1 < len(screen.trials) else screen.timestamps[-1])
        if str(trial.get("tier", "blank")) in tiers:
            out.append((onset, end))
    return out


def _nan_rows_times(seq: SequenceInterpolator) -> np.ndarray:
    bad = []
    for lo in range(0, seq.data.shape[0], 65536):
        block = np.asarray(seq.data[lo:lo + 65536])
        bad.append(lo + np.flatnonzero(np.isnan(block).any(axis=1)))
    rows = np.concatenate(bad) if bad else np.empty(0, int)
    return seq.start_time + rows * seq.time_delta


def train_chunk_starts(session: Session) -> np.ndarray:
    """ChunkDataset's chunk starts (§7): the screen grid ``arange(max_start + 0.5, min_end - 0.5,
    1/30)`` kept where all of the chunk's screen samples lie in train or blank trials and
    farther than 0.05 s from any NaN row of a sequence."""
    screen = session.devices["screen"]
    starts = [d.valid_interval[0] for d in session.devices.values()]
    ends = [d.valid_interval[1] for d in session.devices.values()]
    rate = session.config["screen"]["sampling_rate"]
    chunk = session.config["screen"]["chunk_size"]
    grid = np.arange(max(starts) + SAFE_INTERVAL, min(ends) - SAFE_INTERVAL, 1.0 / rate)
    span = np.arange(chunk) / rate
    samples = grid[:, None] + span[None, :]
    ok = np.zeros(samples.shape, dtype=bool)
    for onset, end in _valid_trial_intervals(screen):
        ok |= (samples >= onset) & (samples < end)
    keep = ok.all(axis=1)
    for name, device in session.devices.items():
        if isinstance(device, SequenceInterpolator):
            for t in _nan_rows_times(device):
                keep &= ~((samples > t - NAN_VICINITY) & (samples < t + NAN_VICINITY)).any(axis=1)
    return grid[keep]


def chunk_item(session: Session, start: float) -> dict[str, np.ndarray]:
    """ChunkDataset.__getitem__ for one chunk start: each device at ``start + offset +
    arange(chunk_size) / rate`` (rounded to 1e-5 s), normalised; the screen as (1, T, H, W)."""
    item = {}
    for name, settings in session.config.items():
        times = np.round(start + settings["offset"] + np.arange(settings["chunk_size"]) / settings["sampling_rate"],
                         5)
        values, _ = session.interpolate(name, times)
        item[name] = values[np.newaxis] if name == "screen" else values
    return item


def epoch(root: Path, starts: np.ndarray | None = None, limit: int | None = None):
    """ChunkDataset's items over the train chunks, in order (``limit``: the first ones only)."""
    session = Session(root)
    starts = train_chunk_starts(session) if starts is None else starts
    for start in starts[:limit]:
        yield chunk_item(session, float(start))
