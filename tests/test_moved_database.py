"""A database moved or renamed together with its store loses nothing: the garbage collector
that runs at the start of every ingest refuses a store whose files none of the rows name,
rather than deleting every file in it."""

from __future__ import annotations

from pathlib import Path

import pytest

import scandb
from scandb.catalog.database import Database
from scandb.errors import DatabaseError
from scandb.ingest import ingest

from .scans import make_scan


def _store_files(store: Path) -> dict[str, bytes]:
    return {p.relative_to(store).as_posix(): p.read_bytes() for p in sorted(store.rglob("*.npy"))}


def test_ingest_after_renaming_database_and_store_deletes_no_file(tmp_path: Path):
    first = make_scan(tmp_path, "common", animal_id=21067, seed=1)
    second = make_scan(tmp_path, "common", animal_id=22846, seed=2)
    with Database(tmp_path / "lab.duckdb", read_only=False) as db:
        db.ensure_schema()
        ingest(db, first)
    before = _store_files(tmp_path / "lab.images")
    assert any(key.startswith("responses/") for key in before)

    (tmp_path / "lab.duckdb").rename(tmp_path / "x.duckdb")
    (tmp_path / "lab.images").rename(tmp_path / "x.images")
    with scandb.connect(tmp_path / "x.duckdb", read_only=False) as db:
        with pytest.raises(DatabaseError, match=r"x\.images.*: not this database's store.*nothing deleted"):
            db.ingest(second)

    after = _store_files(tmp_path / "x.images")
    assert {k: v for k, v in after.items() if k in before} == before
