"""A DuckLake as the database: every command works on it, its rows equal a file's, its
arrays equal the sources, its files live under the data path; bad input leaves it as it
was. On a SQLite catalog; the tests marked ``on_both_catalogs`` on PostgreSQL too: one of
each command, migrations, a refused scan's rollback (tests/lakes.py). Commands run in this
process (``run_cli``), the DuckDB shell in its own (it replaces the process it runs in)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import scandb
from scandb.catalog import lake as lakes
from scandb.catalog.database import Database
from scandb.errors import DatabaseError
from scandb.ingest import ingest

from .hostile import run_cli, scandb_command
from .lakes import on_both_catalogs
from .scans import stack

PATHS_BESIDE_DB = {"scan_digests": "part <> 'scans'"}
"""Digest rows that differ between two databases: the ``scans`` part hashes ingested_at."""


def ingest_cli(lake, *scans: Path, data_path: Path | None = None):
    return run_cli("ingest", *map(str, scans), "--db", lake.url, "--data-path", str(data_path or lake.data))


def assert_arrays_equal_sources(db, sources: dict) -> None:
    for scan_key, arrays in sources.items():
        n = sum(1 for name in arrays if name.startswith("data/responses/"))
        got = db.fetch(f"SELECT scan_key, trial_id FROM trials WHERE scan_key = '{scan_key}' ORDER BY trial_id",
                       "images", "responses", "behavior", "pupil_center")
        for key in ("images", "responses", "behavior", "pupil_center"):
            expected = stack(arrays, key, range(n))
            assert got[key].dtype == expected.dtype or key == "responses", (scan_key, key)
            np.testing.assert_array_equal(got[key], expected.reshape(got[key].shape).astype(got[key].dtype), err_msg=f"{scan_key} {key}")


def rows(db: Database, table: str) -> list[tuple]:
    excluded = " EXCLUDE (ingested_at)" if table == "scans" else ""
    where = f" WHERE {PATHS_BESIDE_DB[table]}" if table in PATHS_BESIDE_DB else ""
    return db.conn.execute(f"SELECT *{excluded} FROM {table}{where} ORDER BY ALL").fetchall()


def test_ingest_creates_a_lake_whose_arrays_equal_the_sources_and_files_sit_under_the_data_path(
        lake, three_scans, sources):
    run = ingest_cli(lake, *(path for _, path in three_scans))
    assert run.code == 0, run
    with scandb.connect(lake.url) as db:
        assert sorted(db.scans()["scan_key"]) == sorted(sources)
        assert_arrays_equal_sources(db, sources)
    store = lake.data / lakes.STORE_FOLDER
    assert len(list((store / "responses").glob("*.npy"))) == 3
    assert any(store.glob("??/*.npy"))
    assert not [p for p in lake.data.parent.iterdir() if p.name.endswith(".images")]


def test_a_lake_holds_the_same_rows_as_a_file(lake, three_scans, tmp_path):
    file_db = tmp_path / "file" / "scandb.duckdb"  # its store is scandb.images/, as a lake's: equal paths
    file_db.parent.mkdir()
    with Database(file_db, read_only=False) as db, \
            Database(lake.url, read_only=False, data_path=lake.data) as on_lake:
        db.ensure_schema()
        on_lake.ensure_schema()
        for _, path in three_scans:
            ingest(db, path)
            ingest(on_lake, path)
        assert on_lake.tables() == db.tables()
        for table in sorted(db.data_tables()):
            assert rows(on_lake, table) == rows(db, table), table


@on_both_catalogs
def test_migrations_build_the_same_tables_and_views_without_primary_keys(lake, tmp_path):
    run = run_cli("migrate", "--db", lake.url, "--data-path", str(lake.data))
    assert run.code == 0, run
    assert "upgraded from empty to revision" in run.out
    catalog = ("SELECT table_name, column_name, data_type FROM duckdb_columns() "
               "WHERE database_name = current_database() ORDER BY ALL")
    views = "SELECT view_name FROM duckdb_views() WHERE database_name = current_database() ORDER BY ALL"
    macros = ("SELECT DISTINCT function_name FROM duckdb_functions() WHERE database_name = current_database() "
              "AND function_type LIKE '%macro' ORDER BY ALL")
    with Database(tmp_path / "file.duckdb", read_only=False) as db, Database(lake.url) as on_lake:
        db.ensure_schema()
        for query in (catalog, views, macros):
            assert on_lake.conn.execute(query).fetchall() == db.conn.execute(query).fetchall(), query
        assert db.conn.execute("SELECT count(*) FROM duckdb_constraints() WHERE constraint_type = 'PRIMARY KEY' "
                               "AND database_name = current_database()").fetchone()[0] > 0
        assert on_lake.revision() == db.revision()


@on_both_catalogs
def test_scans_info_sql_verify_remove_and_migrate_work_on_a_lake(lake, three_scans, sources, fill_lake):
    fill_lake(lake, *(path for _, path in three_scans))
    first, second = sorted(sources)[:2]
    assert first in run_cli("scans", "--db", lake.url).out
    assert f"scan {first}" in run_cli("info", first, "--db", lake.url).out
    counted = run_cli("sql", "--csv", "--db", lake.url, "SELECT count(*) AS n FROM trials_full")
    n_trials = sum(1 for arrays in sources.values() for name in arrays if name.startswith("data/responses/"))
    assert counted.out.split() == ["n", str(n_trials)]
    verified = run_cli("verify", "--db", lake.url)
    assert verified.code == 0 and "ok: 3 scans" in verified.out, verified
    assert run_cli("migrate", "--db", lake.url).out.endswith("schema already at revision "
                                                                 f"{Database(lake.url).revision()}\n")
    removed = run_cli("remove", first, "--db", lake.url)
    assert removed.code == 0 and f"{first}: removed" in removed.out, removed
    with scandb.connect(lake.url) as db:
        assert sorted(db.scans()["scan_key"]) == sorted(k for k in sources if k != first)
        matrices = {r[0] for r in db.conn.execute("SELECT path FROM response_matrices").fetchall()}
    on_disk = {f"responses/{p.name}" for p in (lake.data / lakes.STORE_FOLDER / "responses").iterdir()}
    assert on_disk > matrices and len(on_disk) == 3  # the removed scan's matrix stays for older snapshots
    after = run_cli("verify", "--db", lake.url)
    assert after.code == 0 and "ok: 2 scans" in after.out, after
    assert second in run_cli("scans", "--db", lake.url).out


def test_a_machine_mounting_the_data_elsewhere_overrides_the_data_path(lake, three_scans, sources, tmp_path,
                                                                     fill_lake):
    fill_lake(lake, *(path for _, path in three_scans))
    mounted = tmp_path / "mounted-elsewhere"
    shutil.move(lake.data, mounted)
    with scandb.connect(lake.url, data_path=mounted) as db:
        assert_arrays_equal_sources(db, sources)
    run = run_cli("verify", "--db", lake.url, "--data-path", str(mounted))
    assert run.code == 0 and "ok: 3 scans" in run.out, run
    with Database(lake.url) as db:  # the stored data path is not changed by an override
        assert db.root == lake.data


@on_both_catalogs
def test_a_new_lake_without_a_data_path_is_refused_in_one_line(lake, three_scans):
    run = run_cli("ingest", str(three_scans[0][1]), "--db", lake.url)
    assert run.code == 4
    assert run.error == f"scandb: error: {lakes.parse(lake.url).name}: a new lake needs " \
                        "--data-path DIR (the shared folder for its files; scandb.connect(..., data_path=DIR))"
    missing = run_cli("scans", "--db", lake.url)
    assert missing.code == 4 and "no lake there" in missing.error
    assert not lake.data.exists()


def test_an_unknown_catalog_is_refused_in_one_line():
    run = run_cli("scans", "--db", "ducklake:mysql:lab")
    assert run.code == 4
    assert run.error.startswith("scandb: error: ducklake:mysql:lab: not a lake scandb can open; use "
                                "ducklake:sqlite:<file> or ducklake:postgres:<conninfo>")


@on_both_catalogs
def test_a_bad_scan_leaves_the_lake_exactly_as_it_was(lake, three_scans, tmp_path, fill_lake):
    fill_lake(lake, three_scans[0][1])
    with Database(lake.url) as db:
        before = {t: rows(db, t) for t in db.tables()}, lakes.current_snapshot(db.conn)
    store = sorted(p.relative_to(lake.data) for p in (lake.data / lakes.STORE_FOLDER).rglob("*"))
    broken = tmp_path / "broken.zip"
    data = three_scans[1][1].read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    run = ingest_cli(lake, broken)
    assert run.code == 3 and str(broken) in run.error, run
    with Database(lake.url) as db:
        assert ({t: rows(db, t) for t in db.tables()}, lakes.current_snapshot(db.conn)) == before
    assert sorted(p.relative_to(lake.data) for p in (lake.data / lakes.STORE_FOLDER).rglob("*")) == store


@on_both_catalogs
def test_missing_extensions_are_named_with_the_lake_extra(lake, tmp_path, monkeypatch):
    not_an_extension = tmp_path / "ducklake.duckdb_extension"
    not_an_extension.write_bytes(b"\0" * 512)
    monkeypatch.setattr(lakes, "extension_file", lambda name: not_an_extension)
    with pytest.raises(DatabaseError, match=r"cannot load DuckDB's .* extension .*pip install 'scandb\[lake\]'"):
        Database(lake.url, read_only=False, data_path=lake.data)


def test_extensions_load_by_path_from_the_wheels_else_by_duckdb_install(monkeypatch):
    lake = lakes.parse("ducklake:sqlite:/x/lake.sqlite")
    loads = lakes.load_statements(lake)
    assert [s.split("/")[-1] for s in loads] == ["ducklake.duckdb_extension'", "sqlite_scanner.duckdb_extension'"]
    assert all(Path(s.removeprefix("LOAD '").removesuffix("'")).is_file() for s in loads)
    monkeypatch.setattr(lakes, "extension_file", lambda name: None)
    assert lakes.load_statements(lake) == ["INSTALL ducklake", "LOAD ducklake", "INSTALL sqlite_scanner",
                                           "LOAD sqlite_scanner"]


@on_both_catalogs
def test_the_duckdb_shell_opens_a_lake_with_its_extensions_loaded_and_the_lake_in_use(lake, three_scans, sources,
                                                                                      fill_lake):
    fill_lake(lake, three_scans[0][1])
    key = three_scans[0][0].key
    done = subprocess.run(scandb_command("shell", "--db", lake.url), input="SELECT count(*) FROM trials_full;\n"
                          ".mode csv\nSELECT scan_key, count(*) FROM trials GROUP BY ALL;\n", capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    n = sum(1 for name in sources[key] if name.startswith("data/responses/"))
    assert done.stdout.strip().splitlines()[-1] == f"{key},{n}"
    refused = subprocess.run(scandb_command("shell", "--db", lake.url), input="DELETE FROM trials;\n",
                             capture_output=True, text=True, timeout=120)
    assert "read-only" in refused.stderr.lower() or "read only" in refused.stderr.lower(), refused
    with Database(lake.url) as db:
        assert db.conn.execute("SELECT count(*) FROM trials").fetchone()[0] == n


def test_the_lake_benchmark_runs_end_to_end_on_toy_scans(tmp_path, capsys, monkeypatch):
    from bench import lake as bench_lake

    monkeypatch.setattr(bench_lake, "IMAGE_SHAPE", (1, 18, 32))  # that it runs matters here, not the sizes
    monkeypatch.setattr(bench_lake, "INGEST_NICE", 0)  # beside the rest of the suite, niced ingests starve
    monkeypatch.setattr(bench_lake, "BATCH", 16)

    bench_lake.main(["--trials", str(bench_lake.BATCH), "--neurons", "8", "--repeat", "1", "--idle-seconds", "0.1",
                     "--catalogs", "sqlite", "--out", str(tmp_path)])  # the smallest scans a batch fits
    out = capsys.readouterr().out
    assert "lake, SQLite catalog" in out and "x file (best)" in out
    assert "the two ingests took" in out
    assert [p.name for p in tmp_path.iterdir()] == [f"{bench_lake.BATCH}x8"]  # the scans are kept, the databases are not


def test_scandb_db_and_scandb_data_path_name_the_lake_for_every_command_and_connect(lake, three_scans, monkeypatch):
    monkeypatch.setenv("SCANDB_DB", lake.url)
    monkeypatch.setenv("SCANDB_DATA_PATH", str(lake.data))
    spec, path = three_scans[0]
    run = run_cli("ingest", str(path))
    assert run.code == 0, run
    assert spec.key in run_cli("scans").out
    monkeypatch.delenv("SCANDB_DATA_PATH")
    with scandb.connect() as db:
        assert list(db.scans()["scan_key"]) == [spec.key]
        assert db.database.root == lake.data
