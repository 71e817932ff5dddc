"""Synthetic experanto sessions: one folder per modality, each on its own clock (EXPERANTO_FORMAT.md).

A session is several regular signals (responses with per-neuron phase shifts, an eye tracker
with NaN blinks, a treadmill) sampled at different rates and starting at different times on
one epoch-seconds clock, and a screen showing trials (blanks between images or videos, test
stimuli repeated). The spec's flags write every variant the format note lists, so the tests
can read each: images or videos, ``use_stimuli_names``, optional modalities left out, a
``time_interval`` tiers folder, spikes, colour frames, no ``meta.json``, the
``combined_meta.json`` cache. Everything is drawn from the spec's seed.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import yaml

from ..session.writing import write_folder, write_tar
from ..source.npyfile import dumps

SCREEN_RATE = 30.0
"""Frame rate of the videos and of the screen's clock (Hz)."""
BLANK_SECONDS = 0.4
IMAGE_SECONDS = 0.5
OPTIONAL_SEQUENCES = ("eye_tracker", "treadmill")
AREAS = ("V1", "LM", "AL", "RL")
LAYERS = ("L2/3", "L4", "L5")


@dataclass(frozen=True)
class SessionSpec:
    """An experanto session; the defaults give a small one (about 20 s) that tests read fast."""

    animal_id: int = 29515
    session: int = 10
    scan_idx: int = 12
    seed: int = 0
    start_time: float = 1520193100.59
    """Epoch seconds of the screen's first frame; the other modalities start earlier."""
    n_neurons: int = 12
    responses_rate: float = 10.0
    eye_tracker_rate: float = 20.0
    treadmill_rate: float = 50.0
    stimulus: str = "video"
    """``video`` (trials of ``video_frames`` frames) or ``image`` (one frame each)."""
    n_train: int = 6
    n_test_stimuli: int = 2
    n_repeats: int = 3
    n_validation: int = 1
    video_frames: int = 24
    frame_shape: tuple[int, int] = (18, 32)
    colour: bool = False
    use_stimuli_names: bool = False
    omit: tuple[str, ...] = ()
    """Optional sequence modalities left out (``eye_tracker``, ``treadmill``)."""
    tiers_folder: bool = False
    """A ``tiers/`` modality of kind ``time_interval`` with the trials' tier intervals."""
    spikes: bool = False
    """A ``spikes/`` modality with spike times of the same neurons."""
    meta_json: str | None = "scan_key"
    """``scan_key``, ``data_key`` or None (no meta.json: the key is the folder name)."""
    phase_shifts: bool = True
    blinks: bool = True
    neuron_meta: bool = True
    """Write responses/meta/{unit_ids,cell_motor_coordinates,area,layer}.npy."""
    combined_meta: bool = False
    """Also write screen/combined_meta.json, the cache experanto writes on first load."""
    npy_sequences: tuple[str, ...] = ("treadmill",)
    """Sequences written as ``data.npy`` (``is_mem_mapped: false``); the rest as ``data.mem``."""
    response_dtype: str = "float32"
    lead_seconds: tuple[tuple[str, float], ...] = (("responses", 0.6), ("eye_tracker", 1.1), ("treadmill", 0.9))
    """How long before the screen's first frame each sequence starts (and after its last, ends)."""
    stream: bool = False
    """Write the large files (responses' ``data.mem``, stimulus videos) in blocks as the session
    is written, never holding them whole: a full-size session (8,000 neurons x 30 min at 30 Hz,
    1.7 GB of responses) is generated in bounded memory. Their values come from per-block
    seeds, so they differ from the in-memory session of the same spec; ``arrays`` leaves them out."""

    @property
    def folder_name(self) -> str:
        digest = hashlib.sha1(f"{self.animal_id}-{self.session}-{self.scan_idx}-{self.seed}".encode()).hexdigest()
        return f"dynamic{self.animal_id}-{self.session}-{self.scan_idx}-Video-{digest[:24]}_30hz"

    @property
    def key(self) -> str:
        """The session key experanto derives (ChunkDataset.get_data_key_from_root_folder)."""
        if self.meta_json == "data_key":
            return f"session-{self.animal_id}-{self.session}-{self.scan_idx}"
        if self.meta_json == "scan_key":
            return f"{self.animal_id}-{self.session}-{self.scan_idx}"
        return self.folder_name

    def with_(self, **changes) -> SessionSpec:
        return replace(self, **changes)


