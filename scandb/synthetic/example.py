"""What ``scandb example`` writes: a few scans of different animals, ready to ingest.

The quickstart's data lives in the package (the CLI writes it for users); its sizes
are the CLI's defaults. Static examples use the image-driven model (model.py), so an
analysis of them has a signal to find; dynamic examples cover every 2023 tier; experanto
examples are sessions in the format of the OmniMouse / Sensorium-XL release.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .dynamic import VideoSpec, generate_dynamic
from .experanto import SessionSpec, generate_session, write_session_tar
from .files import write_zip
from .static import TEST_REPEATS, ScanSpec, generate

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


def dynamic_example_specs(count: int, n_trials: int = 60, n_neurons: int = 200, n_frames: int = 315,
                          video_shape: tuple[int, int] = (36, 64), seed: int | None = None) -> list[VideoSpec]:
    """``count`` dynamic example scans of different animals, in every 2023 tier.

    Trials last 2/3 of ``n_frames`` (at most 200 frames) to all of it; keys are drawn as
    in ``example_specs``.
    """
    rng = np.random.default_rng(seed)
    animals = rng.choice(np.arange(10_000, 100_000), size=count, replace=False)
    return [VideoSpec(animal_id=int(a), session=int(rng.integers(1, 30)), scan_idx=int(rng.integers(1, 30)),
                      seed=int(rng.integers(0, 1_000_000)), n_trials=n_trials, n_neurons=n_neurons,
                      n_frames=n_frames, min_length=min(300, n_frames) * 2 // 3, video_shape=video_shape)
            for a in animals]


def write_dynamic_example(directory: str | Path, count: int = 1, **options) -> list[Path]:
    """Write ``count`` dynamic example scan zips (see ``dynamic_example_specs``) into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    return [write_zip(generate_dynamic(spec), directory / f"{spec.name}.zip")
            for spec in dynamic_example_specs(count, **options)]


def experanto_example_specs(count: int, n_neurons: int = 200, stimulus: str = "video",
                            frame_shape: tuple[int, int] = (36, 64), seed: int | None = None) -> list[SessionSpec]:
    """``count`` experanto sessions of different animals: responses at 30 Hz, eye tracker at
    20 Hz, treadmill at 100 Hz, each starting before the screen, per-neuron phase shifts,
    NaN blinks, 10 train stimuli and 2 test stimuli shown 5 times; keys drawn as in
    ``example_specs``."""
    rng = np.random.default_rng(seed)
    animals = rng.choice(np.arange(10_000, 100_000), size=count, replace=False)
    return [SessionSpec(animal_id=int(a), session=int(rng.integers(1, 30)), scan_idx=int(rng.integers(1, 30)),
                        seed=int(rng.integers(0, 1_000_000)), n_neurons=n_neurons, responses_rate=30.0,
                        eye_tracker_rate=20.0, treadmill_rate=100.0, stimulus=stimulus, n_train=10,
                        n_test_stimuli=2, n_repeats=5, n_validation=2, video_frames=60, frame_shape=frame_shape)
            for a in animals]


def write_experanto_example(directory: str | Path, count: int = 1, **options) -> list[Path]:
    """Write ``count`` experanto sessions (see ``experanto_example_specs``) into ``directory``,
    one tar each, as the release ships them."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    return [write_session_tar(generate_session(spec), directory / f"{spec.folder_name}.tar")
            for spec in experanto_example_specs(count, **options)]
