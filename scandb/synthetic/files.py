"""A generated scan as files, and writing them in the Sensorium layout (a zip or a folder).

One place knows how a scan lands on disk, for static and dynamic scans alike. The
layout variants a spec asks for (a top folder or none, macOS junk, stored or deflated
members) are here so the tests can write every layout real scans have (FORMAT.md).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..source.npyfile import dumps

if TYPE_CHECKING:
    from .dynamic import VideoSpec
    from .static import ScanSpec


@dataclass
class GeneratedScan:
    """The files of a scan by relative path (``data/...``, ``meta/...``), as arrays or bytes."""

    spec: ScanSpec | VideoSpec
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    other: dict[str, bytes] = field(default_factory=dict)

    def files(self) -> dict[str, bytes]:
        out = {path: dumps(array) for path, array in self.arrays.items()}
        out.update(self.other)
        return out


def write_zip(scan: GeneratedScan, path: str | Path) -> Path:
    """Write the scan as a zip, laid out as the spec says (top folder, junk). Deflate at level
    1: generated values are noise that higher levels barely shrink, at 3-4x the time."""
    path = Path(path)
    spec = scan.spec
    prefix = f"{spec.name}/" if spec.top_folder else ""
    level = 1 if spec.compression == zipfile.ZIP_DEFLATED else None
    with zipfile.ZipFile(path, "w", compression=spec.compression, compresslevel=level) as zf:
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