@dataclass
class GeneratedSession:
    """A session's files by relative path, as arrays (``.npy``), raw bytes or text."""

    spec: SessionSpec
    files: dict[str, bytes] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    """Every array written, by path (``data.mem`` ones too), for tests to compare against."""
    streamed: dict[str, tuple[int, Callable[[], Iterator[bytes]]]] = field(default_factory=dict)
    """Files made block by block when written (``SessionSpec.stream``): path -> (size, blocks)."""

    def add_streamed(self, path: str, size: int, blocks: Callable[[], Iterator[bytes]]) -> None:
        self.streamed[path] = (size, blocks)

    def names(self) -> list[str]:
        """Every file's relative path, sorted."""
        return sorted({*self.files, *self.streamed})

    def blocks(self, path: str) -> Iterator[bytes]:
        """A file's bytes, in blocks for a streamed file."""
        if path in self.streamed:
            yield from self.streamed[path][1]()
        else:
            yield self.files[path]

    def size(self, path: str) -> int:
        return self.streamed[path][0] if path in self.streamed else len(self.files[path])

    def add_npy(self, path: str, array: np.ndarray) -> None:
        self.arrays[path] = np.asarray(array)
        self.files[path] = dumps(array)

    def add_raw(self, path: str, array: np.ndarray) -> None:
        self.arrays[path] = np.ascontiguousarray(array)
        self.files[path] = np.ascontiguousarray(array).tobytes()

    def add_yaml(self, path: str, content: dict) -> None:
        self.files[path] = yaml.safe_dump(content, sort_keys=False).encode()


# -- the screen ---------------------------------------------------------------------------


def _stimulus_plan(spec: SessionSpec, rng: np.random.Generator) -> list[tuple[str, str]]:
    """(stimulus name, tier) per stimulus trial: train, validation and repeated test stimuli, shuffled."""
    plan = [(f"train_{i:03d}", "train") for i in range(spec.n_train)]
    plan += [(f"validation_{i:03d}", "validation") for i in range(spec.n_validation)]
    plan += [(f"oracle_{i:03d}", "oracle") for i in range(spec.n_test_stimuli) for _ in range(spec.n_repeats)]
    order = rng.permutation(len(plan))
    return [plan[i] for i in order]


def _stimulus_pixels(spec: SessionSpec, name: str) -> np.ndarray:
    """A stimulus's frames, uint8, drawn from its name so repeats are identical."""
    rng = np.random.default_rng(int(hashlib.sha1(f"{spec.seed}:{name}".encode()).hexdigest()[:12], 16))
    h, w = spec.frame_shape
    frames = 1 if spec.stimulus == "image" else spec.video_frames
    shape = (frames, h, w) + ((3,) if spec.colour else ())
    base = rng.uniform(0, 255, (1, h, w) + ((3,) if spec.colour else ()))
    drift = rng.normal(0, 12, shape).cumsum(axis=0)
    pixels = np.clip(base + drift, 0, 255).astype(np.uint8)
    return pixels[0] if spec.stimulus == "image" else pixels


class _StreamedPixels:
    """A video made a second at a time (``SessionSpec.stream``): the same drifting noise as
    ``_stimulus_pixels``, in float32, drawn from the stimulus name so repeats are identical."""

    BLOCK = 30

    def __init__(self, spec: SessionSpec, name: str):
        self.spec, self.name = spec, name
        self.shape = (spec.video_frames, *spec.frame_shape) + ((3,) if spec.colour else ())
        self.base = self._rng().uniform(0, 255, (1,) + self.shape[1:]).astype(np.float32)

    def _rng(self) -> np.random.Generator:
        return np.random.default_rng(int(hashlib.sha1(f"{self.spec.seed}:{self.name}".encode()).hexdigest()[:12], 16))

    def mean(self) -> float:
        """The mean level the responses follow (the first frame's, close to the video's)."""
        return float(self.base.mean())

    def blocks(self) -> Iterator[bytes]:
        rng = self._rng()
        rng.uniform(0, 255, (1,) + self.shape[1:])  # the base's draws
        level = self.base[0].copy()
        for first in range(0, self.shape[0], self.BLOCK):
            n = min(self.BLOCK, self.shape[0] - first)
            drift = rng.standard_normal((n,) + self.shape[1:], dtype=np.float32)
            drift *= 12
            drift[0] += level
            np.cumsum(drift, axis=0, out=drift)
            level = drift[-1].copy()
            yield np.clip(drift, 0, 255).astype(np.uint8).tobytes()


