"""What the command line used to decide for itself, now asked of the Python API: a missing
database is one line and no file, gc checks the schema revision as remove does, a failed
first ingest leaves nothing behind, a query string runs statement by statement."""

from __future__ import annotations

import pytest

import scandb
from scandb.catalog.database import Database, _revision_graph, head_revision
from scandb.errors import BadScanError, DatabaseError, UsageError
from scandb.shell import shell_command

from .scans import make_scan

MISSING_CALLS = {
    "gc": lambda db: db.gc(0),
    "gc dry run": lambda db: db.gc(0, dry_run=True),
    "remove": lambda db: db.remove("1-2-3"),
    "verify": lambda db: db.verify(),
    "export": lambda db, out="out": db.export("SELECT 'x' AS scan_key, 0 AS trial_id", out),
    "report": lambda db, out="out": db.report("1-2-3", out),
    "summary": lambda db: db.summary("1-2-3"),
    "scans": lambda db: db.scans(),
    "sql": lambda db: db.sql("SELECT 1"),
    "snapshots": lambda db: db.snapshots(),
}


@pytest.mark.parametrize("call", MISSING_CALLS, ids=list(MISSING_CALLS))
def test_a_call_on_a_missing_database_is_one_line_and_creates_no_file(tmp_path, call, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "missing.duckdb"
    db = scandb.connect(path, read_only=False)
    with pytest.raises(DatabaseError) as raised:
        MISSING_CALLS[call](db)
    db.close()
    assert str(raised.value) == (f"{path}: no database there (create one with db.ingest(paths) or "
                                 "db.migrate())")
    assert raised.value.cli_text() == f"{path}: no database there (create one with 'scandb ingest')"
    assert list(tmp_path.iterdir()) == []


def test_connecting_read_only_to_a_missing_database_creates_no_file(tmp_path):
    with pytest.raises(DatabaseError, match="no database there"):
        scandb.connect(tmp_path / "missing.duckdb")
    assert list(tmp_path.iterdir()) == []


def test_migrate_creates_the_database_it_names(tmp_path):
    path = tmp_path / "new.duckdb"
    with scandb.connect(path, read_only=False) as db:
        assert db.migrate() == (None, head_revision())
    assert path.is_file()
    with scandb.connect(path) as db:
        assert db.scans().empty


def older_database(path):
    """A database at the revision before this scandb's."""
    with Database(path, read_only=False) as db:
        db.upgrade(_revision_graph()[head_revision()])
    return path


@pytest.mark.parametrize("call", [lambda db: db.gc(0), lambda db: db.remove("1-2-3")], ids=["gc", "remove"])
def test_gc_checks_the_schema_revision_as_remove_does(tmp_path, call):
    path = older_database(tmp_path / "old.duckdb")
    older = _revision_graph()[head_revision()]
    with scandb.connect(path, read_only=False) as db, pytest.raises(DatabaseError) as raised:
        call(db)
    assert str(raised.value).startswith(f"{path}: schema revision {older} is older than this scandb's "
                                        f"{head_revision()}; upgrade it with")
    with Database(path) as db:
        assert db.revision() == older  # nothing was done to it


def not_a_scan(tmp_path):
    folder = tmp_path / "not_a_scan"
    folder.mkdir()
    (folder / "notes.txt").write_text("hello")
    return folder


def test_a_failed_first_ingest_from_python_leaves_no_file(tmp_path):
    bad = not_a_scan(tmp_path)
    path = tmp_path / "new.duckdb"
    with scandb.connect(path, read_only=False) as db:
        with pytest.raises(BadScanError, match="not a scan"):
            db.ingest(bad)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["not_a_scan"]
        [result] = db.ingest([bad], keep_going=True)
        assert result.status == "failed"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not_a_scan"]


def test_a_first_ingest_that_puts_a_scan_in_keeps_the_file(tmp_path):
    bad, good = not_a_scan(tmp_path), make_scan(tmp_path, n_trials=20)
    path = tmp_path / "new.duckdb"
    with scandb.connect(path, read_only=False) as db:
        statuses = [r.status for r in db.ingest([bad, good], keep_going=True)]
    assert statuses == ["failed", "ingested"]
    with scandb.connect(path) as db:
        assert len(db.scans()) == 1


def test_a_failed_ingest_into_an_existing_empty_database_keeps_it(tmp_path):
    path = tmp_path / "kept.duckdb"
    with scandb.connect(path, read_only=False) as db:
        db.migrate()
        with pytest.raises(BadScanError):
            db.ingest(not_a_scan(tmp_path))
    assert path.is_file()


def test_run_each_runs_statements_in_order_and_skips_what_prints_nothing(tmp_path):
    path = tmp_path / "lab.duckdb"
    with scandb.connect(path, read_only=False) as db:
        db.migrate()
    with scandb.connect(path) as db:
        results = list(db.run_each("SELECT 1 AS one; SET threads = 1; SELECT 2 AS two, 3 AS three"))
        assert results == [(["one"], [(1,)]), None, (["two", "three"], [(2, 3)])]
        with pytest.raises(UsageError) as raised:
            list(db.run_each("  ;  "))
        assert raised.value.cli_text() == 'no SQL statement given; for example: scandb sql "SELECT * FROM scans"'
        with pytest.raises(UsageError, match="^query failed: Parser Error: syntax error"):
            list(db.run_each("SELEC 1"))


def test_the_shell_is_not_started_on_a_missing_or_foreign_file(tmp_path):
    with pytest.raises(DatabaseError, match=r"missing\.duckdb: no database there"):
        shell_command(tmp_path / "missing.duckdb", None, write=True)
    foreign = tmp_path / "notes.db"
    foreign.write_text("scan_key,trial_id\n")
    with pytest.raises(DatabaseError, match=r"notes\.db: not a scandb database \(not a DuckDB file\)"):
        shell_command(foreign, None, write=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.db"]
    path = tmp_path / "lab.duckdb"
    with scandb.connect(path, read_only=False) as db:
        db.migrate()
    command = shell_command(path, None, write=False)
    assert command[1] == "-readonly" and command[-1] == str(path)
