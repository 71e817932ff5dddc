"""What every ingest transaction does first, for a scan and for an experanto session alike."""

from __future__ import annotations

from ..catalog.database import Database
from ..catalog.schema import delete_scan_rows
from ..maintenance.orphans import release_files_of


def begin_scan_write(db: Database, scan_key: str, replaced: bool) -> None:
    """Inside an ingest's transaction, before its rows: claim the write, label the commit, and
    for a replacement release the old content's files and delete its rows."""
    db.claim_writes()
    db.label(f"{'replaced' if replaced else 'ingested'} {scan_key}")
    if replaced:
        release_files_of(db, scan_key, f"replaced {scan_key}")
        delete_scan_rows(db.conn, scan_key)
