"""One registry of the tables holding a scan's rows: no table can be left out of digests,
removal or export, and Parquet export writes every table a selection has rows in, static
and video alike, and none empty."""

from __future__ import annotations

import pyarrow.dataset as ds
import pytest

import scandb
from scandb.catalog import registry
from scandb.catalog.database import Database
from scandb.ingest import ingest
from scandb.synthetic import VideoSpec, generate_dynamic, write_zip

from .scans import spec_for, write

STATIC = spec_for("common", animal_id=24101, seed=41, n_trials=30, n_neurons=9)
VIDEO = VideoSpec(animal_id=29711, seed=42, n_trials=12, n_neurons=7)


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """A database holding a static and a video scan."""
    directory = tmp_path_factory.mktemp("registry")
    path = directory / "lab.duckdb"
    with Database(path, read_only=False) as db:
        db.ensure_schema()
        ingest(db, write(STATIC, directory))
        ingest(db, write_zip(generate_dynamic(VIDEO), directory / f"{VIDEO.name}.zip"))
    return path


def test_every_table_naming_a_scan_is_registered(both):
    with scandb.connect(both) as db:
        with_scan_key = {row[0] for row in db.run(
            "SELECT DISTINCT c.table_name FROM duckdb_columns() c JOIN duckdb_tables() t "
            "USING (database_name, schema_name, table_name) "
            "WHERE c.database_name = current_database() AND c.column_name = 'scan_key'")[1]}
        every_table = {row[0] for row in db.run(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database()")[1]}
    assert with_scan_key <= set(registry.BY_NAME)
    assert set(registry.BY_NAME) <= every_table


def _tables_with_rows(db, scan: str, trials: list[int]) -> set[str]:
    """Per table, whether the database has rows of this selection, asked of the database itself."""
    found = set()
    for table in registry.TABLES:
        if table.export is None:
            continue
        columns = {row[0] for row in db.run(
            "SELECT column_name FROM duckdb_columns() WHERE database_name = current_database() AND table_name = ?",
            [table.name])[1]}
        if table.name == "images":
            continue  # written as images.parquet
        if "trial_id" in columns:
            query = f"SELECT count(*) FROM {table.name} WHERE scan_key = ? AND list_contains(?, trial_id)"
            params = [scan, trials]
        else:
            query, params = f"SELECT count(*) FROM {table.name} WHERE scan_key = ?", [scan]
        if db.run(query, params)[1][0][0]:
            found.add(table.name)
    return found


@pytest.mark.parametrize("spec", [STATIC, VIDEO], ids=["static", "video"])
def test_parquet_export_writes_every_table_with_rows_and_none_empty(both, spec, tmp_path):
    trials = [0, 2, 5]
    with scandb.connect(both) as db:
        db.export([(spec.key, t) for t in trials], tmp_path, format="parquet")
        expected = _tables_with_rows(db, spec.key, trials)
    folder = tmp_path / "parquet"
    written = {p.name for p in folder.iterdir() if p.is_dir()}
    assert written == expected
    for table in written:
        assert list((folder / table).rglob("*.parquet")), f"{table} written empty"
    assert (folder / "images.parquet").exists()


def test_video_export_holds_frame_behavior_and_area_frame_responses_of_the_selection(both, tmp_path):
    trials = [1, 4]
    with scandb.connect(both) as db:
        db.export([(VIDEO.key, t) for t in trials], tmp_path, format="parquet")
        for table, order in (("frame_behavior", "trial_id"), ("area_frame_responses", "ALL")):
            names, rows = db.run(f"SELECT * FROM {table} WHERE scan_key = ? AND trial_id IN (1, 4) "
                                 f"ORDER BY {order}", [VIDEO.key])
            exported = ds.dataset(tmp_path / "parquet" / table, partitioning="hive").to_table()
            assert exported.num_rows == len(rows) > 0
            got = sorted(repr(tuple(r[c] for c in names)) for r in exported.to_pylist())
            assert got == sorted(repr(tuple(r)) for r in rows)  # repr: NaN (a trial's end) equals NaN
    assert not (tmp_path / "parquet" / "responses").exists()  # a video scan's responses are its matrix
    assert not (tmp_path / "parquet" / "behavior").exists()


def test_removing_a_scan_leaves_no_row_in_any_registered_table(both, tmp_path):
    import shutil

    copy = tmp_path / "lab.duckdb"
    shutil.copy(both, copy)
    shutil.copytree(both.with_name("lab.images"), tmp_path / "lab.images")
    with scandb.connect(copy, read_only=False) as db:
        db.remove(VIDEO.key)
        for table in registry.owned():
            assert db.run(f"SELECT count(*) FROM {table} WHERE scan_key = ?", [VIDEO.key])[1][0][0] == 0, table
        assert db.run("SELECT count(*) FROM scans WHERE scan_key = ?", [STATIC.key])[1][0][0] == 1
