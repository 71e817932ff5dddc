"""Migrations build exactly the model in schema.py, guard revisions, and ship in the wheel."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import duckdb
import numpy as np
import pytest
import sqlalchemy as sa
from alembic import command

from scandb.catalog import schema
from scandb.catalog.database import Database, _alembic_config, head_revision
from scandb.errors import DatabaseError
from scandb.ingest import ingest
from scandb.synthetic import ScanSpec, generate, write_zip

from .conftest import digest_database
from .hostile import run_cli

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
        db.upgrade(replay=True)
    created = tmp_path / "created.duckdb"
    engine = sa.create_engine(f"duckdb:///{created}")
    schema.metadata.create_all(engine)
    engine.dispose()
    migrated_columns, migrated_constraints = catalog(migrated)
    created_columns, created_constraints = catalog(created)
    assert migrated_columns == created_columns
    assert migrated_constraints == created_constraints
    assert {c[0] for c in migrated_columns} == set(schema.metadata.tables)


def schema_of(db: Database) -> dict[str, list]:
    """What DuckDB's catalog says of the database's schema: every column in its place (of
    tables and views), constraint, view text and macro, and the revision Alembic reads."""
    from alembic.runtime.migration import MigrationContext

    def rows(sql: str) -> list[tuple]:
        return sorted(db.conn.execute(sql).fetchall(), key=repr)

    where = "database_name = current_database()"
    with db.engine.connect() as connection:
        revision = MigrationContext.configure(connection).get_current_revision()
    return {
        "columns": rows("SELECT table_name, column_index, column_name, data_type, is_nullable, column_default, "
                        f"comment FROM duckdb_columns() WHERE {where} AND NOT internal"),
        "constraints": rows("SELECT table_name, constraint_type, constraint_column_names::VARCHAR "
                            f"FROM duckdb_constraints() WHERE {where}"),
        "views": rows(f"SELECT view_name, sql FROM duckdb_views() WHERE {where} AND NOT internal"),
        "macros": rows("SELECT function_name, parameters::VARCHAR, macro_definition FROM duckdb_functions() "
                       f"WHERE {where} AND function_type = 'macro'"),
        "revision": [revision],
    }


@pytest.mark.parametrize("kind", ["file", "lake"])
def test_a_new_database_made_at_head_in_one_step_is_the_one_every_revision_builds(kind, tmp_path):
    def target(name: str) -> str | Path:
        return f"ducklake:sqlite:{tmp_path / name}.sqlite" if kind == "lake" else tmp_path / f"{name}.duckdb"

    with Database(target("replayed"), data_path=tmp_path / "replayed", read_only=False) as db:
        db.upgrade(replay=True)
        replayed = schema_of(db)
    with Database(target("made"), data_path=tmp_path / "made", read_only=False) as db:
        assert db.upgrade() == (None, head_revision())
        made = schema_of(db)
    assert replayed["revision"] == [head_revision()] and len(replayed["columns"]) > 100
    for part in replayed:
        assert made[part] == replayed[part], part


def test_a_database_made_at_head_downgrades_and_upgrades_through_alembic(tmp_path):
    path = tmp_path / "made.duckdb"
    with Database(path, read_only=False) as db:
        db.upgrade()
    downgrade(path, "0001")
    with Database(path) as db:
        assert db.revision() == "0001"
        assert db.data_tables() == {"scans", "neurons", "trials", "behavior", "responses", "images", "statistics",
                                    "scan_files"}
    upgrade(path)
    replayed = tmp_path / "replayed.duckdb"
    with Database(replayed, read_only=False) as db:
        db.upgrade(replay=True)
    with Database(path) as db, Database(replayed) as other:
        assert schema_of(db) == schema_of(other)


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


# -- round trips with data -------------------------------------------------------------------

SPEC = ScanSpec(n_trials=24, n_neurons=30)
KEPT_TABLES = ("neurons", "trials", "behavior", "responses", "images", "statistics", "scan_files")
"""Tables every revision has: a downgrade must not change them."""
SCANS_COLUMNS_SINCE_0001 = ("scan_key", "name", "n_trials", "n_neurons", "source_sha256", "source_size", "ingested_at")
"""``scans`` columns of revision 0001; a downgrade below 0004 drops ``content_sha256``, which
cannot be recomputed without the source."""


def downgrade(path: Path, target: str) -> None:
    with Database(path, read_only=False) as db, db.engine.begin() as connection:
        config = _alembic_config()
        config.attributes["connection"] = connection
        command.downgrade(config, target)


def upgrade(path: Path, target: str = "head") -> None:
    with Database(path, read_only=False) as db:
        db.upgrade(target)


@pytest.fixture
def ingested(tmp_path) -> Path:
    """A database at the head revision holding SPEC's scan."""
    path = tmp_path / "lab.duckdb"
    with Database(path, read_only=False) as db:
        db.ensure_schema()
        ingest(db, write_zip(generate(SPEC), tmp_path / f"{SPEC.name}.zip"))
    return path


def rows(path: Path, sql: str) -> list[tuple]:
    with Database(path) as db:
        return db.conn.execute(sql).fetchall()


