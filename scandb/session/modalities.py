"""One experanto modality folder, read and checked: what ``meta.yml: modality`` says it is.

Each reader checks what experanto would trip over later (or silently get wrong): shapes that
disagree with ``meta.yml``, an ``end_time`` past the data, frame counts that do not add up,
timestamps that go backwards, unsorted spike blocks. Arrays stay memory-mapped.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from .files import SessionFiles
from .parse import map_npy, map_raw, read_json, read_npy, read_yaml, require

KINDS = ("sequence", "screen", "time_interval", "spikes")
TRIAL_YML = re.compile(r"^\d{5}\.yml$")
TRIAL_KEYS = {"modality", "first_frame_idx", "num_frames", "image_size", "interleave_value",
              "stimulus_name", "stim_type", "tier", "valid_trial"}
"""Per-trial keys with their own field; every other key goes to ``StimulusTrial.extra``."""
STATISTICS = ("means", "stds")


@dataclass
class Modality:
    name: str
    kind: str
    meta: dict
    start_time: float
    end_time: float

    @property
    def valid_interval(self) -> tuple[float, float]:
        """The closed interval experanto answers queries in (``TimeInterval.intersect``)."""
        return (self.start_time, self.end_time)


@dataclass
class Sequence(Modality):
    sampling_rate: float
    data: np.ndarray
    """(n_samples, n_signals), memory-mapped; row i is at start_time + i / sampling_rate."""
    phase_shifts: np.ndarray | None
    statistics: dict[str, np.ndarray] = field(default_factory=dict)
    nan_rows: np.ndarray | None = None
    """The rows holding a NaN, when known (a stored session's ``nan_rows``); None: scan ``data``."""

    _shift_order: tuple | None = field(default=None, repr=False)

    @property
    def n_samples(self) -> int:
        return self.data.shape[0]

    @property
    def n_signals(self) -> int:
        return self.data.shape[1]

    @property
    def shift_order(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(order, sorted shifts, rank): the neurons sorted by phase shift (stable), the shifts
        in that order, and each neuron's place in it; sorted once, read by every query."""
        if self._shift_order is None:
            order = np.argsort(self.phase_shifts, kind="stable")
            rank = np.empty(len(order), dtype=np.intp)
            rank[order] = np.arange(len(order))
            self._shift_order = (order, self.phase_shifts[order], rank)
        return self._shift_order

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def valid_interval(self) -> tuple[float, float]:
        if self.phase_shifts is None or len(self.phase_shifts) == 0:
            return (self.start_time, self.end_time)
        return (self.start_time + np.max(self.phase_shifts), self.end_time + np.min(self.phase_shifts))


@dataclass
class StimulusTrial:
    """One ``screen/meta/NNNNN.yml``: a trial spans [onset, the next trial's onset)."""

    index: int
    key: str
    modality: str
    """``image``, ``video``, ``blank`` or ``invalid``."""
    tier: str
    """The yml's ``tier``; ``"blank"`` when missing, as ChunkDataset reads it."""
    stimulus_name: str | None
    stimulus_type: str | None
    first_frame: int
    n_frames: int
    onset: float
    end: float
    valid: bool | None
    image_size: tuple[int, ...]
    interleave_value: float | None
    data_file: str | None
    """The ``screen/`` file with the pixels; None for blank and invalid trials."""
    extra: dict


@dataclass
class Screen(Modality):
    timestamps: np.ndarray
    trials: list[StimulusTrial]
    frame_trial: np.ndarray
    """The trial of every entry of ``timestamps`` (from the trials' frame counts)."""
    statistics: dict[str, np.ndarray]
    _files: SessionFiles = field(repr=False)
    _frames: dict = field(default_factory=dict, repr=False)

    @property
    def n_samples(self) -> int:
        return len(self.timestamps)

    def frames(self, trial: StimulusTrial) -> np.ndarray:
        """A trial's pixels as experanto indexes them, (frames, H, W[, 3]); blanks are filled."""
        if trial.data_file is None:
            return np.full((1,) + trial.image_size, trial.interleave_value, dtype=np.float32)
        if trial.data_file not in self._frames:
            data = map_npy(self._files, f"{self.name}/{trial.data_file}")
            if data.ndim == 2 or (data.ndim < 4 and data.shape[-1] == 3):
                data = data[None]
            self._frames[trial.data_file] = data
        return self._frames[trial.data_file]


@dataclass
class TimeIntervals(Modality):
    labels: dict[str, np.ndarray]
    """Label -> float (n, 2) rows [start, end), in meta.yml's order."""


@dataclass
class Spikes(Modality):
    spikes: np.ndarray
    indices: np.ndarray

    @property
    def n_signals(self) -> int:
        return len(self.indices) - 1


def read_modality(files: SessionFiles, name: str) -> Modality:
    meta = read_yaml(files, f"{name}/meta.yml")
    kind = meta.get("modality")
    reader = {"sequence": _sequence, "screen": _screen, "time_interval": _time_intervals,
              "spikes": _spikes}.get(kind)
    if reader is None:
        raise files.bad(f"{name}/meta.yml", f"modality {kind!r} is unknown; experanto reads {', '.join(KINDS)}")
    return reader(files, name, meta)


def _key(files: SessionFiles, name: str, meta: dict, key: str, types, default=None):
    if key not in meta:
        if default is not None:
            return default
        raise files.bad(f"{name}/meta.yml", f"no {key!r} key")
    value = meta[key]
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise files.bad(f"{name}/meta.yml", f"{key!r} is {value!r}, not a number")
    if not isinstance(value, types):
        raise files.bad(f"{name}/meta.yml", f"{key!r} is {value!r}, expected {getattr(types, '__name__', types)}")
    return value


def _times(files, name, meta) -> tuple[float, float]:
    start = float(_key(files, name, meta, "start_time", (int, float)))
    end = float(_key(files, name, meta, "end_time", (int, float)))
    if not (math.isfinite(start) and math.isfinite(end)) or end < start:
        raise files.bad(f"{name}/meta.yml", f"end_time {end} is before start_time {start}")
    return start, end


def _sequence(files: SessionFiles, name: str, meta: dict) -> Sequence:
    start, end = _times(files, name, meta)
    rate = float(_key(files, name, meta, "sampling_rate", (int, float)))
    if not rate > 0:
        raise files.bad(f"{name}/meta.yml", f"sampling_rate {rate} is not positive")
    n_signals = _key(files, name, meta, "n_signals", int)
    if meta.get("is_mem_mapped", False):
        n_timestamps = _key(files, name, meta, "n_timestamps", int)
        try:
            dtype = np.dtype(_key(files, name, meta, "dtype", str))
        except TypeError:
            raise files.bad(f"{name}/meta.yml", f"dtype {meta['dtype']!r} is not a numpy dtype") from None
        if dtype.hasobject or dtype.kind not in "fiub":
            raise files.bad(f"{name}/meta.yml", f"dtype {dtype} is not numeric")
        data = map_raw(files, f"{name}/data.mem", dtype, (n_timestamps, n_signals))
    else:
        data = map_npy(files, f"{name}/data.npy")
        if data.ndim != 2 or data.shape[1] != n_signals:
            raise files.bad(f"{name}/data.npy", f"shape {data.shape}; meta.yml says (n, {n_signals})")
        if data.dtype.kind not in "fiub":
            raise files.bad(f"{name}/data.npy", f"dtype {data.dtype} is not numeric")
    last_row = math.floor((end - start) / (1.0 / rate))
    if last_row > data.shape[0] - 1:
        raise files.bad(f"{name}/meta.yml", f"end_time {end} is sample {last_row}, past the data's "
                                            f"{data.shape[0]} samples")
    shifts = None
    if meta.get("phase_shift_per_signal", False):
        shifts = read_npy(files, f"{name}/meta/phase_shifts.npy")
        if shifts.shape != (n_signals,) or shifts.dtype.kind != "f" or not np.all(np.isfinite(shifts)):
            raise files.bad(f"{name}/meta/phase_shifts.npy",
                            f"{shifts.shape} {shifts.dtype}; expected finite floats of shape ({n_signals},)")
    return Sequence(name, "sequence", meta, start, end, rate, data, shifts,
                    _statistics(files, name, n_signals))


def _statistics(files: SessionFiles, name: str, n_signals: int | None) -> dict[str, np.ndarray]:
    """``meta/{means,stds}.npy`` when present; a sequence's must hold one value per signal."""
    found = {}
    for stat in STATISTICS:
        path = f"{name}/meta/{stat}.npy"
        if files.has(path):
            array = read_npy(files, path)
            if array.dtype.kind not in "fiu":
                raise files.bad(path, f"dtype {array.dtype} is not numeric")
            if n_signals is not None and array.size != n_signals:
                raise files.bad(path, f"{array.size} values for {n_signals} signals")
            found[stat] = array
    return found


def _screen(files: SessionFiles, name: str, meta: dict) -> Screen:
    timestamps = read_npy(files, f"{name}/timestamps.npy")
    where = f"{name}/timestamps.npy"
    if timestamps.ndim != 1 or len(timestamps) == 0 or timestamps.dtype.kind != "f":
        raise files.bad(where, f"{timestamps.shape} {timestamps.dtype}; expected a non-empty float vector")
    steps = np.diff(timestamps)
    if not np.all(np.isfinite(timestamps)) or np.any(steps <= 0):
        bad = int(np.flatnonzero(~(steps > 0))[0]) + 1 if np.any(~(steps > 0)) else 0
        raise files.bad(where, f"timestamps are not strictly increasing (at frame {bad})")
    use_names = bool(meta.get("use_stimuli_names", False))
    trials_meta = _trial_metas(files, name)
    trials = []
    first = 0
    for index, (key, trial) in enumerate(trials_meta):
        trials.append(_trial(files, name, index, key, trial, first, timestamps, use_names))
        first += trials[-1].n_frames
    if first != len(timestamps):
        raise files.bad(where, f"{len(timestamps)} timestamps, but the trials' frames add up to {first}")
    for i, trial in enumerate(trials):
        trial.onset = float(timestamps[trial.first_frame])
        trial.end = float(timestamps[trials[i + 1].first_frame]) if i + 1 < len(trials) else float(timestamps[-1])
    frame_trial = np.repeat(np.arange(len(trials)), [t.n_frames for t in trials])
    screen = Screen(name, "screen", meta, float(timestamps[0]), float(timestamps[-1]), timestamps, trials,
                    frame_trial, _statistics(files, name, None), files)
    return screen


def _trial_metas(files: SessionFiles, name: str) -> list[tuple[str, dict]]:
    """(key, yml contents) per trial, in experanto's order: ``combined_meta.json`` when it exists
    (it wins over the yml files, even when stale), else ``meta/NNNNN.yml`` in numeric order."""
    cache = f"{name}/combined_meta.json"
    if files.has(cache):
        combined = read_json(files, cache)
        for key, value in combined.items():
            if not isinstance(value, dict):
                raise files.bad(cache, f"trial {key!r} is not an object")
        return list(combined.items())
    keys = sorted((n.rsplit("/", 1)[1][:-4] for n in files.names()
                   if n.startswith(f"{name}/meta/") and n.count("/") == 2 and TRIAL_YML.match(n.rsplit("/", 1)[1])),
                  key=int)
    if not keys:
        raise files.bad(f"{name}/meta", "no trial files (meta/NNNNN.yml)")
    return [(key, read_yaml(files, f"{name}/meta/{key}.yml")) for key in keys]


def _trial(files, name, index, key, meta, first, timestamps, use_names) -> StimulusTrial:
    where = f"{name}/meta/{key}.yml"
    modality = meta.get("modality")
    if modality not in ("image", "video", "blank", "invalid"):
        raise files.bad(where, f"modality {modality!r}; experanto knows image, video, blank, invalid")
    size = meta.get("image_size")
    if not (isinstance(size, list) and len(size) in (2, 3) and all(isinstance(d, int) and d > 0 for d in size)
            and (len(size) == 2 or size[2] == 3)):
        raise files.bad(where, f"image_size {size!r}; expected [H, W] or [H, W, 3]")
    image_size = tuple(size)
    first_frame = meta.get("first_frame_idx")
    if first_frame != first:
        raise files.bad(where, f"first_frame_idx {first_frame!r}, but the frames before it add up to {first}")
    n_frames = 1
    if modality == "video":
        n_frames = meta.get("num_frames")
        if not isinstance(n_frames, int) or isinstance(n_frames, bool) or n_frames < 1:
            raise files.bad(where, f"num_frames {n_frames!r}; a video needs a positive frame count")
    name_key = meta.get("stimulus_name")
    if use_names and name_key is None:
        raise files.bad(where, "no stimulus_name, which use_stimuli_names needs on every trial")
    data_file = None
    interleave = None
    if modality in ("image", "video"):
        stem = str(name_key) if use_names else key
        if "/" in stem or stem in ("", ".", ".."):
            raise files.bad(where, f"stimulus_name {stem!r} is not a file name")
        data_file = f"data/{stem}.npy"
        _check_pixels(files, f"{name}/{data_file}", modality, n_frames, image_size)
    else:
        interleave = meta.get("interleave_value")
        if not isinstance(interleave, (int, float)) or isinstance(interleave, bool):
            raise files.bad(where, f"interleave_value {interleave!r}; a {modality} trial needs a number")
        interleave = float(interleave)
    valid = meta.get("valid_trial")
    extra = {k: v for k, v in meta.items() if k not in TRIAL_KEYS}
    return StimulusTrial(index, key, modality, str(meta.get("tier", "blank")),
                         None if name_key is None else str(name_key), meta.get("stim_type"), first, n_frames,
                         0.0, 0.0, valid if isinstance(valid, bool) else None, image_size, interleave,
                         data_file, extra)


def _check_pixels(files, path, modality, n_frames, image_size) -> None:
    from .parse import npy_header

    header = npy_header(files, path)
    expected = image_size if modality == "image" else (n_frames,) + image_size
    if header.shape != expected:
        raise files.bad(path, f"shape {header.shape}; the trial's yml says {expected}")
    if header.dtype.kind not in "fiub":
        raise files.bad(path, f"dtype {header.dtype} is not numeric")


def _time_intervals(files: SessionFiles, name: str, meta: dict) -> TimeIntervals:
    start, end = _times(files, name, meta)
    labels = meta.get("labels")
    if not isinstance(labels, dict) or not labels:
        raise files.bad(f"{name}/meta.yml", "no 'labels' mapping (label: file.npy)")
    arrays = {}
    for label, filename in labels.items():
        path = f"{name}/{filename}"
        if not isinstance(filename, str) or ".." in filename.split("/"):
            raise files.bad(f"{name}/meta.yml", f"label {label!r} names {filename!r}, not a file of the folder")
        rows = read_npy(files, path)
        if rows.dtype.kind not in "fiu" or not (rows.ndim == 2 and rows.shape[1] == 2 or rows.size == 0):
            raise files.bad(path, f"{rows.shape} {rows.dtype}; expected float rows [start, end)")
        arrays[str(label)] = rows.reshape(-1, 2).astype(np.float64, copy=False)
    return TimeIntervals(name, "time_interval", meta, start, end, arrays)


def _spikes(files: SessionFiles, name: str, meta: dict) -> Spikes:
    start, end = _times(files, name, meta)
    indices = meta.get("spike_indices")
    if not (isinstance(indices, list) and indices and all(isinstance(i, int) and not isinstance(i, bool)
                                                         for i in indices)):
        raise files.bad(f"{name}/meta.yml", "spike_indices must be a list of integers (N + 1 block bounds)")
    indices = np.asarray(indices, dtype=np.int64)
    if indices[0] != 0 or np.any(np.diff(indices) < 0):
        raise files.bad(f"{name}/meta.yml", "spike_indices must start at 0 and never decrease")
    n_signals = meta.get("n_signals")
    if n_signals is not None and n_signals != len(indices) - 1:
        raise files.bad(f"{name}/meta.yml", f"n_signals {n_signals} but spike_indices has {len(indices) - 1} blocks")
    if meta.get("is_mem_mapped", False):
        dtype = np.dtype(meta.get("dtype", "float64"))
        spikes = map_raw(files, f"{name}/spikes.mem", dtype, (int(indices[-1]),))
    else:
        spikes = map_npy(files, f"{name}/spikes.npy")
    where = f"{name}/spikes.{'mem' if meta.get('is_mem_mapped', False) else 'npy'}"
    if spikes.ndim != 1 or spikes.shape[0] != indices[-1]:
        raise files.bad(where, f"shape {spikes.shape}; spike_indices ends at {indices[-1]}")
    steps = np.diff(spikes)
    block_starts = indices[1:-1] - 1
    steps_ok = steps >= 0
    steps_ok[block_starts[(block_starts >= 0) & (block_starts < len(steps))]] = True
    if not np.all(steps_ok):
        raise files.bad(where, "spike times within a neuron's block are not sorted")
    return Spikes(name, "spikes", meta, start, end, spikes, indices)


__all__ = ["Modality", "Screen", "Sequence", "Spikes", "StimulusTrial", "TimeIntervals", "read_modality", "require"]
