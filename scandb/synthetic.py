"""Synthetic Sensorium-style static scans, in every layout variant real scans show.

Used by the quickstart (``scandb example``), the tests and the benchmarks. The data is
random but shaped like the real thing: sparse non-negative responses, smooth grey images,
test images repeated ten times and shared across scans (same image id, same pixels).
With ``responsive=True`` (what ``scandb example`` writes) neurons respond to the images
through a linear-nonlinear model plus noise, so an analysis has a signal to find.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .source.npyfile import dumps

AREAS = ("V1", "LM", "AL", "RL")
LAYERS = ("L2/3", "L4", "L5")
TEST_REPEATS = 10


@dataclass(frozen=True)
class ScanSpec:
    """What to generate; the defaults give a small scan in the common layout."""

    animal_id: int = 26872
    session: int = 17
    scan_idx: int = 20
    n_trials: int = 60
    n_neurons: int = 50
    image_shape: tuple[int, ...] = (1, 36, 64)
    image_dtype: str = "uint8"
    response_dtype: str = "float32"
    behavior_dtype: str = "float32"
    n_test_images: int = 2
    image_id_file: str = "frame_image_id"
    hashed_trial_idx: bool = False
    behavior_2d: bool = False
    statistics_folder: str = "stimulus_frame"
    config_json: bool = True
    top_folder: bool = True
    junk: bool = False
    extra_trial_meta: bool = True
    extra_neuron_meta: tuple[str, ...] = ()
    seed: int = 0
    compression: int = zipfile.ZIP_DEFLATED
    realistic: bool = False
    """Full-size benchmarks: generate whole matrices at once (fast), with images and
    responses that deflate about as much as real ones (natural-photo spectrum, half the
    response values exactly zero)."""
    responsive: bool = False
    """Responses driven by the images (see ``image_driven_responses``) instead of pure
    noise; implies the whole-matrix generation of ``realistic``."""

    @property
    def name(self) -> str:
        digest = f"{self.animal_id:08x}{self.session:04x}{self.scan_idx:04x}{self.seed:016x}"[:32]
        return f"static{self.animal_id}-{self.session}-{self.scan_idx}-GrayImageNet-{digest}"

    @property
    def key(self) -> str:
        return f"{self.animal_id}-{self.session}-{self.scan_idx}"

    def with_(self, **changes) -> "ScanSpec":
        return replace(self, **changes)


@dataclass
class GeneratedScan:
    """The files of a scan by relative path (``data/...``, ``meta/...``), as arrays or bytes."""

    spec: ScanSpec
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    other: dict[str, bytes] = field(default_factory=dict)

    def files(self) -> dict[str, bytes]:
        out = {path: dumps(array) for path, array in self.arrays.items()}
        out.update(self.other)
        return out


def shared_test_image(image_id: int, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """A test image that depends only on its id, so every scan shows the same pixels."""
    return _image(np.random.default_rng(1_000_000 + image_id), shape, dtype)


def _image(rng: np.random.Generator, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    h, w = shape[-2], shape[-1]
    coarse = rng.uniform(0, 255, size=(max(h // 8, 1), max(w // 8, 1)))
    smooth = np.kron(coarse, np.ones((8, 8)))[:h, :w]
    smooth = np.pad(smooth, ((0, h - smooth.shape[0]), (0, w - smooth.shape[1])), mode="edge")
    pixels = np.broadcast_to(smooth, shape)
    if np.dtype(dtype).kind == "f":
        return pixels.astype(dtype)
    return np.clip(np.rint(pixels), 0, 255).astype(dtype)


NATURAL_SPECTRUM = 1.2
"""Amplitude falls as 1/f**1.2, as in natural photos: deflate keeps ~90% of the bytes."""
RESPONSE_ZEROS = 0.5
"""Fraction of deconvolved responses that are exactly zero (an assumption; deflate ~0.55)."""
IMAGE_BATCH = 256


def natural_images(rng: np.random.Generator, count: int, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """``count`` grey images with a natural-photo spectrum, varied brightness and contrast."""
    h, w = shape[-2], shape[-1]
    frequency = np.hypot(np.fft.fftfreq(h)[:, None], np.fft.rfftfreq(w)[None, :])
    frequency[0, 0] = 1.0
    amplitude = (frequency ** -NATURAL_SPECTRUM).astype(np.float32)
    amplitude[0, 0] = 0.0
    out = np.empty((count, *shape), dtype=dtype)
    for start in range(0, count, IMAGE_BATCH):
        b = min(IMAGE_BATCH, count - start)
        noise = rng.standard_normal((b, h, w), dtype=np.float32)
        field = np.fft.irfft2(np.fft.rfft2(noise) * amplitude, s=(h, w))
        field -= field.mean(axis=(1, 2), keepdims=True)
        field /= field.std(axis=(1, 2), keepdims=True) + 1e-6
        brightness = rng.uniform(90, 160, (b, 1, 1)).astype(np.float32)
        contrast = rng.uniform(15, 60, (b, 1, 1)).astype(np.float32)
        pixels = np.broadcast_to((brightness + contrast * field)[:, None], (b, *shape[:-2], h, w))
        if np.dtype(dtype).kind == "f":
            out[start:start + b] = pixels
        else:
            out[start:start + b] = np.clip(np.rint(pixels), 0, 255)
    return out


def sparse_responses(rng: np.random.Generator, n: int, n_neurons: int, dtype: str) -> np.ndarray:
    """Deconvolved activity: non-negative, heavy-tailed, about half exactly zero."""
    values = rng.lognormal(-1.0, 1.2, (n, n_neurons)).astype(np.float32)
    values[rng.random((n, n_neurons), dtype=np.float32) < RESPONSE_ZEROS] = 0.0
    return values.astype(dtype, copy=False)


RF_DOWNSAMPLE = 4
"""Receptive fields live on a 4x coarser grid than the image: the model costs a small
matrix product even for 144x256 images."""
NOISE_SHAPE = 1.5
"""Gamma noise shape around each trial's rate: trial-to-trial variability with a
coefficient of variation of 0.8, near what repeated presentations show."""


def image_driven_responses(rng: np.random.Generator, images: np.ndarray, n_neurons: int, dtype: str) -> np.ndarray:
    """Responses of a linear-nonlinear population to ``images`` (trials first).

    Each neuron has a Gabor receptive field at a random place, orientation and size; its
    rate is a softplus of the filtered image, and each trial draws gamma noise around that
    rate. Repeats of one image therefore agree partly, as in real recordings (each test
    trial correlates with the mean of its image's other repeats at about 0.4 for the median
    neuron, 0 to 0.7 across neurons), and a model can learn the mapping.
    """
    n = len(images)
    h, w = images.shape[-2] // RF_DOWNSAMPLE, images.shape[-1] // RF_DOWNSAMPLE
    pixels = images.reshape(n, -1, images.shape[-2], images.shape[-1])[:, 0, :h * RF_DOWNSAMPLE, :w * RF_DOWNSAMPLE]
    coarse = pixels.reshape(n, h, RF_DOWNSAMPLE, w, RF_DOWNSAMPLE).mean(axis=(2, 4), dtype=np.float32)
    coarse = (coarse - coarse.mean()) / (coarse.std() + 1e-6)
    fields = gabor_fields(rng, n_neurons, h, w)
    drive = coarse.reshape(n, -1) @ fields.reshape(n_neurons, -1).T
    drive = (drive - drive.mean(axis=0)) / (drive.std(axis=0) + 1e-6)
    gain = rng.uniform(0.2, 1.5, n_neurons).astype(np.float32)  # some neurons barely care about the image
    offset = rng.normal(-1.0, 0.5, n_neurons).astype(np.float32)
    rate = np.logaddexp(0, gain * drive + offset)
    noisy = rng.gamma(NOISE_SHAPE, 1.0 / NOISE_SHAPE, rate.shape).astype(np.float32) * rate
    noisy[noisy < 0.1] = 0.0  # deconvolved activity is exactly zero much of the time
    return noisy.astype(dtype, copy=False)


def gabor_fields(rng: np.random.Generator, count: int, h: int, w: int) -> np.ndarray:
    """``count`` unit-norm Gabor filters on an ``h`` x ``w`` grid, (count, h, w) float32."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    cy, cx = rng.uniform(0.2, 0.8, (2, count, 1, 1)).astype(np.float32) * np.array([h, w], np.float32)[:, None, None, None]
    sigma = (rng.uniform(0.04, 0.1, (count, 1, 1)) * min(h, w) + 1).astype(np.float32)
    theta = rng.uniform(0, np.pi, (count, 1, 1)).astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, (count, 1, 1)).astype(np.float32)
    along = (x - cx) * np.cos(theta) + (y - cy) * np.sin(theta)
    envelope = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * sigma ** 2))
    fields = envelope * np.cos(2 * np.pi * along / (3 * sigma) + phase)
    fields /= np.linalg.norm(fields.reshape(count, -1), axis=1)[:, None, None] + 1e-6
    return fields.astype(np.float32)


