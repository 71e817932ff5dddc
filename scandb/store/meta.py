"""Meta files kept as files: a scan's large files outside data/, byte for byte, by sha256.

A dynamic scan's statistics are time-resolved (responses ``(N, T)``, videos ``(H, W, T)``):
16 M values for a full-size mouse. Held as rows, an open DuckDB transaction kept them in
memory at about three times their size and the ingest went past 1 GB (BENCHMARKS.md). So
these members are written here, named by the sha256 of their bytes, and the ``scan_files``
row of each names its file (``stored_as``) instead of holding its content. Written under a
temporary name and renamed, removed again if the ingest rolls back.
"""

from __future__ import annotations

import hashlib
from pathlib import Path, PurePosixPath

from .base import TEMPORARY_SUFFIX, Store, write_then_rename

FOLDER = "meta"


def stored_name(raw: bytes, member: str) -> str:
    """sha256 of the bytes, with the member's suffix (``.npy``)."""
    return hashlib.sha256(raw).hexdigest() + PurePosixPath(member).suffix


class MetaStore(Store):
    """Files under ``<image store>/meta/``, keyed by their path relative to the database's
    folder (what ``scan_files.stored_as`` holds)."""

    def __init__(self, store_root: Path):
        self.store_root = Path(store_root)
        self.root = self.store_root / FOLDER
        self.created: list[Path] = []
        """Files this object wrote: removed again if the ingest rolls back."""

    def key(self, name: str) -> str:
        return f"{self.store_root.name}/{FOLDER}/{name}"

    def file(self, key: str) -> Path:
        return self.root / PurePosixPath(key).name

    def put(self, raw: bytes, member: str) -> str:
        """Store these bytes (of scan member ``member``) unless an equal file is there; returns its key."""
        key = self.key(stored_name(raw, member))
        target = self.file(key)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            write_then_rename(target, raw)
            self.created.append(target)
        return key

    def files(self) -> dict[str, Path]:
        if not self.root.is_dir():
            return {}
        return {self.key(p.name): p for p in self.root.iterdir() if p.is_file() and not p.name.startswith(".")}

    def temporaries(self) -> list[Path]:
        return list(self.root.glob(f".*{TEMPORARY_SUFFIX}")) if self.root.is_dir() else []


def intact(path: Path) -> bool:
    """The file's bytes still hash to its name."""
    with open(path, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    return path.name.split(".")[0] == digest



def stored_content(folder: Path, key: str) -> bytes:
    """The bytes of a kept meta file (``key`` relative to the database's ``folder``); one
    that cannot be read is a DatabaseError naming it."""
    from ..errors import DatabaseError
    path = folder / key
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DatabaseError(f"{path}: meta file unreadable ({exc.strerror or exc}); run 'scandb verify'") from None
