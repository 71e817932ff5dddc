"""Removing a scan: its rows in one transaction; its files stay until ``gc``.

A training job that started before may still read the scan's files (its workers map them
when they start), and on a lake older snapshots still hold the scan: so removal deletes no
file. ``scandb gc --older-than DAYS`` deletes them once nothing that recent can need them.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from ..catalog.database import Database
from ..catalog.schema import delete_scan_rows
from ..catalog.transaction import explain, transaction
from ..errors import UsageError
from .orphans import collect_orphans, release_files_of
from .report import plural


@dataclass
class RemoveResult:
    scan_key: str
    n_trials: int
    files_kept: int
    """Files only this scan used, kept until ``gc`` (in a database file; a lake's snapshots keep theirs)."""
    lake: bool = False

    def summary(self) -> str:
        removed = f"{self.scan_key}: removed {plural(self.n_trials, 'trial')}"
        if self.lake:
            return (f"{removed}; its files stay while older snapshots hold it "
                    "('scandb gc --older-than DAYS' frees them)")
        return (f"{removed}; {plural(self.files_kept, 'file')} no other scan uses stay for readers that started "
                "before ('scandb gc --older-than DAYS' frees them)")


def remove_scan(db: Database, scan_key: str) -> RemoveResult:
    """Delete a scan's rows in one transaction; its files stay until ``gc``.

    DuckDB refuses to delete a parent row in the transaction that deleted the rows
    referencing it ("still referenced by a foreign key", measured on 1.5.6) and has no
    ON DELETE CASCADE; the schema therefore declares no foreign keys (see schema.py), and
    ``verify`` checks what they would have.
    """
    found = db.conn.execute("SELECT n_trials FROM scans WHERE scan_key = ?", [scan_key]).fetchone()
    if found is None:
        known = [r[0] for r in db.conn.execute("SELECT scan_key FROM scans ORDER BY 1").fetchall()]
        raise UsageError(f"{db.name}: no scan {scan_key!r} (it holds: {', '.join(known) or 'nothing'})")
    collect_orphans(db)
    kept = delete_scan(db, scan_key)
    return RemoveResult(scan_key, found[0], kept, lake=db.has_snapshots)


def delete_scan(db: Database, scan_key: str) -> int:
    """Every row of the scan, and the images no scan uses any more, in one transaction; the
    files only it used are listed as released (a file) or stay with the snapshots (a lake).
    Returns how many files were released."""
    try:
        with transaction(db.conn):
            db.claim_writes()
            db.label(f"removed {scan_key}")
            kept = release_files_of(db, scan_key, f"removed {scan_key}")
            delete_scan_rows(db.conn, scan_key)
            db.conn.execute("DELETE FROM images WHERE image_hash NOT IN (SELECT image_hash FROM trials)")
    except duckdb.Error as exc:
        raise explain(exc, f"{db.name}: removing {scan_key}", rolled_back=True) from None
    return kept