def _add_realistic_trials(scan: GeneratedScan, rng: np.random.Generator, tiers: np.ndarray,
                          image_ids: np.ndarray) -> dict[str, np.ndarray]:
    """Every per-trial file from whole matrices; returns the matrices (for the statistics)."""
    spec = scan.spec
    n = spec.n_trials
    images = natural_images(rng, n, spec.image_shape, spec.image_dtype)
    test_rows = np.flatnonzero(tiers == "test")
    for image_id in np.unique(image_ids[test_rows]):
        shared = natural_images(np.random.default_rng(1_000_000 + int(image_id)), 1, spec.image_shape,
                                spec.image_dtype)
        images[test_rows[image_ids[test_rows] == image_id]] = shared
    if spec.responsive:
        responses = image_driven_responses(rng, images, spec.n_neurons, spec.response_dtype)
    else:
        responses = sparse_responses(rng, n, spec.n_neurons, spec.response_dtype)
    behavior = np.column_stack([rng.uniform(5, 40, n), rng.normal(0, 1, n),
                                np.abs(rng.normal(0, 4, n))]).astype(spec.behavior_dtype)
    pupil = rng.normal(0, 15, (n, 2)).astype(spec.behavior_dtype)
    shape = (1,) if spec.behavior_2d else ()
    for i in range(n):
        scan.arrays[f"data/images/{i}.npy"] = images[i]
        scan.arrays[f"data/responses/{i}.npy"] = responses[i]
        scan.arrays[f"data/behavior/{i}.npy"] = behavior[i].reshape(*shape, 3)
        scan.arrays[f"data/pupil_center/{i}.npy"] = pupil[i].reshape(*shape, 2)
    return {"images": images, "responses": responses, "behavior": behavior, "pupil_center": pupil}


