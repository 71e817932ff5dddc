"""Which store files rows still reference, and collecting the rest: files left by a writer
killed between its commit and deleting files, or half-written by one killed mid-ingest.

A removed or replaced scan's files stay for the readers that started before (a training
job's workers map them) until ``gc``: what "still referenced" means is the catalog's
(``catalog/kind.py``: a lake's unexpired snapshots, a file's ``released_files``).
"""

from __future__ import annotations

from ..catalog.database import Database
from ..catalog.kind import Retention
from ..store.base import Store, collect_garbage, has_files_older_than, unreferenced
from ..store.frames import FrameStore
from ..store.images import ImageStore
from ..store.matrices import MatrixStore
from ..store.meta import MetaStore
from ..store.packs import PackStore, packed
from ..store.predictions import PredictionStore
from ..store.sessions import SessionStore

REFERENCES = {"images": ("images", "image_hash"), "packs": ("images", "path"), "matrices": ("response_matrices", "path"),
              "meta": ("scan_files", "stored_as"), "predictions": ("prediction_matrices", "path"),
              "sessions": ("modalities", "path")}
"""Each store's key column: the table and column whose values name its files."""


def referenced(db: Database, store: str, retention: Retention | None = None) -> set[str]:
    """The keys of ``store`` rows reference, now or in what ``retention`` keeps (default:
    everything kept; see the catalog's ``referenced``)."""
    table, column = REFERENCES[store]
    return db.catalog.referenced(db.conn, table, column, store, retention)


def stores(db: Database) -> list[Store]:
    """Each store beside the database (in the order of ``stores_and_references``)."""
    folder = db.store
    return [ImageStore(folder), PackStore(folder), MatrixStore(folder), FrameStore(folder), MetaStore(folder),
            PredictionStore(folder), SessionStore(folder)]


def stores_and_references(db: Database, retention: Retention | None = None) -> list[tuple[Store, set[str]]]:
    """Each store beside the database, with the keys its rows reference (see ``referenced``)."""
    images = referenced(db, "images", retention)
    references = [images, packed(referenced(db, "packs", retention)), referenced(db, "matrices", retention),
                  images,  # time-major copies, named by their video's hash
                  referenced(db, "meta", retention), referenced(db, "predictions", retention),
                  referenced(db, "sessions", retention)]
    return list(zip(stores(db), references))


def release_files_of(db: Database, scan_key: str, why: str) -> int:
    """Inside the transaction that deletes a scan's rows: keep the files only this scan uses
    for readers that started before (listed as released in a file; a lake's snapshots keep
    them); returns how many were listed."""
    return db.catalog.release_files_of(db.conn, scan_key, why)


def orphan_files(db: Database, stores: list[tuple[Store, set[str]]]) -> list[str]:
    """Keys of the files of ``stores`` (``stores_and_references(db)``) no row references,
    and of half-written temporaries."""
    orphans = []
    for store, keys in stores:
        orphans += unreferenced(store, keys, db.garbage_age)
    return orphans


def collect_orphans(db: Database) -> int:
    """Remove files no row references (left by a writer that was killed); on a lake only
    those no unexpired snapshot references and old enough not to be another ingest's files
    in flight (``Database.garbage_age``). When no file is that old, nothing can be an
    orphan, and which files rows reference is not asked: on a lake that is a query of
    every kept snapshot per store, most of a small ingest's fixed cost."""
    if db.garbage_age > 0 and not has_files_older_than(stores(db), db.garbage_age):
        return 0
    return collect_garbage(stores_and_references(db), db.garbage_age)
