"""One error path: a bad query through db.sql, db.run and the command line is one UsageError
line, a database problem a DatabaseError, and a damaged database file is damage (exit 5) that
every command reports in one line without writing to the file."""

from __future__ import annotations

import hashlib
import shutil
import sys

import duckdb
import numpy as np
import pytest

import scandb
from scandb.catalog.database import Database
from scandb.cli import main
from scandb.errors import EXIT_DAMAGE, EXIT_USAGE, DamageError, DatabaseError, UsageError
from scandb.ingest import ingest

from .scans import make_scan

NOWHERE = "query failed: Catalog Error: Table with name nowhere does not exist!"


def run_main(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """The command line in this process: exit code, stdout, stderr."""
    monkeypatch.setattr(sys, "argv", ["scandb", *args])
    monkeypatch.delenv("SCANDB_DEBUG", raising=False)
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def one_scan_db(tmp_path_factory):
    """A database file holding one scan (its store beside it); tests copy it before damaging it."""
    folder = tmp_path_factory.mktemp("one")
    path = folder / "lab.duckdb"
    with Database(path, read_only=False) as db:
        db.ensure_schema()
        ingest(db, make_scan(folder, n_trials=40))
    return path


@pytest.mark.parametrize("call", ["sql", "run"])
def test_a_bad_query_from_python_is_one_usage_error_line(lab_db, call):
    with scandb.connect(lab_db) as db, pytest.raises(UsageError) as raised:
        getattr(db, call)("SELECT * FROM nowhere")
    assert str(raised.value).startswith(NOWHERE)
    assert "\n" not in str(raised.value) and raised.value.exit_code == EXIT_USAGE


def test_a_query_that_parses_badly_is_a_usage_error(lab_db):
    with scandb.connect(lab_db) as db, pytest.raises(UsageError, match='^query failed: Parser Error: syntax error at '
                                                                       'or near "SELEC"'):
        db.sql("SELEC 1")


def test_a_bad_query_on_the_command_line_is_one_line_exit_2(lab_db, monkeypatch, capsys):
    code, out, err = run_main(monkeypatch, capsys, "sql", "--db", str(lab_db), "SELECT * FROM nowhere")
    assert code == EXIT_USAGE and out == ""
    assert err.startswith(f"scandb: error: {NOWHERE}") and err.count("\n") == 1


def test_a_database_problem_is_a_database_error(tmp_path):
    with pytest.raises(DatabaseError) as raised:
        scandb.connect(tmp_path / "absent.duckdb")
    assert not isinstance(raised.value, UsageError)
    assert str(raised.value) == (f"{tmp_path / 'absent.duckdb'}: no database there (create one with "
                                 "scandb.connect(path, read_only=False))")


def truncated(path):
    with open(path, "r+b") as f:
        f.truncate(100_000)


def overwritten_pages(path):
    """Two 4 KiB pages of random bytes after the file's headers (dd seek=3 count=2)."""
    with open(path, "r+b") as f:
        f.seek(3 * 4096)
        f.write(np.random.default_rng(0).bytes(2 * 4096))


def overwritten_block(path):
    """Random bytes over a data block of the trials table, which DuckDB reads only when it is
    queried (blocks follow the file's three 4 KiB headers; ``pragma_storage_info`` names them)."""
    conn = duckdb.connect(str(path), read_only=True)
    try:
        block_size = conn.execute("SELECT block_size FROM pragma_database_size()").fetchone()[0]
        blocks = sorted({b for (b,) in conn.execute(
            "SELECT block_id FROM pragma_storage_info('trials') WHERE block_id >= 0").fetchall()})
    finally:
        conn.close()
    assert blocks, "the trials table has no data block to damage"
    with open(path, "r+b") as f:
        f.seek(3 * 4096 + blocks[len(blocks) // 2] * block_size)
        f.write(np.random.default_rng(1).bytes(2 * 4096))


def zeros(path):
    size = path.stat().st_size
    path.write_bytes(bytes(size))


DAMAGE = {"truncated": (truncated, "Could not read enough bytes"),
          "overwritten pages": (overwritten_pages, "Corrupt database file"),
          "overwritten data block": (overwritten_block, "Corrupt database file"),
          "zeros": (zeros, "its header is zeros")}


def damaged_copy(one_scan_db, tmp_path, how):
    path = tmp_path / "lab.duckdb"
    shutil.copyfile(one_scan_db, path)
    shutil.copytree(one_scan_db.with_name("lab.images"), tmp_path / "lab.images")
    DAMAGE[how][0](path)
    return path


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("how", DAMAGE)
def test_verify_calls_a_damaged_file_damage_exit_5(one_scan_db, tmp_path, monkeypatch, capsys, how):
    path = damaged_copy(one_scan_db, tmp_path, how)
    before = digest(path)
    code, out, err = run_main(monkeypatch, capsys, "verify", "--db", str(path))
    assert code == EXIT_DAMAGE and out == ""
    assert err.startswith(f"scandb: error: {path}: ") and err.count("\n") == 1
    assert "the database file is damaged (" in err and DAMAGE[how][1] in err
    assert err.rstrip().endswith("restore it from a backup")
    assert digest(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lab.duckdb", "lab.images"]


@pytest.mark.parametrize("how", ["truncated", "overwritten pages", "zeros"])
@pytest.mark.parametrize("command", [["scans"], ["ingest", "--nice", "0", "SCAN"], ["gc", "--older-than", "0"]],
                         ids=["scans", "ingest", "gc"])
def test_other_commands_on_a_damaged_file_say_so_in_one_line(one_scan_db, tmp_path, monkeypatch, capsys, how,
                                                             command):
    path = damaged_copy(one_scan_db, tmp_path, how)
    scan = make_scan(tmp_path, n_trials=20) if "SCAN" in command else None
    before = digest(path)
    args = [str(scan) if a == "SCAN" else a for a in command]
    code, out, err = run_main(monkeypatch, capsys, *args, "--db", str(path))
    assert code == EXIT_DAMAGE
    assert err.startswith(f"scandb: error: {path}: the database file is damaged (") and err.count("\n") == 1
    assert digest(path) == before
    assert not path.with_name("lab.duckdb.wal").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p != scan) == ["lab.duckdb", "lab.images"]


@pytest.mark.parametrize("how", DAMAGE)
def test_python_gets_a_damage_error_which_is_a_database_error(one_scan_db, tmp_path, how):
    path = damaged_copy(one_scan_db, tmp_path, how)
    before = digest(path)
    with pytest.raises(DamageError) as raised:
        with scandb.connect(path) as db:
            db.verify()
    assert isinstance(raised.value, DatabaseError) and raised.value.exit_code == EXIT_DAMAGE
    assert "the database file is damaged" in str(raised.value) and "\n" not in str(raised.value)
    assert digest(path) == before


@pytest.fixture(scope="module")
def one_scan_lake(tmp_path_factory):
    """A SQLite lake holding one scan; tests copy its catalog file before damaging it."""
    folder = tmp_path_factory.mktemp("lake")
    with scandb.connect(f"ducklake:sqlite:{folder / 'catalog.sqlite'}", read_only=False,
                        data_path=folder / "data") as db:
        db.ingest(make_scan(folder, n_trials=40))
    return folder / "catalog.sqlite"


def header_zeroed(path):
    with open(path, "r+b") as f:
        f.write(bytes(100))


def page_overwritten(path):
    """Random bytes over the catalog's second and third pages (its schema and first tables)."""
    with open(path, "r+b") as f:
        f.seek(4096)
        f.write(np.random.default_rng(2).bytes(2 * 4096))


@pytest.mark.parametrize("damage", [header_zeroed, page_overwritten])
def test_a_damaged_sqlite_catalog_is_damage_exit_5_and_stays_as_it_was(one_scan_lake, tmp_path, monkeypatch,
                                                                        capsys, damage):
    catalog = tmp_path / "catalog.sqlite"
    shutil.copyfile(one_scan_lake, catalog)
    damage(catalog)
    before = digest(catalog)
    code, out, err = run_main(monkeypatch, capsys, "verify", "--db", f"ducklake:sqlite:{catalog}")
    assert code == EXIT_DAMAGE and out == "" and err.count("\n") == 1
    assert "the lake's catalog file is damaged (" in err and err.rstrip().endswith("restore it from a backup")
    assert digest(catalog) == before
    with pytest.raises(DamageError):
        scandb.connect(f"ducklake:sqlite:{catalog}")


def test_a_file_that_is_not_sqlite_is_not_a_catalog_exit_4(tmp_path, monkeypatch, capsys):
    catalog = tmp_path / "notes.sqlite"
    catalog.write_text("shopping list\n" * 400)
    code, out, err = run_main(monkeypatch, capsys, "scans", "--db", f"ducklake:sqlite:{catalog}")
    assert code == 4 and err.strip() == (f"scandb: error: ducklake:sqlite:{catalog}: not a lake's catalog "
                                         "(the file is not a SQLite database)")
    assert catalog.read_text() == "shopping list\n" * 400