def test_downgrade_and_upgrade_again_keep_every_row(ingested):
    before = digest_database(ingested)
    scans_before = rows(ingested, f"SELECT {', '.join(SCANS_COLUMNS_SINCE_0001)} FROM scans")
    downgrade(ingested, "0002")
    with Database(ingested) as db:
        assert db.revision() == "0002"
        assert not {"area_responses", "response_matrices", "scan_digests"} & db.tables()
    upgrade(ingested)
    after = digest_database(ingested)
    assert {t: after[t] for t in KEPT_TABLES} == {t: before[t] for t in KEPT_TABLES}
    assert rows(ingested, f"SELECT {', '.join(SCANS_COLUMNS_SINCE_0001)} FROM scans") == scans_before
    assert rows(ingested, "SELECT content_sha256 FROM scans") == [(None,)]
    run = run_cli("verify", "--db", str(ingested))
    # The response matrix file outlived its row (the next write collects it): nothing else.
    assert run.returncode == 5, run.stdout
    assert run.stdout.splitlines()[0] == f"{ingested}: damage found: 1 orphan file in the store"


def test_area_sums_filled_by_revision_0003_are_the_sums_of_the_source_responses(ingested):
    downgrade(ingested, "0002")
    upgrade(ingested)
    arrays = generate(SPEC).arrays
    areas, layers = arrays["meta/neurons/area.npy"], arrays["meta/neurons/layer.npy"]
    expected = {}
    for trial in range(SPEC.n_trials):
        response = arrays[f"data/responses/{trial}.npy"].astype(np.float64)
        for area, layer in set(zip(areas.tolist(), layers.tolist())):
            members = (areas == area) & (layers == layer)
            expected[trial, area, layer] = (int(members.sum()), response[members].sum())
    stored = rows(ingested, "SELECT trial_id, area, layer, n_neurons, response_sum FROM area_responses")
    assert {(t, a, l) for t, a, l, _, _ in stored} == set(expected)
    for trial, area, layer, n_neurons, total in stored:
        want_n, want_sum = expected[trial, area, layer]
        assert n_neurons == want_n
        assert total == pytest.approx(want_sum, rel=1e-5, abs=1e-5)


def test_digests_filled_by_revision_0005_equal_those_ingest_records(ingested):
    recorded = rows(ingested, "SELECT * FROM scan_digests ORDER BY ALL")
    assert {r[1] for r in recorded} >= {"responses except values", "area_responses", "response matrix"}
    downgrade(ingested, "0004")
    upgrade(ingested)
    assert rows(ingested, "SELECT * FROM scan_digests ORDER BY ALL") == recorded
    assert run_cli("verify", "--db", str(ingested)).returncode == 0


def test_a_database_downgraded_to_base_can_be_upgraded_and_used_again(ingested, tmp_path):
    downgrade(ingested, "base")
    with Database(ingested) as db:
        assert db.revision() is None
    result = run_cli("migrate", "--db", str(ingested))
    assert result.returncode == 0, result.stderr
    result = run_cli("ingest", "--db", str(ingested), str(tmp_path / f"{SPEC.name}.zip"))
    assert result.returncode == 0, result.stderr
    assert run_cli("verify", "--db", str(ingested)).returncode == 0


def test_responses_long_filtered_on_an_image_reads_only_that_image_from_responses(ingested):
    """The filter reaches the responses scan, where zone maps skip other images' row groups."""
    with Database(ingested) as db:
        plan = json.loads(db.conn.execute(
            "EXPLAIN (FORMAT json) SELECT * FROM responses_long WHERE image_id = 5").fetchall()[0][1])
    scans = {node["extra_info"]["Table"].rsplit(".", 1)[-1]: node["extra_info"]
             for node in _plan_nodes(plan[0]) if node["name"] == "SEQ_SCAN"}
    assert scans["responses"].get("Filters") == "image_id=5"


def _plan_nodes(node: dict):
    yield node
    for child in node.get("children", []):
        yield from _plan_nodes(child)


def test_revision_0016_adds_the_pack_columns_and_its_downgrade_refuses_packed_images(ingested):
    def columns(table):
        return [r[0] for r in rows(ingested, f"SELECT column_name FROM duckdb_columns() WHERE table_name = '{table}'")]

    assert {"pack_offset", "pack_length"} <= set(columns("images"))
    assert {"image_pack_offset", "image_pack_length"} <= set(columns("trials_full"))
    before = rows(ingested, "SELECT image_hash, path, shape, dtype, n_bytes FROM images ORDER BY 1")
    downgrade(ingested, "0015")
    assert not {"pack_offset", "pack_length"} & set(columns("images"))
    assert not {"image_pack_offset", "image_pack_length"} & set(columns("trials_full"))
    upgrade(ingested)
    assert rows(ingested, "SELECT image_hash, path, shape, dtype, n_bytes FROM images ORDER BY 1") == before
    assert rows(ingested, "SELECT count(*) FROM images WHERE pack_offset IS NOT NULL OR pack_length IS NOT NULL"
                ) == [(0,)]
    # images' digests were recorded again each way: only if the downgrade's matched its rows
    # does the upgrade record them again, so verify finds them right
    assert run_cli("verify", "--db", str(ingested)).returncode == 0

    with Database(ingested, read_only=False) as db:
        db.conn.execute("UPDATE images SET pack_offset = 0, pack_length = n_bytes + 128 "
                        "WHERE image_hash = (SELECT min(image_hash) FROM images)")
    with pytest.raises(RuntimeError, match="kept in packs"):
        downgrade(ingested, "0015")
    with Database(ingested) as db:
        assert db.revision() == "0016"  # nothing changed