def _streamed_pixels(spec: SessionSpec, name: str) -> _StreamedPixels:
    return _StreamedPixels(spec, name)


def _add_pixels(out: GeneratedSession, path: str, pixels) -> None:
    if isinstance(pixels, _StreamedPixels):
        header = _npy_header(np.uint8, pixels.shape)
        size = len(header) + int(np.prod(pixels.shape))
        out.add_streamed(path, size, lambda: _prefixed(header, pixels.blocks()))
    else:
        out.add_npy(path, pixels)


def _npy_header(dtype, shape) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                               "fortran_order": False, "shape": tuple(shape)})
    return buf.getvalue()


def _prefixed(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest


def _write_screen(out: GeneratedSession, rng: np.random.Generator) -> dict:
    """Blank, stimulus, blank, ..., blank; returns the timeline the other modalities are built on."""
    spec = out.spec
    plan = _stimulus_plan(spec, rng)
    image_size = list(spec.frame_shape) + ([3] if spec.colour else [])
    onsets: list[float] = []
    trials: list[dict] = []
    luminance: list[tuple[float, float, float]] = []  # (start, end, mean pixel) per trial, for responses
    t = spec.start_time
    written_names: set[str] = set()
    for i in range(2 * len(plan) + 1):
        first = len(onsets)
        if i % 2 == 0:
            meta = {"modality": "blank", "first_frame_idx": first, "image_size": image_size,
                    "num_frames": 1, "interleave_value": 128.0, "stim_type": "stimulus.Blank"}
            if spec.use_stimuli_names:
                meta["stimulus_name"] = "blank"
            onsets.append(t)
            duration = BLANK_SECONDS + rng.uniform(0, 0.05)
            level = 128.0
        else:
            name, tier = plan[i // 2]
            streamed = spec.stream and spec.stimulus == "video"
            pixels = _streamed_pixels(spec, name) if streamed else _stimulus_pixels(spec, name)
            n = 1 if spec.stimulus == "image" else spec.video_frames
            meta = {"modality": spec.stimulus, "first_frame_idx": first, "image_size": image_size}
            if spec.stimulus == "video":
                meta["num_frames"] = n
            meta |= {"tier": tier, "valid_trial": bool(i != 3), "stim_type":
                     "stimulus.Frame" if spec.stimulus == "image" else "stimulus.Clip",
                     "trial_idx": i // 2, "image_name": name,
                     "condition_hash": hashlib.md5(name.encode()).hexdigest()[:20],
                     "pre_blank_period": BLANK_SECONDS}
            if spec.use_stimuli_names:
                meta["stimulus_name"] = name
                if name not in written_names:
                    _add_pixels(out, f"screen/data/{name}.npy", pixels)
                    written_names.add(name)
            else:
                _add_pixels(out, f"screen/data/{i:05d}.npy", pixels)
            jitter = rng.uniform(-2e-3, 2e-3, n)
            jitter[0] = 0.0
            onsets.extend(t + np.arange(n) / SCREEN_RATE + jitter)
            duration = IMAGE_SECONDS if spec.stimulus == "image" else n / SCREEN_RATE
            level = pixels.mean() if isinstance(pixels, _StreamedPixels) else float(pixels.mean())
        out.add_yaml(f"screen/meta/{i:05d}.yml", meta)
        trials.append(meta)
        luminance.append((t, t + duration, level))
        t += duration
    timestamps = np.asarray(onsets, dtype=np.float64)
    out.add_npy("screen/timestamps.npy", timestamps)
    out.add_yaml("screen/meta.yml", {"modality": "screen", "start_time": float(timestamps[0]),
                                     "end_time": float(timestamps[-1]), "frame_rate": SCREEN_RATE,
                                     "is_mem_mapped": False, **({"use_stimuli_names": True}
                                                                if spec.use_stimuli_names else {})})
    out.add_npy("screen/meta/means.npy", np.asarray(110.0 + rng.uniform(0, 10)))
    out.add_npy("screen/meta/stds.npy", np.asarray(55.0 + rng.uniform(0, 10)))
    if spec.combined_meta:
        out.files["screen/combined_meta.json"] = json.dumps({f"{i:05d}": m for i, m in enumerate(trials)}).encode()
    return {"start": float(timestamps[0]), "end": float(timestamps[-1]), "luminance": luminance, "trials": trials,
            "onsets": timestamps}


# -- regular signals ----------------------------------------------------------------------


def _grid(spec: SessionSpec, name: str, rate: float, timeline: dict) -> tuple[float, int]:
    """Start time and sample count: from ``lead`` seconds before the screen to as long after."""
    lead = dict(spec.lead_seconds)[name]
    start = round(timeline["start"] - lead, 6)
    n = int(np.floor((timeline["end"] + lead - start) * rate)) + 1
    return start, n


def _write_sequence(out: GeneratedSession, name: str, data: np.ndarray, start: float, rate: float,
                    extra_meta: dict | None = None, phase_shifts: np.ndarray | None = None) -> None:
    n, channels = data.shape
    mem = name not in out.spec.npy_sequences
    meta = {"modality": "sequence", "start_time": start, "end_time": start + (n - 1) / rate,
            "sampling_rate": rate, "time_delta": 1.0 / rate, "n_signals": channels,
            "n_timestamps": n, "dtype": str(data.dtype), "is_mem_mapped": mem,
            "phase_shift_per_signal": phase_shifts is not None, **(extra_meta or {})}
    out.add_yaml(f"{name}/meta.yml", meta)
    if isinstance(data, _StreamedResponses):
        out.add_streamed(f"{name}/data.mem", int(np.prod(data.shape)) * data.dtype.itemsize,
                         lambda: (block.tobytes() for block in data.blocks()))
    elif mem:
        out.add_raw(f"{name}/data.mem", data)
    else:
        out.add_npy(f"{name}/data.npy", data)
    out.add_npy(f"{name}/timestamps.npy", start + np.arange(n) / rate)  # written by exporters, never read
    if phase_shifts is not None:
        out.add_npy(f"{name}/meta/phase_shifts.npy", phase_shifts)


class _StreamedResponses:
    """Responses made block by block (``SessionSpec.stream``): stimulus drive plus exponential
    noise, about a third exactly zero, neuron 0 silent; each block of rows from its own seed, so
    any block is made alone and the statistics pass and the write see the same values."""

    ROWS = 2048

    def __init__(self, spec: SessionSpec, timeline: dict, start: float, n: int, gain: np.ndarray):
        self.spec, self.timeline, self.start, self.gain = spec, timeline, start, gain.astype(np.float32)
        self.dtype = np.dtype(spec.response_dtype)
        self.shape = (n, len(gain))

    def block(self, index: int) -> np.ndarray:
        lo = index * self.ROWS
        hi = min(lo + self.ROWS, self.shape[0])
        times = self.start + np.arange(lo, hi) / self.spec.responses_rate
        rng = np.random.default_rng([self.spec.seed, 1, index])
        values = rng.standard_exponential((hi - lo, self.shape[1]), dtype=np.float32)
        values *= 0.6
        values -= 0.25
        values += ((_luminance_at(self.timeline, times) - 100.0).astype(np.float32)[:, None] * self.gain[None, :])
        np.maximum(values, 0, out=values)
        values[:, 0] = 0.0
        return values.astype(self.dtype, copy=False)

    def blocks(self) -> Iterator[np.ndarray]:
        for index in range(-(-self.shape[0] // self.ROWS)):
            yield self.block(index)

    def __getitem__(self, rows):
        return np.concatenate(list(self.blocks()))[rows]

    def statistics(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-neuron mean and std, (1, N), accumulated in float64 over the blocks."""
        total = np.zeros(self.shape[1])
        squares = np.zeros(self.shape[1])
        for block in self.blocks():
            total += block.sum(axis=0, dtype=np.float64)
            squares += np.square(block, dtype=np.float64).sum(axis=0)
        mean = total / self.shape[0]
        return mean[None, :], np.sqrt(np.maximum(squares / self.shape[0] - mean ** 2, 0))[None, :]


def _luminance_at(timeline: dict, times: np.ndarray) -> np.ndarray:
    level = np.full(times.shape, 128.0)
    for start, end, value in timeline["luminance"]:
        level[(times >= start) & (times < end)] = value
    return level


def _write_responses(out: GeneratedSession, rng: np.random.Generator, timeline: dict) -> None:
    """Stimulus-driven, non-negative responses; neuron 0 is silent (a zero std, raised by experanto's threshold)."""
    spec = out.spec
    rate, n_neurons = spec.responses_rate, spec.n_neurons
    start, n = _grid(spec, "responses", rate, timeline)
    times = start + np.arange(n) / rate
    gain = rng.uniform(0.002, 0.02, n_neurons)
    if spec.stream:
        data = _StreamedResponses(spec, timeline, start, n, gain)
    else:
        drive = (_luminance_at(timeline, times) - 100.0)[:, None] * gain[None, :]
        data = np.maximum(drive + rng.gamma(0.6, 0.5, (n, n_neurons)), 0).astype(spec.response_dtype)
        data[:, 0] = 0.0
    shifts = rng.uniform(0, 1.0 / rate, n_neurons) if spec.phase_shifts else None
    extra = {"original_sampling_rate": 6.3}
    if spec.neuron_meta:
        extra["neuron_properties"] = {"unit_ids": "meta/unit_ids.npy",
                                      "cell_motor_coordinates": "meta/cell_motor_coordinates.npy"}
    _write_sequence(out, "responses", data, start, rate, extra, shifts)
    if spec.stream:
        means, stds = data.statistics()
    else:
        with np.errstate(all="ignore"):
            means, stds = np.nanmean(data, axis=0, keepdims=True), np.nanstd(data, axis=0, keepdims=True)
    out.add_npy("responses/meta/means.npy", means.astype(np.float32))
    out.add_npy("responses/meta/stds.npy", stds.astype(np.float32))
    if spec.neuron_meta:
        out.add_npy("responses/meta/unit_ids.npy", np.arange(1, n_neurons + 1, dtype=np.int64) * 7)
        out.add_npy("responses/meta/cell_motor_coordinates.npy",
                    rng.uniform(-400, 400, (n_neurons, 3)).round(1))
        out.add_npy("responses/meta/area.npy", np.array([AREAS[i % len(AREAS)] for i in range(n_neurons)]))
        out.add_npy("responses/meta/layer.npy", np.array([LAYERS[i % len(LAYERS)] for i in range(n_neurons)]))
    if spec.spikes:
        _write_spikes(out, rng, np.asarray(data[:]) if spec.stream else data, start, rate)


def _write_eye_tracker(out: GeneratedSession, rng: np.random.Generator, timeline: dict) -> None:
    """Pupil x, y, size and size derivative; blinks are runs of NaN rows."""
    spec = out.spec
    rate = spec.eye_tracker_rate
    start, n = _grid(spec, "eye_tracker", rate, timeline)
    xy = rng.normal(0, 0.5, (n, 2)).cumsum(axis=0) * 0.05 + [310.0, 240.0]
    size = 20 + np.abs(rng.normal(0, 1, n).cumsum() * 0.1)
    data = np.column_stack([xy, size, np.gradient(size) * rate]).astype(np.float32)
    if spec.blinks:
        for blink_start in rng.choice(n - 10, size=max(1, n // 200), replace=False):
            data[blink_start:blink_start + int(rng.integers(2, 6))] = np.nan
    _write_sequence(out, "eye_tracker", data, start, rate)
    with np.errstate(all="ignore"):
        out.add_npy("eye_tracker/meta/means.npy", np.nanmean(data, axis=0))
        out.add_npy("eye_tracker/meta/stds.npy", np.nanstd(data, axis=0))


def _write_treadmill(out: GeneratedSession, rng: np.random.Generator, timeline: dict) -> None:
    """Running speed (cm/s), one channel; its statistics are 0-d, as allen-exporter writes them."""
    spec = out.spec
    rate = spec.treadmill_rate
    start, n = _grid(spec, "treadmill", rate, timeline)
    speed = np.abs(np.convolve(rng.normal(0, 3, n), np.ones(25) / 5, mode="same"))
    data = speed[:, None].astype(np.float32)
    _write_sequence(out, "treadmill", data, start, rate)
    out.add_npy("treadmill/meta/means.npy", np.asarray(data.mean(), np.float32))
    out.add_npy("treadmill/meta/stds.npy", np.asarray(data.std(), np.float32))


def _write_spikes(out: GeneratedSession, rng: np.random.Generator, rates: np.ndarray, start: float,
                  rate: float) -> None:
    """Spike times per neuron (Poisson in each response bin), blocked by neuron and sorted."""
    blocks = []
    for j in range(rates.shape[1]):
        counts = rng.poisson(rates[:, j] * 2)
        bins = np.repeat(np.arange(len(counts)), counts)
        blocks.append(np.sort(start + (bins + rng.uniform(0, 1, len(bins))) / rate))
    indices = np.concatenate([[0], np.cumsum([len(b) for b in blocks])]).astype(int)
    out.add_npy("spikes/spikes.npy", np.concatenate(blocks).astype(np.float64))
    end = start + (rates.shape[0] - 1) / rate
    out.add_yaml("spikes/meta.yml", {"modality": "spikes", "start_time": start, "end_time": end,
                                     "spike_indices": [int(i) for i in indices], "n_signals": rates.shape[1]})


def _write_tiers(out: GeneratedSession, timeline: dict) -> None:
    """One half-open interval per stimulus trial and tier, plus one reversed row experanto skips."""
    onsets, trials = timeline["onsets"], timeline["trials"]
    intervals: dict[str, list] = {}
    for i, meta in enumerate(trials):
        if "tier" not in meta:
            continue
        end = onsets[trials[i + 1]["first_frame_idx"]] if i + 1 < len(trials) else onsets[-1]
        intervals.setdefault(meta["tier"], []).append([onsets[meta["first_frame_idx"]], end])
    labels = {}
    for tier, rows in sorted(intervals.items()):
        if tier == "train":
            rows = rows + [[rows[0][1], rows[0][0]]]  # start > end: skipped with a warning
        out.add_npy(f"tiers/{tier}.npy", np.asarray(rows, dtype=np.float64))
        labels[tier] = f"{tier}.npy"
    out.add_yaml("tiers/meta.yml", {"modality": "time_interval", "start_time": timeline["start"],
                                    "end_time": timeline["end"], "labels": labels})


def generate_session(spec: SessionSpec = SessionSpec()) -> GeneratedSession:
    """Every file of the session the spec describes, deterministic from its seed."""
    if spec.stimulus not in ("image", "video"):
        raise ValueError(f"stimulus must be 'image' or 'video', not {spec.stimulus!r}")
    rng = np.random.default_rng(spec.seed)
    out = GeneratedSession(spec)
    timeline = _write_screen(out, rng)
    _write_responses(out, rng, timeline)
    if "eye_tracker" not in spec.omit:
        _write_eye_tracker(out, rng, timeline)
    if "treadmill" not in spec.omit:
        _write_treadmill(out, rng, timeline)
    if spec.tiers_folder:
        _write_tiers(out, timeline)
    if spec.meta_json == "scan_key":
        out.files["meta.json"] = json.dumps({"scan_key": {"animal_id": spec.animal_id, "session": spec.session,
                                                          "scan_idx": spec.scan_idx}}).encode()
    elif spec.meta_json == "data_key":
        out.files["meta.json"] = json.dumps({"data_key": spec.key}).encode()
    return out


def write_session_folder(session: GeneratedSession, path: str | Path) -> Path:
    """Write the session as a folder (the session root is ``path`` itself)."""
    return write_folder(path, session.names(), session.blocks)


def write_session_tar(session: GeneratedSession, path: str | Path, *, top_folder: str | None = None) -> Path:
    """Write the session as an uncompressed tar, its files under one top folder (the folder
    name by default), sorted, with fixed times and owners: the same session gives the same bytes."""
    top = session.spec.folder_name if top_folder is None else top_folder
    return write_tar(path, top, session.names(), session.size, session.blocks)
