from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from scandb.catalog.database import Database
from scandb.ingest import ingest

from scandb.synthetic import ScanSpec, generate

from .scans import spec_for, write


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


THREE_SPECS = [
    spec_for("common", animal_id=21067, seed=1),
    spec_for("no_top_folder", animal_id=22846, seed=2, hashed_trial_idx=True, n_neurons=37),
    spec_for("colorframeprojector_ids", animal_id=23343, seed=3, behavior_2d=True, image_dtype="float32"),
]
"""Three scans of different variants: a zip, a zip without top folder, a folder."""


@pytest.fixture(scope="session")
def three_scans(tmp_path_factory) -> list[tuple[ScanSpec, Path]]:
    directory = tmp_path_factory.mktemp("scans")
    return [(spec, write(spec, directory, folder=(i == 2))) for i, spec in enumerate(THREE_SPECS)]


@pytest.fixture(scope="session")
def lab_db(tmp_path_factory, three_scans) -> Path:
    """A database holding the three scans; tests must only read it."""
    path = tmp_path_factory.mktemp("lab") / "lab.duckdb"
    with Database(path, read_only=False) as db:
        db.ensure_schema()
        for _, scan in three_scans:
            ingest(db, scan)
    return path


@pytest.fixture(scope="session")
def sources(three_scans) -> dict[str, dict]:
    """The arrays each of the three scans holds, by scan key then relative path."""
    return {spec.key: generate(spec).arrays for spec, _ in three_scans}


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


from .lakes import fill_lake, lake, pg_server  # noqa: E402,F401  (fixtures of the lake tests)


HEAVIEST_FIRST = ("test_bucket_lake.py", "test_lake_concurrency.py", "test_snapshots.py", "test_lake.py",
                  "test_kept_readers.py", "test_bucket_sessions.py", "test_bench.py", "test_session_ingest.py")
"""Test files of the most CPU time, run first: xdist hands out files in collection order, and
two workers finish together when the last files handed out are short ones."""


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(HEAVIEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: file order kept otherwise
