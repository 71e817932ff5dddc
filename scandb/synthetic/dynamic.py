"""Synthetic Sensorium 2023-style dynamic (video) scans: NaN-padded trials in every tier.

Its own module because videos differ from images in almost everything a generator
decides: (H, W, T) arrays padded to one length, oracle videos instead of test images,
time-resolved statistics. The spec's variant flags (no trial_idx, no image id file,
zero-filled behavior, scalar video statistics, ...) are there so the tests can write
every layout real dynamic scans have (FORMAT.md).
"""

from __future__ import annotations

import json
import warnings
import zipfile
from dataclasses import dataclass, replace

import numpy as np

from .files import GeneratedScan
from .static import AREAS, LAYERS

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

    def with_(self, **changes) -> VideoSpec:
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
    scan = GeneratedScan(spec)
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
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            for source in ("all", "stimulus_frame"):
                for stat, fn in (("mean", np.nanmean), ("std", np.nanstd), ("min", np.nanmin),
                                 ("max", np.nanmax), ("median", np.nanmedian)):
                    scalar = key == "videos" and scan.spec.scalar_video_statistics
                    value = fn(stacked) if scalar else fn(stacked, axis=0)
                    scan.arrays[f"meta/statistics/{key}/{source}/{stat}.npy"] = np.asarray(value, np.float32)
