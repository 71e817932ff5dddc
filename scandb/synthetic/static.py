"""Synthetic Sensorium 2022-style static scans: a spec, and the arrays it generates.

The data is random but shaped like the real thing: sparse non-negative responses, grey
images, test images repeated ten times and shared across scans (same image id, same
pixels), statistics and metadata as released. Small scans are drawn trial by trial
(smooth blocky images, gamma noise responses); ``responsive=True`` (what ``scandb
example`` writes) or a ``responses`` model draws whole matrices at once, with natural
images (model.py). The spec's variant flags (image_id_file, hashed_trial_idx,
behavior_2d, statistics_folder, top_folder, junk, ...) are there so the tests can write
every layout real scans have (FORMAT.md, tests/scans.py VARIANTS).
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from .files import GeneratedScan
from .model import image_driven_responses, natural_images

ResponseModel = Callable[[np.random.Generator, np.ndarray, int, str], np.ndarray]
"""``(rng, images, n_neurons, dtype) -> responses (trials, neurons)``, as ``image_driven_responses``."""

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
    responsive: bool = False
    """Responses driven by the images (``image_driven_responses``), generated as whole
    matrices with natural images, instead of per-trial noise."""

    @property
    def name(self) -> str:
        digest = f"{self.animal_id:08x}{self.session:04x}{self.scan_idx:04x}{self.seed:016x}"[:32]
        return f"static{self.animal_id}-{self.session}-{self.scan_idx}-GrayImageNet-{digest}"

    @property
    def key(self) -> str:
        return f"{self.animal_id}-{self.session}-{self.scan_idx}"

    def with_(self, **changes) -> ScanSpec:
        return replace(self, **changes)


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


def _add_whole_matrix_trials(scan: GeneratedScan, rng: np.random.Generator, tiers: np.ndarray,
                             image_ids: np.ndarray, model: ResponseModel) -> dict[str, np.ndarray]:
    """Every per-trial file from whole matrices; returns the matrices (for the statistics)."""
    spec = scan.spec
    n = spec.n_trials
    images = natural_images(rng, n, spec.image_shape, spec.image_dtype)
    test_rows = np.flatnonzero(tiers == "test")
    for image_id in np.unique(image_ids[test_rows]):
        shared = natural_images(np.random.default_rng(1_000_000 + int(image_id)), 1, spec.image_shape,
                                spec.image_dtype)
        images[test_rows[image_ids[test_rows] == image_id]] = shared
    responses = model(rng, images, spec.n_neurons, spec.response_dtype)
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


def generate(spec: ScanSpec, responses: ResponseModel | None = None) -> GeneratedScan:
    """The scan ``spec`` describes, the same arrays for the same spec.

    ``responses`` selects the whole-matrix generation with natural images and that
    response model (the benchmarks pass one); ``spec.responsive`` alone means
    ``image_driven_responses``.
    """
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

    if responses is None and spec.responsive:
        responses = image_driven_responses
    if responses is not None:
        stacked = _add_whole_matrix_trials(scan, rng, tiers, image_ids, responses)
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
