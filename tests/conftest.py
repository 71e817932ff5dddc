from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from scandb.database import Database
from scandb.ingest import ingest

from .scans import make_scan


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "lab.duckdb"


@pytest.fixture
def open_db(db_path: Path):
    """Open the test database for writing, creating its schema."""
    opened = []

    def _open() -> Database:
        db = Database(db_path, read_only=False)
        db.ensure_schema()
        opened.append(db)
        return db
    yield _open
    for db in opened:
        db.close()


@pytest.fixture(scope="session")
def three_scans(tmp_path_factory) -> list[Path]:
    """Three scans of different variants and animals (a zip, a bare zip, a folder)."""
    directory = tmp_path_factory.mktemp("scans")
    return [
        make_scan(directory, "common", animal_id=21067, seed=1),
        make_scan(directory, "no_top_folder", animal_id=22846, seed=2, hashed_trial_idx=True, n_neurons=37),
        make_scan(directory, "colorframeprojector_ids", animal_id=23343, seed=3, behavior_2d=True,
                  image_dtype="float32", folder=True),
    ]


@pytest.fixture(scope="session")
def lab_db(tmp_path_factory, three_scans) -> Path:
    """A database holding the three scans; tests must only read it."""
    path = tmp_path_factory.mktemp("lab") / "lab.duckdb"
    with Database(path, read_only=False) as db:
        db.ensure_schema()
        for scan in three_scans:
            ingest(db, scan)
    return path


def digest_database(path: Path) -> dict[str, str]:
    """A digest of every table's content and of the image store's file list."""
    out = {}
    with Database(path, read_only=True) as db:
        for table in sorted(db.tables()):
            rows = db.conn.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()
            out[table] = hashlib.sha256(repr(rows).encode()).hexdigest()
        store = db.image_dir
    files = sorted(p.relative_to(store).as_posix() for p in store.rglob("*")) if store.exists() else []
    out["<image store>"] = hashlib.sha256(repr(files).encode()).hexdigest()
    return out
