"""Files in the store that no row references: left by a writer that was killed between its
commit and deleting files, or half-written by one killed mid-ingest."""

from __future__ import annotations

from pathlib import Path

from ..catalog.database import Database
from ..store.images import ImageStore
from ..store.matrices import collect_matrix_garbage, matrix_files, matrix_temporaries


def referenced_images(db: Database) -> set[str]:
    return {row[0] for row in db.conn.execute("SELECT image_hash FROM images").fetchall()}


def referenced_matrices(db: Database) -> set[str]:
    return {row[0] for row in db.conn.execute("SELECT path FROM response_matrices").fetchall()}


def orphan_files(db: Database) -> list[Path]:
    """Image files and response matrices no row references, and half-written temporaries."""
    store = ImageStore(db.image_dir)
    referenced = referenced_images(db)
    orphans = sorted(path for digest, path in store.files().items() if digest not in referenced)
    orphans += sorted(store.temporaries())
    matrices = referenced_matrices(db)
    orphans += sorted(p for rel, p in matrix_files(db.image_dir).items() if rel not in matrices)
    orphans += sorted(matrix_temporaries(db.image_dir))
    return orphans


def collect_orphans(db: Database) -> int:
    """Remove image files and response matrices no row references (left by a writer that
    was killed)."""
    return (ImageStore(db.image_dir).collect_garbage(referenced_images(db))
            + collect_matrix_garbage(db.image_dir, referenced_matrices(db)))
