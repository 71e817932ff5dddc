"""Fixture generator: small experanto sessions in every variant of EXPERANTO_FORMAT.md, on disk."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from scandb.synthetic.experanto import (GeneratedSession, SessionSpec, generate_session, write_session_folder,
                                        write_session_tar)

VARIANTS: dict[str, dict] = {
    "videos": {},
    "images": {"stimulus": "image"},
    "stimuli_names": {"use_stimuli_names": True},
    "no_optional_modalities": {"omit": ("eye_tracker", "treadmill")},
    "tiers_and_spikes": {"tiers_folder": True, "spikes": True},
    "colour": {"colour": True, "stimulus": "image"},
    "no_meta_json": {"meta_json": None, "phase_shifts": False},
    "data_key": {"meta_json": "data_key", "combined_meta": True, "npy_sequences": ("treadmill", "responses")},
    "float64_responses": {"response_dtype": "float64", "neuron_meta": False},
}
"""Spec changes per variant name; together they cover every variant the format note lists."""


def spec_for(variant: str = "videos", **changes) -> SessionSpec:
    return SessionSpec(**{**VARIANTS[variant], **changes})


@lru_cache(maxsize=32)
def generated(spec: SessionSpec) -> GeneratedSession:
    return generate_session(spec)


def make_session(directory: Path, variant: str = "videos", *, tar: bool = False, **changes) -> Path:
    """Write one session (a folder named as the spec says, or a .tar of it) and return its path."""
    spec = spec_for(variant, **changes)
    session = generated(spec)
    if tar:
        return write_session_tar(session, directory / f"{spec.folder_name}.tar")
    return write_session_folder(session, directory / spec.folder_name)
