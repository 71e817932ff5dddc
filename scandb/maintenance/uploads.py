"""Unfinished multipart uploads under a lake's data path on a bucket, for ``gc``.

A writer killed mid-upload, scandb's (a large matrix goes in parts) or DuckDB's (its Parquet
files), leaves an upload the server keeps open: its parts take space, yet are no object,
so no listing of objects shows them and no row can reference them. One that began longer
ago than ``Database.garbage_age`` (the time an ingest on another machine may still be
sending) is dead: ``gc`` aborts it, which deletes its parts. The data path's uploads are
the lake's alone, DuckLake's files and the store's objects both under it.
"""

from __future__ import annotations

from ..catalog.database import Database
from ..store.base import as_folder
from ..store.folder import age_cutoff


def unfinished_uploads(db: Database):
    """The data path's medium, its unfinished uploads old enough to abort, and how many
    younger ones stay (a local folder has none)."""
    medium = as_folder(db.root)
    cutoff = age_cutoff(db.garbage_age) if db.garbage_age > 0 else float("inf")
    found = medium.unfinished_uploads()
    old = sorted((u for u in found if u.started <= cutoff), key=lambda u: (u.key, u.started))
    return medium, old, len(found) - len(old)


def abort_unfinished_uploads(medium, uploads: list) -> int:
    """Abort ``uploads`` (``unfinished_uploads``'); returns how many. A refusal is the
    medium's one line (``bucket._translated``); nothing aborted yet stays for the next gc."""
    return medium.abort(uploads) if uploads else 0
