"""Packs: a chunk of a static scan's images in one object, for a store on a bucket.

On a bucket every object costs a request to write and another to read: a 2,000-trial scan
stored one image per object is 2,000 PUTs to ingest and a random batch of 128 is 128 GETs
(BENCHMARKS.md, Lab mode on a bucket). Packed, an ingest chunk's new images (up to 256,
~32 MB) are one object, ``packs/<sha256>.pack``: their ``.npy`` files back to back, each
row of ``images`` naming the pack (``path``) and where its file is in it (``pack_offset``,
``pack_length``). A batch then reads byte ranges of a few packs, the ranges of neighbouring
images in one request (``bucket.read_ranges``).

A pack's name is the sha256 of its members' names and lengths in order: the members are
content-named, so equal packs have equal names, and a pack never changes once written. A
local folder keeps images one file each (a file costs no request); nothing packs there.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .base import Folder, Store, as_folder

PREFIX = "packs"
MEMBER_MAX = 1 << 20
"""Images larger than this (videos) stay objects of their own: one is already a large read."""


@dataclass
class Pack:
    """The members of one pack being built: their bytes in order, and where each begins."""

    members: list[bytes] = field(default_factory=list)
    offsets: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Image hash -> (offset, length) of its ``.npy`` file in the pack."""
    size: int = 0

    def add(self, digest: str, raw: bytes) -> None:
        if digest not in self.offsets:
            self.offsets[digest] = (self.size, len(raw))
            self.members.append(raw)
            self.size += len(raw)

    def key(self) -> str:
        names = hashlib.sha256()
        for digest, (_, length) in self.offsets.items():
            names.update(f"{digest}:{length};".encode())
        return f"{PREFIX}/{names.hexdigest()}.pack"

    def data(self) -> bytes:
        return b"".join(self.members)


class PackStore(Store):
    """The packs of a store's medium; rows name them by key (``images.path``)."""

    prefix = PREFIX
    pattern = f"{PREFIX}/*.pack"

    def __init__(self, folder: Folder | Path):
        self.folder = as_folder(folder)


def packed(keys: Iterable[str | None]) -> set[str]:
    """The pack keys among ``images.path`` values (the rest are images' own files)."""
    return {key for key in keys if key is not None and key.startswith(f"{PREFIX}/") and key.endswith(".pack")}
