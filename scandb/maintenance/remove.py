"""Removing a scan: its rows in one transaction, then (in a file) the files no other scan uses.

On a lake the removed scan stays readable at older snapshots, so its files stay too, until
``gc`` expires those snapshots.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from ..catalog.database import Database
from ..catalog.schema import delete_scan_rows
from ..catalog.snapshots import label_commit
from ..catalog.transaction import explain, transaction
from ..errors import DatabaseError, UsageError
from ..store.images import ImageStore
from ..store.base import collect_garbage
from ..store.matrices import MatrixStore
from .orphans import collect_orphans, referenced
from .report import plural


@dataclass
class RemoveResult:
    scan_key: str
    n_trials: int
    files_removed: int
    kept_for_snapshots: bool = False
    """On a lake: the files stay for the snapshots that still hold the scan."""

    def summary(self) -> str:
        removed = f"{self.scan_key}: removed {plural(self.n_trials, 'trial')}"
        if self.kept_for_snapshots:
            return (f"{removed}; its files stay while older snapshots hold it "
                    "('scandb gc --older-than DAYS' frees them)")
        return f"{removed} and {plural(self.files_removed, 'image file')} no other scan uses"


def remove_scan(db: Database, scan_key: str) -> RemoveResult:
    """Delete a scan's rows in one transaction, then the image files no other scan uses.

    DuckDB refuses to delete a parent row in the transaction that deleted the rows
    referencing it ("still referenced by a foreign key", measured on 1.5.6) and has no
    ON DELETE CASCADE; the schema therefore declares no foreign keys (see schema.py), and
    ``verify`` checks what they would have. Files are deleted only after the commit: a
    kill in between leaves orphan files, which the next ``ingest`` or ``remove`` collects.
    """
    found = db.conn.execute("SELECT n_trials FROM scans WHERE scan_key = ?", [scan_key]).fetchone()
    if found is None:
        known = [r[0] for r in db.conn.execute("SELECT scan_key FROM scans ORDER BY 1").fetchall()]
        raise UsageError(f"{db.name}: no scan {scan_key!r} (it holds: {', '.join(known) or 'nothing'})")
    collect_orphans(db)
    matrices = {r[0] for r in db.conn.execute("SELECT path FROM response_matrices WHERE scan_key = ?",
                                              [scan_key]).fetchall()}
    unused = delete_scan(db, scan_key)
    if db.lake is not None:
        return RemoveResult(scan_key, found[0], 0, kept_for_snapshots=True)
    try:
        files_removed = ImageStore(db.image_dir).remove(unused)
        MatrixStore(db.image_dir).remove(matrices)
        collect_garbage([(MatrixStore(db.image_dir), referenced(db, "matrices"))], db.garbage_age)
    except OSError as exc:
        raise DatabaseError(f"{db.name}: removed {scan_key}, but could not delete its image files "
                            f"({exc.strerror or exc}); the next ingest deletes them") from None
    return RemoveResult(scan_key, found[0], files_removed)


def delete_scan(db: Database, scan_key: str) -> set[str]:
    """Every row of the scan, and the images no scan uses any more, in one transaction;
    returns the hashes of those images (their files are still on disk)."""
    try:
        with transaction(db.conn):
            db.claim_writes()
            if db.lake is not None:
                label_commit(db.conn, f"removed {scan_key}")
            delete_scan_rows(db.conn, scan_key)
            unused_rows = "FROM images WHERE image_hash NOT IN (SELECT image_hash FROM trials)"
            unused = {r[0] for r in db.conn.execute(f"SELECT image_hash {unused_rows}").fetchall()}
            db.conn.execute(f"DELETE {unused_rows}")
    except duckdb.Error as exc:
        raise explain(exc, f"{db.name}: removing {scan_key}", rolled_back=True) from None
    return unused
