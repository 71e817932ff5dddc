"""Fixture generator: small scans in every layout variant of FORMAT.md, written to disk."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from scandb.synthetic import ScanSpec, generate, write_folder, write_zip

VARIANTS: dict[str, dict] = {
    "common": {},
    "no_top_folder": {"top_folder": False},
    "colorframeprojector_ids": {"image_id_file": "colorframeprojector_image_id", "config_json": False},
    "image_id_name": {"image_id_file": "image_id"},
    "hashed_trial_idx": {"hashed_trial_idx": True},
    "behavior_2d": {"behavior_2d": True},
    "float_images": {"image_dtype": "float32"},
    "float64_data": {"response_dtype": "float64", "behavior_dtype": "float64", "image_dtype": "float64"},
    "capital_statistics_folder": {"statistics_folder": "stimulus_Frame"},
    "junk": {"junk": True},
    "extra_neuron_meta": {"extra_neuron_meta": ("snr", "depth_rank")},
    "stored_uncompressed": {"compression": 0},
}
"""Spec changes per variant name; together they cover every variant FORMAT.md lists."""


def spec_for(variant: str = "common", **changes) -> ScanSpec:
    return ScanSpec(**{**VARIANTS[variant], **changes})


def write(spec: ScanSpec, directory: Path, *, folder: bool = False) -> Path:
    """Write a scan as a zip, or as a folder when ``folder``; returns its path."""
    scan = generate(spec)
    if folder:
        return write_folder(scan, directory / spec.name)
    return write_zip(scan, directory / f"{spec.name}.zip")


def make_scan(directory: Path, variant: str = "common", *, folder: bool = False, **changes) -> Path:
    """Write one scan of a variant (a zip, or a folder when ``folder``) and return its path."""
    return write(spec_for(variant, **changes), directory, folder=folder)


# -- what a scan's files hold, read from the generated arrays (never from a database) --------


def stack(arrays: dict, key: str, trials) -> np.ndarray:
    """The trials' ``data/<key>/<trial>.npy`` arrays of a scan, stacked in the given order."""
    return np.stack([arrays[f"data/{key}/{t}.npy"] for t in trials])


@lru_cache(maxsize=64)
def _arrays(spec: ScanSpec) -> dict:
    return generate(spec).arrays


def source(spec: ScanSpec, key: str, trials=None) -> np.ndarray:
    """``stack`` of a spec's generated scan, all its trials unless ``trials``."""
    arrays = _arrays(spec)
    return stack(arrays, key, range(spec.n_trials) if trials is None else trials)
