"""Meta files kept as files: a scan's large files outside data/, byte for byte, by sha256.

A dynamic scan's statistics are time-resolved (responses ``(N, T)``, videos ``(H, W, T)``):
16 M values for a full-size mouse. Held as rows, an open DuckDB transaction kept them in
memory at several times their size and the ingest missed its memory target (BENCHMARKS.md,
Numbers behind the code: meta files). So
these members are written here, named by the sha256 of their bytes, and the ``scan_files``
row of each names its file (``stored_as``) instead of holding its content. Written under a
temporary name and renamed, removed again if the ingest rolls back.
"""

from __future__ import annotations

import hashlib
from pathlib import Path, PurePosixPath

from .base import Folder, Store, as_folder

FOLDER = "meta"


def stored_name(raw: bytes, member: str) -> str:
    """sha256 of the bytes, with the member's suffix (``.npy``)."""
    return hashlib.sha256(raw).hexdigest() + PurePosixPath(member).suffix


class MetaStore(Store):
    """Files under ``<store>/meta/``, referenced by their key (what ``scan_files.stored_as``
    holds)."""

    prefix = FOLDER
    pattern = f"{FOLDER}/*"

    def __init__(self, folder: Folder | Path):
        self.folder = as_folder(folder)
        self.created: list[Path] = []
        """Files this object wrote: removed again if the ingest rolls back."""

    def key_for(self, name: str) -> str:
        """The key of the file named ``name``: ``meta/<name>``."""
        return f"{FOLDER}/{name}"

    def put(self, raw: bytes, member: str) -> str:
        """Store these bytes (of scan member ``member``) unless an equal file is there; returns its key."""
        key = self.key_for(stored_name(raw, member))
        if not self.folder.exists(key):
            self.folder.put(key, raw)
            self.created.append(self.folder.path(key))
        return key


def intact(folder: Folder, key: str) -> bool:
    """The file's bytes still hash to its name."""
    with folder.open(key) as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    return PurePosixPath(key).name.split(".")[0] == digest


def stored_content(folder: Folder, key: str) -> bytes:
    """The bytes of a kept meta file; one that cannot be read is a DatabaseError naming it."""
    from ..errors import DatabaseError
    try:
        return folder.read(key)
    except OSError as exc:
        raise DatabaseError(f"{folder.path(key)}: meta file unreadable ({exc.strerror or exc}); "
                            "run 'scandb verify'") from None
