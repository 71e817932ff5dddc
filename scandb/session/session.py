"""Opening an experanto session (a folder or a tar): its key, modalities and neurons."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from .files import SessionFiles, open_files
from .modalities import Modality, Screen, Sequence, StimulusTrial, TimeIntervals, read_modality
from .parse import read_json, read_npy

NEURON_FILES = {"unit_ids": "unit_ids", "cell_ids": "cell_ids", "roi_ids": "roi_ids",
                "coordinates": "cell_motor_coordinates", "area": "area", "layer": "layer"}
"""Neuron field -> ``responses/meta/<file>.npy`` (exporter-specific; experanto reads none)."""


@dataclass
class Session:
    """An opened session; arrays are memory-mapped from the folder or the tar."""

    path: str
    folder_name: str
    key: str
    meta: dict | None
    """meta.json's contents, None without one."""
    modalities: dict[str, Modality]
    ignored: list[str]
    """Subfolders without a meta.yml (experanto loads no such folder)."""
    _files: SessionFiles = field(repr=False)

    @property
    def screen(self) -> Screen | None:
        screen = self.modalities.get("screen")
        return screen if isinstance(screen, Screen) else None

    @property
    def trials(self) -> list[StimulusTrial]:
        return self.screen.trials if self.screen else []

    @property
    def time_intervals(self) -> dict[str, dict[str, np.ndarray]]:
        """Per time_interval modality, its labels' [start, end) rows."""
        return {name: m.labels for name, m in self.modalities.items() if isinstance(m, TimeIntervals)}

    def neurons(self) -> dict[str, np.ndarray | None]:
        """One row per responses column: unit ids, cell/roi ids, coordinates (N, 3), area and
        layer, each None when the folder has no such file."""
        responses = self.modalities.get("responses")
        if not isinstance(responses, Sequence):
            return {}
        n = responses.n_signals
        found: dict[str, np.ndarray | None] = {}
        for field_name, stem in NEURON_FILES.items():
            path = f"responses/meta/{stem}.npy"
            if not self._files.has(path):
                found[field_name] = None
                continue
            array = read_npy(self._files, path)
            if array.shape[:1] != (n,):
                raise self._files.bad(path, f"shape {array.shape}; responses have {n} neurons")
            found[field_name] = array
        return found

    def close(self) -> None:
        self._files.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def session_key(folder_name: str, meta: dict | None) -> str:
    """The key experanto derives (``ChunkDataset.get_data_key_from_root_folder``): meta.json's
    ``data_key``, else its ``scan_key`` as animal-session-scan, else (meta.json present) the
    ``dynamic…-Video`` part of the folder name, else the folder name."""
    if meta is not None:
        if "data_key" in meta:
            return str(meta["data_key"])
        scan_key = meta.get("scan_key")
        if isinstance(scan_key, dict) and {"animal_id", "session", "scan_idx"} <= scan_key.keys():
            return f"{scan_key['animal_id']}-{scan_key['session']}-{scan_key['scan_idx']}"
        if "dynamic" in folder_name:
            return folder_name.split("dynamic")[1].split("-Video")[0]
    return folder_name


def open_session(path: str | os.PathLike) -> Session:
    """Open and check a session folder or uncompressed tar; raises BadScanError on bad input."""
    return read_session(open_files(path), str(path))


def read_session(files: SessionFiles, path: str) -> Session:
    """Check and open the session these files hold (closed again on bad input)."""
    try:
        meta = read_json(files, "meta.json") if files.has("meta.json") else None
        folders = sorted({n.split("/", 1)[0] for n in files.names() if "/" in n})
        modalities: dict[str, Modality] = {}
        ignored = []
        for folder in folders:
            if files.has(f"{folder}/meta.yml"):
                modalities[folder] = read_modality(files, folder)
            else:
                ignored.append(folder)
        if not modalities:
            raise files.bad(None, "no modality folders (a subfolder with a meta.yml); is this an experanto session?")
        for required in ("screen", "responses", "eye_tracker", "treadmill"):
            if required in ignored:
                raise files.bad(f"{required}/meta.yml", "missing")
        return Session(path, files.folder_name, session_key(files.folder_name, meta), meta, modalities,
                       ignored, files)
    except BaseException:
        files.close()
        raise
