"""Files in the store that no row references: left by a writer that was killed between its
commit and deleting files, or half-written by one killed mid-ingest."""

from __future__ import annotations

from pathlib import Path

from ..catalog.database import Database
from ..store.base import Store, collect_garbage, unreferenced
from ..store.frames import FrameStore
from ..store.images import ImageStore
from ..store.matrices import MatrixStore
from ..store.meta import MetaStore


def referenced_images(db: Database) -> set[str]:
    return {row[0] for row in db.conn.execute("SELECT image_hash FROM images").fetchall()}


def referenced_matrices(db: Database) -> set[str]:
    return {row[0] for row in db.conn.execute("SELECT path FROM response_matrices").fetchall()}


def referenced_meta_files(conn) -> set[str]:
    """The meta files ``scan_files`` rows name."""
    return {r[0] for r in conn.execute("SELECT stored_as FROM scan_files WHERE stored_as IS NOT NULL").fetchall()}


def stores_and_references(db: Database) -> list[tuple[Store, set[str]]]:
    """Each store beside the database, with the keys its rows reference."""
    images = referenced_images(db)
    return [(ImageStore(db.image_dir), images),
            (MatrixStore(db.image_dir), referenced_matrices(db)),
            (FrameStore(db.image_dir), images),
            (MetaStore(db.image_dir), referenced_meta_files(db.conn))]


def orphan_files(db: Database) -> list[Path]:
    """Files of any store no row references, and half-written temporaries."""
    orphans = []
    for store, referenced in stores_and_references(db):
        orphans += sorted(unreferenced(store, referenced, db.garbage_age))
    return orphans


def collect_orphans(db: Database) -> int:
    """Remove files no row references (left by a writer that was killed); on a lake only
    those old enough not to be another ingest's files in flight (``Database.garbage_age``)."""
    return collect_garbage(stores_and_references(db), db.garbage_age)
