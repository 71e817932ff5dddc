"""A stored experanto session, opened again from the database and its store.

``StoredFiles`` presents the session's files as they were shipped, under their relative
names: small files from ``scan_files``, each sequence's data from its store array (a
``data.mem`` as the bytes after the stored `.npy` header), each stimulus from the image
store. ``scandb.session.read_session`` then opens it exactly as it opens the source folder,
so sampling runs the same code on the same bytes, memory-mapped from the store.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..errors import DatabaseError, UsageError
from ..session.files import CHUNK, SessionFiles, _empty_or
from ..session.modalities import Sequence
from ..session.session import Session, read_session
from ..source import npyfile


class StoredFiles(SessionFiles):
    def __init__(self, label: str, folder_name: str, inline: dict[str, bytes],
                 on_disk: dict[str, tuple[Path, int, int]], nan_rows: dict[str, np.ndarray] | None = None):
        self.label = label
        self.nan_rows = nan_rows or {}
        """Per sequence, its rows holding a NaN as ingest found them (table ``nan_rows``)."""
        self.folder_name = folder_name
        self._inline = inline
        self._on_disk = on_disk
        """name -> (file, offset of the member's bytes in it, size)."""

    def names(self) -> list[str]:
        return sorted({*self._inline, *self._on_disk})

    def size(self, name: str) -> int:
        return len(self._inline[name]) if name in self._inline else self._on_disk[name][2]

    def read(self, name: str, limit: int) -> bytes:
        if name in self._inline:
            return self._inline[name]
        path, offset, size = self._on_disk[name]
        self._check_limit(name, size, limit)
        return self._pread(name, path, size, offset)

    def head(self, name: str, n: int) -> bytes:
        if name in self._inline:
            return self._inline[name][:n]
        path, offset, size = self._on_disk[name]
        return self._pread(name, path, min(n, size), offset)

    def chunks(self, name: str, size: int = CHUNK):
        if name in self._inline:
            yield self._inline[name]
            return
        path, offset, total = self._on_disk[name]
        for start in range(0, total, size):
            yield self._pread(name, path, min(size, total - start), offset + start)

    def memmap(self, name, dtype, shape, offset=0, order="C"):
        if name in self._inline:
            count = int(np.prod(shape, dtype=np.int64))
            return np.frombuffer(self._inline[name], dtype=dtype, count=count, offset=offset).reshape(shape,
                                                                                                      order=order)
        path, base, _ = self._on_disk[name]
        return _empty_or(shape, dtype, lambda: np.memmap(path, dtype=dtype, mode="r", offset=base + offset,
                                                         shape=shape, order=order))

    def _pread(self, name: str, path: Path, n: int, offset: int) -> bytes:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            raise DatabaseError(f"{path}: store file of {self.label} ({name}) unreadable "
                                f"({exc.strerror or exc}); run 'scandb verify'") from None
        try:
            return os.pread(fd, n, offset)
        finally:
            os.close(fd)


def stored_files(db, scan_key: str) -> StoredFiles:
    """The files of a session in the database, by their names in the session."""
    conn, store = db.conn, db.store
    row = conn.execute("SELECT name, kind FROM scans WHERE scan_key = ?", [scan_key]).fetchone()
    if row is None:
        raise UsageError(f"{db.name}: no scan {scan_key!r}")
    if row[1] != "experanto":
        raise UsageError(f"{db.name}: {scan_key} is a {row[1]} scan, not an experanto session; "
                         "db.sample reads sessions (db.fetch reads scans)")
    inline: dict[str, bytes] = {}
    on_disk: dict[str, tuple[Path, int, int]] = {}
    for path, content, stored_as in conn.execute(
            "SELECT path, content, stored_as FROM scan_files WHERE scan_key = ?", [scan_key]).fetchall():
        if stored_as is None:
            inline[path] = bytes(content)
        else:
            file = store.path(stored_as)
            on_disk[path] = (file, 0, _size(file))
    for name, meta, key in conn.execute(
            "SELECT name, meta, path FROM modalities WHERE scan_key = ? AND path IS NOT NULL", [scan_key]).fetchall():
        meta = json.loads(meta)
        mem = bool(meta.get("is_mem_mapped", False))
        stem = "spikes" if meta.get("modality") == "spikes" else "data"
        file = store.path(key)
        offset = npyfile.parse_header(_head(file)).data_offset if mem else 0
        on_disk[f"{name}/{stem}.{'mem' if mem else 'npy'}"] = (file, offset, _size(file) - offset)
    for member, path in conn.execute(
            "SELECT DISTINCT st.stimulus_file, i.path FROM stimulus_trials st JOIN trials t USING (scan_key, trial_id) "
            "JOIN images i USING (image_hash) WHERE st.scan_key = ? AND st.stimulus_file IS NOT NULL",
            [scan_key]).fetchall():
        file = store.path(path)
        on_disk[member] = (file, 0, _size(file))
    nan_rows = {name: np.asarray(rows, dtype=np.int64) for name, rows in conn.execute(
        "SELECT modality, rows FROM nan_rows WHERE scan_key = ?", [scan_key]).fetchall()}
    return StoredFiles(f"{db.name}: session {scan_key}", row[0], inline, on_disk, nan_rows)


def open_stored_session(db, scan_key: str) -> Session:
    """The stored session, opened as ``open_session`` opens its folder."""
    return session_of(stored_files(db, scan_key))


def session_of(files: StoredFiles) -> Session:
    """The session these stored files make, its sequences knowing their NaN rows."""
    session = read_session(files, files.label)
    for name, rows in files.nan_rows.items():
        modality = session.modalities.get(name)
        if isinstance(modality, Sequence):
            modality.nan_rows = rows
    return session


def _size(file: Path) -> int:
    try:
        return file.stat().st_size
    except OSError as exc:
        raise DatabaseError(f"{file}: store file missing or unreadable ({exc.strerror or exc}); "
                            "run 'scandb verify'") from None


def _head(file: Path) -> bytes:
    with open(file, "rb") as f:
        return f.read(npyfile.MAX_HEADER + 12)
