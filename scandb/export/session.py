"""An experanto session out of the database: its folder (or tar) as it was shipped, bit for bit.

A session is one continuous recording whose sequences every trial shares, so it is exported
whole: every file under its relative name, read from ``scan_files`` and the store through
``query/sessions.StoredFiles`` (the same view ``db.sample`` reads), streamed in chunks. The
result ingests again as the same session (the content digest over names and bytes is
unchanged), and experanto reads it as it read the original.
"""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

from ..errors import UsageError
from ..query.sessions import stored_files

MTIME = 1_700_000_000
"""Fixed member time in an exported tar: the same session gives the same bytes."""


def session_target(db, scan_key: str, out: Path, as_tar: bool) -> Path:
    """Where a session's export goes: ``out/<its folder name>`` (or ``.tar``)."""
    name = db.conn.execute("SELECT name FROM scans WHERE scan_key = ?", [scan_key]).fetchone()[0]
    return out / (f"{name}.tar" if as_tar else name)


def check_whole(db, scan_key: str, selected_ids: list[int], neurons) -> None:
    """A session's export is the whole session: every trial selected, no neuron subset."""
    if neurons is not None:
        raise UsageError(f"session {scan_key}: export writes a whole experanto session (its sequences are "
                         "shared by every trial); leave out --neurons for it")
    every = {r[0] for r in db.conn.execute("SELECT trial_id FROM trials WHERE scan_key = ?", [scan_key]).fetchall()}
    if set(selected_ids) != every or len(selected_ids) != len(every):
        raise UsageError(f"session {scan_key}: the selection has {len(selected_ids)} of its {len(every)} trials once "
                         "each; export writes a whole experanto session, so select each of its trials once: "
                         f"SELECT scan_key, trial_id FROM trials WHERE scan_key = '{scan_key}'")


def write_session(db, scan_key: str, out: Path, as_tar: bool) -> Path:
    """Write the session under ``out`` as its folder (or an uncompressed tar of it, as the
    release ships sessions); returns the path."""
    from . import reserve

    files = stored_files(db.database, scan_key)
    target = session_target(db, scan_key, out, as_tar)
    partial = reserve(target)
    try:
        if as_tar:
            _write_tar(files, partial, target.stem)
        else:
            _write_folder(files, partial)
        partial.rename(target)
    except BaseException:
        if partial.is_dir():
            shutil.rmtree(partial, ignore_errors=True)
        else:
            partial.unlink(missing_ok=True)
        raise
    return target


def _write_folder(files, folder: Path) -> None:
    folder.mkdir()
    for name in files.names():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            for chunk in files.chunks(name):
                f.write(chunk)


def _write_tar(files, path: Path, top: str) -> None:
    """Members under one top folder, sorted, with fixed times and owners."""
    names = files.names()
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for folder in [top, *sorted({f"{top}/{Path(n).parent}" for n in names} - {f"{top}/."})]:
            info = tarfile.TarInfo(folder)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, MTIME
            tar.addfile(info)
        for name in names:
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size, info.mode, info.mtime = files.size(name), 0o644, MTIME
            tar.addfile(info, _ChunkReader(files.chunks(name)))


class _ChunkReader:
    """A file-like ``read`` over a generator of chunks (tarfile copies ``size`` bytes from it
    in small reads: each is a slice of the current chunk, never a copy of the rest)."""

    def __init__(self, chunks):
        self._chunks = iter(chunks)
        self._chunk = memoryview(b"")

    def read(self, n: int = -1) -> bytes:
        parts = []
        while n < 0 or n > 0:
            if not self._chunk:
                chunk = next(self._chunks, None)
                if chunk is None:
                    break
                self._chunk = memoryview(chunk)
            take = len(self._chunk) if n < 0 else min(n, len(self._chunk))
            parts.append(self._chunk[:take])
            self._chunk = self._chunk[take:]
            if n > 0:
                n -= take
        return b"".join(parts)
