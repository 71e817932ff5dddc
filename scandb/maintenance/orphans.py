"""Which store files rows still reference, and collecting the rest: files left by a writer
killed between its commit and deleting files, or half-written by one killed mid-ingest.

A removed or replaced scan's files stay for the readers that started before (a training
job's workers map them) until ``gc``: on a lake, while any unexpired snapshot references
them; in a database file, while ``released_files`` lists them.
"""

from __future__ import annotations

from datetime import datetime, timezone

from ..catalog import snapshots
from ..catalog.database import Database
from ..store.base import Store, collect_garbage, unreferenced
from ..store.folder import key_of
from ..store.frames import FrameStore
from ..store.images import ImageStore
from ..store.matrices import MatrixStore
from ..store.meta import MetaStore

REFERENCES = {"images": ("images", "image_hash"), "matrices": ("response_matrices", "path"),
              "meta": ("scan_files", "stored_as")}
"""Each store's key column: the table and column whose values name its files."""


def referenced(db: Database, store: str, oldest: int | None = None, released_after: datetime | None = None
               ) -> set[str]:
    """The keys of ``store`` rows reference: in a file, now or as released files (those
    released after ``released_after``, default all); on a lake, in any snapshot from
    ``oldest`` (default: the oldest unexpired one) to the newest."""
    table, column = REFERENCES[store]
    if db.lake is None:
        since = "" if released_after is None else " AND released_at >= ?"
        rows = db.conn.execute(f"SELECT {column} FROM {table} UNION SELECT key FROM released_files "
                               f"WHERE store = ?{since}",
                               [store] + ([released_after] if released_after else [])).fetchall()
        return {row[0] for row in rows}
    if oldest is None:
        oldest = snapshots.oldest_snapshot(db.conn)
    # snapshots older than revision 0011 hold keys with the store folder's name in front
    return {key_of(key) if key else key for key in snapshots.referenced_since(db.conn, table, column, oldest)}


def stores_and_references(db: Database, oldest: int | None = None, released_after: datetime | None = None
                          ) -> list[tuple[Store, set[str]]]:
    """Each store beside the database, with the keys its rows reference (see ``referenced``)."""
    images = referenced(db, "images", oldest, released_after)
    store = db.store
    return [(ImageStore(store), images),
            (MatrixStore(store), referenced(db, "matrices", oldest, released_after)),
            (FrameStore(store), images),  # time-major copies, named by their video's hash
            (MetaStore(store), referenced(db, "meta", oldest, released_after))]


def release_files_of(db: Database, scan_key: str, why: str) -> int:
    """Inside the transaction that deletes a scan's rows, in a database file: list the files
    only this scan uses in ``released_files``, so they stay until ``gc``; returns how many.
    A lake keeps them through its snapshots instead."""
    if db.lake is None:
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        db.conn.execute("""
            INSERT INTO released_files
            SELECT 'images', image_hash, ?, ? FROM (
                SELECT DISTINCT image_hash FROM trials WHERE scan_key = ?
                EXCEPT SELECT image_hash FROM trials WHERE scan_key <> ?)
            UNION ALL
            SELECT 'matrices', path, ?, ? FROM response_matrices WHERE scan_key = ?
            UNION ALL
            SELECT 'meta', stored_as, ?, ? FROM (
                SELECT DISTINCT stored_as FROM scan_files WHERE scan_key = ? AND stored_as IS NOT NULL
                EXCEPT SELECT stored_as FROM scan_files WHERE scan_key <> ? AND stored_as IS NOT NULL)""",
                        [why, now, scan_key, scan_key, why, now, scan_key, why, now, scan_key, scan_key])
        return db.conn.execute("SELECT count(*) FROM released_files WHERE released_by = ? AND released_at = ?",
                               [why, now]).fetchone()[0]
    return 0


def forget_released(db: Database, before: datetime) -> None:
    """Drop the released files listed before ``before`` (their files are deleted next)."""
    db.conn.execute("DELETE FROM released_files WHERE released_at < ?", [before])


def orphan_files(db: Database) -> list[str]:
    """Keys of the files of any store no row references, and of half-written temporaries."""
    orphans = []
    for store, keys in stores_and_references(db):
        orphans += unreferenced(store, keys, db.garbage_age)
    return orphans


def collect_orphans(db: Database) -> int:
    """Remove files no row references (left by a writer that was killed); on a lake only
    those no unexpired snapshot references and old enough not to be another ingest's files
    in flight (``Database.garbage_age``)."""
    return collect_garbage(stores_and_references(db), db.garbage_age)
