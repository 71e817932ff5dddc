"""The command line starts without the libraries it does not need: which modules a command
imports is asserted here; how long start-up takes is measured by bench/startup.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("duckdb", "numpy", "pyarrow", "pandas", "sqlalchemy", "alembic", "duckdb_engine")

RUN_AND_LIST = """
import json, sys
from scandb.cli import main
heavy_names = json.loads(sys.argv[1])
sys.argv = ["scandb", *sys.argv[2:]]
try:
    main()
except SystemExit:
    pass
heavy = sorted({name.split(".")[0] for name in sys.modules} & set(heavy_names))
print("\\nIMPORTED " + json.dumps(heavy))
"""


def imported_by(*args: str) -> set[str]:
    """The heavy top-level libraries loaded by one run of ``scandb ARGS``."""
    done = subprocess.run([sys.executable, "-c", RUN_AND_LIST, json.dumps(HEAVY), *args], capture_output=True,
                          text=True, timeout=120)
    line = next(line for line in done.stdout.splitlines() if line.startswith("IMPORTED "))
    return set(json.loads(line.removeprefix("IMPORTED ")))


def test_help_loads_no_database_library():
    assert imported_by("--help") == set()
    assert imported_by("sql", "--help") == set()


@pytest.mark.parametrize("command", [("sql", "SELECT count(*) FROM trials"), ("scans",), ("info", "26872-17-20")])
def test_reading_commands_load_neither_sqlalchemy_nor_alembic(lab_db, command):
    loaded = imported_by(*command, "--db", str(lab_db))
    assert "duckdb" in loaded
    assert not loaded & {"sqlalchemy", "alembic", "duckdb_engine"}


def test_sql_loads_no_pandas(lab_db):
    assert "pandas" not in imported_by("sql", "SELECT tier, count(*) FROM trials GROUP BY tier", "--db", str(lab_db))


def test_migrating_loads_alembic_and_making_a_new_database_does_not(tmp_path: Path):
    """The check above can fail: a command that upgrades a database loads them; a new
    database is made at the head without Alembic (``catalog/fresh.py``)."""
    from scandb.catalog.database import Database

    made = imported_by("migrate", "--db", str(tmp_path / "new.duckdb"))
    assert {"sqlalchemy", "duckdb_engine"} <= made and "alembic" not in made
    with Database(tmp_path / "old.duckdb", read_only=False) as db:
        db.upgrade("0001")
    assert {"sqlalchemy", "alembic", "duckdb_engine"} <= imported_by("migrate", "--db", str(tmp_path / "old.duckdb"))


def test_revisions_read_without_alembic_match_alembic():
    """The revision check reads the migration files itself; Alembic must agree with it."""
    from alembic.script import ScriptDirectory

    from scandb.catalog.database import _alembic_config, head_revision, known_revisions
    scripts = ScriptDirectory.from_config(_alembic_config())
    assert head_revision() == scripts.get_current_head()
    assert known_revisions() == {rev.revision for rev in scripts.walk_revisions()}


def test_a_short_command_on_a_postgres_lake_loads_no_psycopg(pg_server, tmp_path):
    """psycopg asks a held connection's catalog whether anything changed (catalog/newest.py);
    a command that keeps no scan's reader between calls has nothing to check."""
    lake = f"ducklake:postgres:{pg_server.database()}"
    assert subprocess.run([sys.executable, "-m", "scandb", "migrate", "--db", lake, "--data-path",
                           str(tmp_path / "data")], capture_output=True, timeout=120).returncode == 0
    heavy = (*HEAVY, "psycopg")
    done = subprocess.run([sys.executable, "-c", RUN_AND_LIST, json.dumps(heavy), "sql", "SELECT count(*) FROM scans",
                           "--db", lake], capture_output=True, text=True, timeout=120)
    assert done.stdout.split()[:3] == ["count_star()", "------------", "0"], (done.stdout, done.stderr)  # it ran
    line = next(line for line in done.stdout.splitlines() if line.startswith("IMPORTED "))
    assert "psycopg" not in json.loads(line.removeprefix("IMPORTED "))
