"""experanto's default modality config (``configs/default.yaml``), and merging a user's over it.

Only the keys sampling uses are here: per modality ``interpolation`` (the interpolator's
keyword arguments) and ``transforms.normalization`` (ChunkDataset's normalisation mode).
A user config takes the same keys; each modality's two sub-dicts are merged key by key.
"""

from __future__ import annotations

import copy

DEFAULT_MODALITY_CONFIG: dict[str, dict] = {
    "screen": {"sampling_rate": 30, "chunk_size": 60, "offset": 0,
               "interpolation": {"rescale": True, "rescale_size": [144, 256]},
               "transforms": {"normalization": "normalize"}},
    "responses": {"sampling_rate": 8, "chunk_size": 16, "offset": 0.0,
                  "interpolation": {"interpolation_mode": "nearest_neighbor"},
                  "transforms": {"normalization": "normalize_variance_only"}},
    "eye_tracker": {"sampling_rate": 30, "chunk_size": 60, "offset": 0,
                    "interpolation": {"interpolation_mode": "nearest_neighbor"},
                    "transforms": {"normalization": "normalize"}},
    "treadmill": {"sampling_rate": 30, "chunk_size": 60, "offset": 0,
                  "interpolation": {"interpolation_mode": "nearest_neighbor"},
                  "transforms": {"normalization": "normalize"}},
}


def merged_config(config: dict | None) -> dict[str, dict]:
    """The default config with ``config``'s modalities merged over it (new modalities added)."""
    merged = copy.deepcopy(DEFAULT_MODALITY_CONFIG)
    for name, changes in (config or {}).items():
        target = merged.setdefault(name, {"interpolation": {}, "transforms": {}})
        for key, value in (changes or {}).items():
            if isinstance(value, dict) and isinstance(target.get(key), dict):
                target[key] = {**target[key], **value}
            else:
                target[key] = copy.deepcopy(value)
    return merged
