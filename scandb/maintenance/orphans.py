"""Which store files rows still reference, and collecting the rest: files left by a writer
killed between its commit and deleting files, or half-written by one killed mid-ingest.

On a lake a file is referenced while any unexpired snapshot references it: a removed or
replaced scan stays readable at older snapshots, so its files stay until ``gc`` expires them.
"""

from __future__ import annotations

from pathlib import Path

from ..catalog import snapshots
from ..catalog.database import Database
from ..store.base import Store, collect_garbage, unreferenced
from ..store.images import ImageStore
from ..store.matrices import MatrixStore

REFERENCES = {"images": ("images", "image_hash"), "matrices": ("response_matrices", "path")}
"""Each store's key column: the table and column whose values name its files."""


def referenced(db: Database, store: str, oldest: int | None = None) -> set[str]:
    """The keys of ``store`` rows reference: now in a file; in any snapshot from ``oldest``
    (default: the oldest unexpired one) to the newest on a lake."""
    table, column = REFERENCES[store]
    if db.lake is None:
        return {row[0] for row in db.conn.execute(f"SELECT {column} FROM {table}").fetchall()}
    if oldest is None:
        oldest = snapshots.oldest_snapshot(db.conn)
    return snapshots.referenced_since(db.conn, table, column, oldest)


def referenced_images(db: Database) -> set[str]:
    return referenced(db, "images")


def referenced_matrices(db: Database) -> set[str]:
    return referenced(db, "matrices")


def stores_and_references(db: Database, oldest: int | None = None) -> list[tuple[Store, set[str]]]:
    """Each store beside the database, with the keys its rows reference (on a lake: in any
    snapshot from ``oldest``, default the oldest unexpired one)."""
    return [(ImageStore(db.image_dir), referenced(db, "images", oldest)),
            (MatrixStore(db.image_dir), referenced(db, "matrices", oldest))]


def orphan_files(db: Database) -> list[Path]:
    """Files of any store no row references, and half-written temporaries."""
    orphans = []
    for store, keys in stores_and_references(db):
        orphans += sorted(unreferenced(store, keys, db.garbage_age))
    return orphans


def collect_orphans(db: Database) -> int:
    """Remove files no row references (left by a writer that was killed); on a lake only
    those no unexpired snapshot references and old enough not to be another ingest's files
    in flight (``Database.garbage_age``)."""
    return collect_garbage(stores_and_references(db), db.garbage_age)