def generate(spec: ScanSpec) -> GeneratedScan:
    rng = np.random.default_rng(spec.seed + 7919 * spec.scan_idx + 104729 * spec.animal_id)
    n, N = spec.n_trials, spec.n_neurons
    scan = GeneratedScan(spec)

    n_test = min(spec.n_test_images * TEST_REPEATS, n // 2)
    n_val = max(n // 10, 1)
    tiers = np.array(["test"] * n_test + ["validation"] * n_val + ["train"] * (n - n_test - n_val))
    rng.shuffle(tiers)
    image_ids = np.empty(n, dtype=np.int64)
    test_rows = np.flatnonzero(tiers == "test")
    image_ids[test_rows] = np.arange(len(test_rows)) % max(spec.n_test_images, 1)
    other_rows = np.flatnonzero(tiers != "test")
    image_ids[other_rows] = 10_000 + spec.seed * 100_000 + spec.scan_idx * 1_000 + np.arange(len(other_rows))

    if spec.realistic or spec.responsive:
        stacked = _add_realistic_trials(scan, rng, tiers, image_ids)
        return _finish(scan, rng, tiers, image_ids, stacked)
    for i in range(n):
        if tiers[i] == "test":
            image = shared_test_image(int(image_ids[i]), spec.image_shape, spec.image_dtype)
        else:
            image = _image(rng, spec.image_shape, spec.image_dtype)
        scan.arrays[f"data/images/{i}.npy"] = image
        active = rng.random(N) < 0.3
        response = (rng.gamma(0.8, 0.5, N) * active).astype(spec.response_dtype)
        scan.arrays[f"data/responses/{i}.npy"] = response
        behavior = np.array([rng.uniform(5, 40), rng.normal(0, 1), abs(rng.normal(0, 4))], spec.behavior_dtype)
        pupil = rng.normal(0, 15, 2).astype(spec.behavior_dtype)
        if spec.behavior_2d:
            behavior, pupil = behavior[None], pupil[None]
        scan.arrays[f"data/behavior/{i}.npy"] = behavior
        scan.arrays[f"data/pupil_center/{i}.npy"] = pupil
    return _finish(scan, rng, tiers, image_ids, None)


def _finish(scan: GeneratedScan, rng: np.random.Generator, tiers: np.ndarray, image_ids: np.ndarray,
            stacked: dict[str, np.ndarray] | None) -> GeneratedScan:
    """Meta arrays, statistics and config.json: everything but the per-trial files."""
    spec = scan.spec
    n, N = spec.n_trials, spec.n_neurons
    trial_idx = rng.permutation(n)
    if spec.hashed_trial_idx:
        trial_idx = np.array([f"{rng.integers(0, 2**63):016x}{t:016x}" for t in trial_idx])
    meta_trials = {
        "tiers": tiers,
        spec.image_id_file: image_ids,
        "frame_image_class": np.where(tiers == "test", "imagenet_test", "imagenet"),
        "trial_idx": trial_idx,
        "frame_trial_ts": np.array([f"Timestamp('2019-07-08 13:{(t // 60) % 60:02d}:{t % 60:02d}')"
                                    for t in range(n)]),
    }
    if spec.extra_trial_meta:
        meta_trials.update({
            "album": np.where(tiers == "test", "test_album", "train_album"),
            "frame_presentation_time": rng.uniform(0.49, 0.51, n),
            "frame_pre_blank_period": rng.uniform(0.3, 0.5, n),
            "condition_hash": np.array([f"{rng.integers(0, 2**40):010x}" for _ in range(n)]),
            "animal_id": np.full(n, spec.animal_id),
            "session": np.full(n, spec.session),
            "scan_idx": np.full(n, spec.scan_idx),
        })
    for name, array in meta_trials.items():
        scan.arrays[f"meta/trials/{name}.npy"] = array

    meta_neurons = {
        "unit_ids": np.sort(rng.choice(np.arange(1, 3 * N + 1), N, replace=False)).astype(np.int64),
        "area": rng.choice(AREAS, N),
        "layer": rng.choice(LAYERS, N),
        "cell_motor_coordinates": rng.integers(-500, 500, size=(N, 3)).astype(np.int64),
        "animal_ids": np.full(N, spec.animal_id),
        "sessions": np.full(N, spec.session),
        "scan_idx": np.full(N, spec.scan_idx),
    }
    for name in spec.extra_neuron_meta:
        meta_neurons[name] = rng.normal(size=N)
    for name, array in meta_neurons.items():
        scan.arrays[f"meta/neurons/{name}.npy"] = array

    _add_statistics(scan, stacked)
    if spec.config_json:
        scan.other["config.json"] = json.dumps({"links": {}}).encode()
    return scan


def _add_statistics(scan: GeneratedScan, matrices: dict[str, np.ndarray] | None = None) -> None:
    spec = scan.spec
    for key in ("images", "responses", "behavior", "pupil_center"):
        if matrices is not None:
            stacked = matrices[key]
            if key == "images":  # a scalar per statistic: a pixel sample keeps full-size scans cheap
                stacked = stacked.reshape(-1)[::97].astype(np.float64)
            else:
                stacked = stacked.astype(np.float64)
        else:
            stacked = np.stack([a for p, a in scan.arrays.items() if p.startswith(f"data/{key}/")]).astype(np.float64)
        stacked = stacked.reshape(len(stacked), -1) if key != "images" else stacked
        for source in ("all", spec.statistics_folder):
            for stat, fn in (("mean", np.mean), ("std", np.std), ("min", np.min),
                             ("max", np.max), ("median", np.median)):
                if key == "images":
                    value = np.asarray(fn(stacked))
                else:
                    value = fn(stacked, axis=0)
                    value = value.reshape(-1)
                scan.arrays[f"meta/statistics/{key}/{source}/{stat}.npy"] = value.astype(np.float32)


def write_zip(scan: GeneratedScan, path: str | Path) -> Path:
    """Write the scan as a zip, laid out as the spec says (top folder, junk)."""
    path = Path(path)
    spec = scan.spec
    prefix = f"{spec.name}/" if spec.top_folder else ""
    with zipfile.ZipFile(path, "w", compression=spec.compression) as zf:
        for rel, data in scan.files().items():
            zf.writestr(prefix + rel, data)
        if spec.junk:
            zf.writestr(f"__MACOSX/{prefix}._config.json", b"\x00\x05\x16\x07junk")
            zf.writestr(f"{prefix}.DS_Store", b"Bud1junk")
            zf.writestr(f"{prefix}data/images/.DS_Store", b"Bud1junk")
    return path


def write_folder(scan: GeneratedScan, path: str | Path) -> Path:
    """Write the scan as an unpacked folder (the scan root is ``path`` itself)."""
    path = Path(path)
    for rel, data in scan.files().items():
        target = path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    if scan.spec.junk:
        (path / ".DS_Store").write_bytes(b"Bud1junk")
    return path


EXAMPLE_TEST_FRACTION = 0.1
"""About 10% of an example scan's trials are test trials, each test image shown 10 times."""


def example_specs(count: int, n_trials: int = 600, n_neurons: int = 200,
                  image_size: tuple[int, int] = (144, 256), seed: int | None = None) -> list[ScanSpec]:
    """``count`` example scans of different animals, with image-driven responses.

    Keys (animal, session, scan) are drawn from ``seed``; without one, from fresh entropy,
    so scans made by separate calls do not collide in one database.
    """
    rng = np.random.default_rng(seed)
    animals = rng.choice(np.arange(10_000, 100_000), size=count, replace=False)
    n_test_images = max(1, round(n_trials * EXAMPLE_TEST_FRACTION / TEST_REPEATS))
    return [ScanSpec(animal_id=int(animal), session=int(rng.integers(1, 30)), scan_idx=int(rng.integers(1, 30)),
                     seed=int(rng.integers(0, 1_000_000)), n_trials=n_trials, n_neurons=n_neurons,
                     image_shape=(1, *image_size), n_test_images=n_test_images, responsive=True)
            for animal in animals]


def write_example(directory: str | Path, count: int = 1, **options) -> list[Path]:
    """Write ``count`` example scan zips (see ``example_specs``) into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    return [write_zip(generate(spec), directory / f"{spec.name}.zip") for spec in example_specs(count, **options)]



# -- dynamic (video) scans --------------------------------------------------------------------

DYNAMIC_TIERS = ("train", "oracle", "live_test_main", "live_test_bonus", "final_test_main", "final_test_bonus")
ORACLE_REPEATS = 10


@dataclass(frozen=True)
class VideoSpec:
    """A Sensorium 2023-style dynamic scan; the defaults give a small one in every tier."""

    animal_id: int = 29515
    session: int = 10
    scan_idx: int = 1
    n_trials: int = 36
    n_neurons: int = 20
    video_shape: tuple[int, int] = (36, 64)
    n_frames: int = 40
    """T, the padded length every trial file has."""
    min_length: int = 20
    """Shortest valid length; each trial's length is drawn from min_length..n_frames."""
    video_dtype: str = "float32"
    response_dtype: str = "float32"
    behavior_dtype: str = "float32"
    n_oracle_videos: int = 2
    trial_idx: bool = True
    image_id_file: str | None = "frame_image_id"
    none_tier: bool = True
    zero_test_responses: bool = True
    zero_behavior: bool = False
    top_folder: bool = True
    junk: bool = False
    scalar_video_statistics: bool = False
    """Video statistics as scalars (shape ``()``), as some releases write them."""
    seed: int = 0
    compression: int = zipfile.ZIP_DEFLATED

    @property
    def name(self) -> str:
        digest = f"{self.animal_id:08x}{self.session:04x}{self.scan_idx:04x}{self.seed:016x}"[:32]
        return f"dynamic{self.animal_id}-{self.session}-{self.scan_idx}-Video-{digest}"

    @property
    def key(self) -> str:
        return f"{self.animal_id}-{self.session}-{self.scan_idx}"

    # what write_zip / write_folder read of a spec
    statistics_folder = "stimulus_frame"
    config_json = True

    def with_(self, **changes) -> "VideoSpec":
        return replace(self, **changes)


def dynamic_tiers(spec: VideoSpec) -> np.ndarray:
    """Oracle videos repeated ORACLE_REPEATS times (as many as fit), one trial per test tier,
    a ``none`` trial when asked, train for the rest."""
    tiers = ["train"] * spec.n_trials
    oracle = min(spec.n_oracle_videos * ORACLE_REPEATS, spec.n_trials - len(DYNAMIC_TIERS))
    position = 0
    for _ in range(max(oracle, 0)):
        tiers[position] = "oracle"
        position += 1
    for tier in DYNAMIC_TIERS[2:] + (("none",) if spec.none_tier else ()):
        tiers[position] = tier
        position += 1
    return np.array(tiers)


def generate_dynamic(spec: VideoSpec) -> GeneratedScan:
    """Videos (H, W, T), responses (N, T), behavior and pupil_center (2, T), NaN after each
    trial's valid length; oracle videos repeat with identical frames (and length)."""
    rng = np.random.default_rng(spec.seed)
    n, neurons, frames = spec.n_trials, spec.n_neurons, spec.n_frames
    scan = GeneratedScan(spec)  # type: ignore[arg-type]
    tiers = dynamic_tiers(spec)
    oracle_rows = np.flatnonzero(tiers == "oracle")
    video_ids = np.arange(1000, 1000 + n, dtype=np.int64)
    video_ids[oracle_rows] = oracle_rows % max(spec.n_oracle_videos, 1)
    lengths = rng.integers(spec.min_length, frames + 1, size=n)
    oracle_lengths = rng.integers(spec.min_length, frames + 1, size=max(spec.n_oracle_videos, 1))
    lengths[oracle_rows] = oracle_lengths[video_ids[oracle_rows]]
    lengths[np.flatnonzero(tiers == "train")[:3]] = frames  # time-resolved statistics defined at every frame
    order = rng.permutation(n)
    h, w = spec.video_shape
    for i in range(n):
        length = int(lengths[i])
        video_rng = np.random.default_rng(5_000_000 + int(video_ids[i]) + spec.seed * 7919)
        video = np.full((h, w, frames), np.nan, dtype=spec.video_dtype)
        video[:, :, :length] = video_rng.uniform(0, 255, (h, w, length)).round(1)
        responses = np.full((neurons, frames), np.nan, dtype=spec.response_dtype)
        responses[:, :length] = rng.gamma(0.5, 1.0, (neurons, length)) * (rng.random((neurons, length)) > 0.3)
        behavior = np.full((2, frames), np.nan, dtype=spec.behavior_dtype)
        behavior[:, :length] = rng.normal(1.0, 0.3, (2, length))
        pupil = np.full((2, frames), np.nan, dtype=spec.behavior_dtype)
        pupil[:, :length] = rng.normal(0.0, 1.0, (2, length))
        if spec.zero_test_responses and "test" in tiers[i]:
            responses[:, :length] = 0
        if spec.zero_behavior:
            behavior[:, :length] = 0
            pupil[:, :length] = 0
        scan.arrays[f"data/videos/{i}.npy"] = video
        scan.arrays[f"data/responses/{i}.npy"] = responses
        scan.arrays[f"data/behavior/{i}.npy"] = behavior
        scan.arrays[f"data/pupil_center/{i}.npy"] = pupil
    meta = scan.arrays
    meta["meta/trials/tiers.npy"] = tiers
    if spec.trial_idx:
        meta["meta/trials/trial_idx.npy"] = order.astype(np.int64)
    if spec.image_id_file:
        meta[f"meta/trials/{spec.image_id_file}.npy"] = video_ids
    meta["meta/trials/condition_hash.npy"] = np.array([f"c{v:06d}" for v in video_ids])
    meta["meta/neurons/unit_ids.npy"] = np.arange(1, neurons + 1, dtype=np.int64)
    meta["meta/neurons/area.npy"] = np.array([AREAS[i % 2] for i in range(neurons)])
    meta["meta/neurons/layer.npy"] = np.array([LAYERS[i % 2] for i in range(neurons)])
    meta["meta/neurons/cell_motor_coordinates.npy"] = rng.integers(0, 500, (neurons, 3)).astype(np.int64)
    meta["meta/neurons/animal_ids.npy"] = np.full(neurons, spec.animal_id)
    _add_frame_statistics(scan)
    if spec.top_folder:
        scan.other["config.json"] = json.dumps({"links": {}}).encode()
    return scan


def _add_frame_statistics(scan: GeneratedScan) -> None:
    """Time-resolved statistics over trials (NaN padding ignored), as the 2023 release ships them."""
    for key in ("videos", "responses", "behavior", "pupil_center"):
        stacked = np.stack([a for p, a in scan.arrays.items() if p.startswith(f"data/{key}/")]).astype(np.float64)
        with np.errstate(all="ignore"), _quiet():
            for source in ("all", "stimulus_frame"):
                for stat, fn in (("mean", np.nanmean), ("std", np.nanstd), ("min", np.nanmin),
                                 ("max", np.nanmax), ("median", np.nanmedian)):
                    scalar = key == "videos" and scan.spec.scalar_video_statistics
                    value = fn(stacked) if scalar else fn(stacked, axis=0)
                    scan.arrays[f"meta/statistics/{key}/{source}/{stat}.npy"] = np.asarray(value, np.float32)


def _quiet():
    import warnings
    manager = warnings.catch_warnings()
    warnings.simplefilter("ignore", RuntimeWarning)
    return manager


def write_dynamic_example(directory: str | Path, count: int = 1, n_trials: int = 700, n_neurons: int = 8000,
                          n_frames: int = 315, video_shape: tuple[int, int] = (36, 64),
                          seed: int | None = None) -> list[Path]:
    """``count`` dynamic example scans of different animals as zips, in every 2023 tier."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    animals = rng.choice(np.arange(10_000, 100_000), size=count, replace=False)
    specs = [VideoSpec(animal_id=int(a), session=int(rng.integers(1, 30)), scan_idx=int(rng.integers(1, 30)),
                       seed=int(rng.integers(0, 1_000_000)), n_trials=n_trials, n_neurons=n_neurons,
                       n_frames=n_frames, min_length=min(300, n_frames) * 2 // 3, video_shape=video_shape)
             for a in animals]
    return [write_zip(generate_dynamic(spec), directory / f"{spec.name}.zip") for spec in specs]
