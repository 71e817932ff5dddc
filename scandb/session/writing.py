"""A session's files written out as a folder or as an uncompressed tar of one top folder.

Used by the generator (``synthetic/experanto.py``) and by export (``export/session.py``):
files are given by name, size and an iterator of byte blocks, so a stored session streams
from the store as a generated one streams from its generator. A tar's members are sorted,
with fixed times and modes: the same files give the same bytes.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

MTIME = 1_700_000_000
"""Every tar member's time."""
COPY_BUFFER = 8 << 20


def write_folder(path: str | Path, names: Iterable[str], blocks: Callable[[str], Iterable[bytes]]) -> Path:
    """Each file under ``path`` (created), its bytes from ``blocks(name)``."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    for name in names:
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as f:
            for block in blocks(name):
                f.write(block)
    return path


def write_tar(path: str | Path, top: str, names: Iterable[str], size: Callable[[str], int],
              blocks: Callable[[str], Iterable[bytes]]) -> Path:
    """The files under the folder ``top`` (``""``: at the tar's root), sorted."""
    path = Path(path)
    names = sorted(names)
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT, copybufsize=COPY_BUFFER) as tar:
        folders = sorted({str(Path(name).parent) for name in names} - {"."})
        for folder in [""] + folders:
            info = tarfile.TarInfo(f"{top}/{folder}".rstrip("/") if top else folder)
            if not info.name:
                continue
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, MTIME
            tar.addfile(info)
        for name in names:
            info = tarfile.TarInfo(f"{top}/{name}" if top else name)
            info.size, info.mode, info.mtime = size(name), 0o644, MTIME
            tar.addfile(info, io.BufferedReader(BlockReader(blocks(name)), COPY_BUFFER))
    return path


class BlockReader(io.RawIOBase):
    """A read-only file over an iterator of byte blocks (what ``tarfile.addfile`` copies from)."""

    def __init__(self, blocks: Iterable[bytes]):
        self._blocks: Iterator[bytes] = iter(blocks)
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._pending:
            block = next(self._blocks, None)
            if block is None:
                return 0
            self._pending = memoryview(block).cast("B")
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n
