"""Keeping a database and its image store consistent: orphan clean-up, verify, remove."""

from __future__ import annotations

from .database import Database
from .images import ImageStore


def referenced_images(db: Database) -> set[str]:
    return {row[0] for row in db.conn.execute("SELECT image_hash FROM images").fetchall()}


def collect_orphans(db: Database) -> int:
    """Remove image files no row references (left by an ingest that was killed)."""
    return ImageStore(db.image_dir).collect_garbage(referenced_images(db))
