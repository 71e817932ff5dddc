"""The ways people load a scan today, timed on the same files as scandb.

* extracting the zip (``unzip``, else ``zipfile.extractall``),
* neuralpredictors' ``FileTreeDataset``: one ``np.load`` per trial and key from the
  extracted folder (its ``__getitem__`` replicated line for line, so neither torch nor
  the package, which does not import on Python >= 3.10, is needed),
* one ``np.load`` of a single ``.npy`` holding the whole matrix: the limit.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np

DATA_KEYS = ("images", "responses", "behavior", "pupil_center")


def extract(zip_path: Path, destination: Path) -> Path:
    """Unpack a scan zip; returns the scan root (the folder holding data/ and meta/)."""
    if destination.exists():
        shutil.rmtree(destination)
    destination.mkdir(parents=True)
    if shutil.which("unzip"):
        subprocess.run(["unzip", "-q", str(zip_path), "-d", str(destination)], check=True)
    else:
        with zipfile.ZipFile(zip_path) as zf:
            zf.extractall(destination)
    inner = [p for p in destination.iterdir() if (p / "data").is_dir()]
    return inner[0] if inner else destination


class FileTreeLoop:
    """What ``FileTreeDataset(root, *keys)[i]`` does per item, without caching.

    Per item and key: list meta/trials (its ``trial_info.keys()``), read config.json for
    links (``resolve_data_path``), check the folder, ``np.load`` the trial's file.
    """

    def __init__(self, root: Path, *keys: str):
        self.root = root
        self.keys = keys or DATA_KEYS
        config = root / "config.json"
        if not config.exists():  # FileTreeDataset writes one into the dataset folder
            config.write_text(json.dumps({"links": {}}))

    def _trial_info_keys(self) -> list[str]:
        return [e.stem for e in (self.root / "meta/trials").glob("*")]

    def _data_path(self, key: str) -> Path:
        with open(self.root / "config.json") as f:
            links = json.load(f).get("links", {})
        path = self.root / "data" / links.get(key, key)
        if not path.exists() or not path.is_dir():
            raise FileNotFoundError(path)
        return path

    def __getitem__(self, item: int) -> tuple[np.ndarray, ...]:
        out = []
        for key in self.keys:
            if key in self._trial_info_keys():
                out.append(np.load(self.root / "meta/trials" / f"{key}.npy")[item:item + 1])
            else:
                out.append(np.load(self._data_path(key) / f"{item}.npy"))
        return tuple(out)

    def stack(self, items) -> dict[str, np.ndarray]:
        """A batch as a DataLoader's default collate builds it: one stacked array per key."""
        points = [self[i] for i in items]
        return {key: np.stack([p[k] for p in points]) for k, key in enumerate(self.keys)}


def tier_rows(root: Path, tier: str) -> np.ndarray:
    return np.flatnonzero(np.load(root / "meta/trials/tiers.npy") == tier)
