"""An experanto session out of the database: its folder (or tar) as it was shipped, bit for bit.

A session is one continuous recording whose sequences every trial shares, so it is exported
whole: every file under its relative name, read from ``scan_files`` and the store through
``query/sessions.StoredFiles`` (the same view ``db.sample`` reads), streamed in chunks. The
result ingests again as the same session (the content digest over names and bytes is
unchanged), and experanto reads it as it read the original.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ..errors import UsageError
from ..query.sessions import stored_files
from ..session.writing import write_folder, write_tar


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
            write_tar(partial, target.stem, files.names(), files.size, files.chunks)
        else:
            write_folder(partial, files.names(), files.chunks)
        partial.rename(target)
    except BaseException:
        if partial.is_dir():
            shutil.rmtree(partial, ignore_errors=True)
        else:
            partial.unlink(missing_ok=True)
        raise
    return target
