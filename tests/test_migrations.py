"""Migrations build exactly the model in schema.py, guard revisions, and ship in the wheel."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import duckdb
import pytest
import sqlalchemy as sa

from scandb.catalog import schema
from scandb.catalog.database import Database, head_revision
from scandb.errors import DatabaseError

from .test_cli import run_cli

ROOT = Path(__file__).resolve().parents[1]


def catalog(path: Path) -> tuple[set, set]:
    """Columns and constraints of the base tables, as DuckDB's own catalog reports them."""
    conn = duckdb.connect(str(path), read_only=True)
    try:
        columns = set(conn.execute("""
            SELECT table_name, column_name, data_type, is_nullable FROM duckdb_columns()
            WHERE NOT internal AND table_name != 'alembic_version'
              AND table_name IN (SELECT table_name FROM duckdb_tables())""").fetchall())
        constraints = set(conn.execute("""
            SELECT table_name, constraint_type, array_to_string(constraint_column_names, ','),
                   array_to_string(referenced_column_names, ','), referenced_table
            FROM duckdb_constraints() WHERE table_name != 'alembic_version'
              AND constraint_type IN ('PRIMARY KEY', 'FOREIGN KEY', 'UNIQUE')""").fetchall())
    finally:
        conn.close()
    return columns, constraints


def test_migrated_schema_matches_schema_py(tmp_path):
    migrated = tmp_path / "migrated.duckdb"
    with Database(migrated, read_only=False) as db:
        db.upgrade()
    created = tmp_path / "created.duckdb"
    engine = sa.create_engine(f"duckdb:///{created}")
    schema.metadata.create_all(engine)
    engine.dispose()
    migrated_columns, migrated_constraints = catalog(migrated)
    created_columns, created_constraints = catalog(created)
    assert migrated_columns == created_columns
    assert migrated_constraints == created_constraints
    assert {c[0] for c in migrated_columns} == set(schema.metadata.tables)


def test_new_database_is_created_at_head_and_views_exist(tmp_path):
    with Database(tmp_path / "x.duckdb", read_only=False) as db:
        db.ensure_schema()
        assert db.revision() == head_revision()
        views = {r[0] for r in db.conn.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
        assert {"trials_full", "responses_long", "scan_images"} <= views
        assert db.conn.execute("SELECT response_at([1.5, 2.5]::FLOAT[], 1)").fetchone()[0] == 2.5


def test_migrate_upgrades_an_older_database(tmp_path):
    path = tmp_path / "old.duckdb"
    with Database(path, read_only=False) as db:
        db.upgrade("0001")
        with pytest.raises(DatabaseError, match="older than this scandb.*scandb migrate"):
            db.check_revision()
    result = run_cli("migrate", "--db", str(path))
    assert result.returncode == 0, result.stderr
    assert f"from 0001 to revision {head_revision()}" in result.stdout
    assert "already at revision" in run_cli("migrate", "--db", str(path)).stdout


def test_a_newer_database_is_refused_with_a_clear_message(tmp_path):
    path = tmp_path / "future.duckdb"
    with Database(path, read_only=False) as db:
        db.ensure_schema()
        db.conn.execute("UPDATE alembic_version SET version_num = '9999'")
    result = run_cli("scans", "--db", str(path))
    assert result.returncode == 4
    assert "revision 9999 is newer than this scandb knows" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    with Database(path, read_only=False) as db, pytest.raises(DatabaseError, match="newer"):
        db.upgrade()


def test_a_foreign_database_is_not_touched(tmp_path):
    path = tmp_path / "other.duckdb"
    conn = duckdb.connect(str(path))
    conn.execute("CREATE TABLE mine (x INT)")
    conn.close()
    result = run_cli("ingest", "--db", str(path), str(tmp_path / "whatever.zip"))
    assert result.returncode == 4
    assert "not a scandb database" in result.stderr


def test_migrations_ship_inside_the_wheel(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True)
    wheel = next(tmp_path.glob("scandb-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "scandb/migrations/env.py" in names
    for revision in (ROOT / "migrations" / "versions").glob("0*.py"):
        assert f"scandb/migrations/versions/{revision.name}" in names
