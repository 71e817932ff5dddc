"""The command line as users meet it: help, version, ingest of several paths, sql, info.

Commands run in this process through the same ``main()`` the installed command runs
(tests/hostile.py ``run_cli``: exit code, stdout, stderr lines); in a real process
(``run_process``) where the process itself is what is checked: help and version as the
executable prints them, the progress bar on a terminal, a foreign file with downloads
cut off, a database another process holds, the DuckDB shell, the CPU priority."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scandb import __version__
from scandb.catalog import DEFAULT_WAIT
from scandb.catalog.database import Database

from .conftest import THREE_SPECS
from .hostile import ahead_of_ingest_nice, run_cli
from .scans import make_scan

COMMANDS = ("ingest", "scans", "migrate", "sql", "shell", "info", "example", "predictions", "scores")


def run_process(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``python -m scandb ARGS`` in a child process."""
    env = {k: v for k, v in os.environ.items() if k != "SCANDB_DEBUG"}
    return subprocess.run([sys.executable, "-m", "scandb", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300, preexec_fn=ahead_of_ingest_nice)


def test_help_lists_every_command_and_the_exit_codes():
    result = run_process("--help")
    assert result.returncode == 0
    for command in COMMANDS:
        assert command in result.stdout
    assert "Exit codes" in result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    result = run_process(command, "--help")
    assert result.returncode == 0
    assert "Usage: scandb " + command in result.stdout.replace("python -m scandb", "scandb")


def test_version():
    result = run_process("--version")
    assert result.returncode == 0 and __version__ in result.stdout


def test_one_command_ingests_scans_of_three_variants(tmp_path, three_scans):
    db = tmp_path / "lab.duckdb"
    result = run_cli("ingest", "--db", str(db), *(str(p) for _, p in three_scans))
    assert result.returncode == 0, result.stderr
    for spec, _ in three_scans:
        assert f"{spec.key}: ingested {spec.n_trials} trials, {spec.n_neurons} neurons" in result.stdout
    assert "3 scans: 3 ingested" in result.stdout
    again = run_cli("ingest", "--db", str(db), str(three_scans[0][1]))
    assert again.returncode == 0 and "already ingested" in again.stdout
    listing = run_cli("scans", "--db", str(db))
    assert all(spec.key in listing.stdout for spec, _ in three_scans)
    assert "(3 rows)" in listing.stdout


def test_sql_prints_tables_csv_and_json(lab_db):
    query = "SELECT scan_key, count(*) AS n FROM trials GROUP BY 1 ORDER BY 1"
    table = run_cli("sql", "--db", str(lab_db), query)
    assert table.returncode == 0 and "(3 rows)" in table.stdout
    csv = run_cli("sql", "--db", str(lab_db), "--csv", query).stdout.splitlines()
    assert csv[0] == "scan_key,n" and len(csv) == 4
    rows = json.loads(run_cli("sql", "--db", str(lab_db), "--json", query).stdout)
    assert {r["scan_key"]: r["n"] for r in rows} == {s.key: s.n_trials for s in THREE_SPECS}


def test_sql_errors_are_one_line(lab_db):
    result = run_cli("sql", "--db", str(lab_db), "SELECT * FROM nowhere")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "nowhere" in result.stderr
    assert "Traceback" not in result.stderr


README = Path(__file__).resolve().parents[1] / "README.md"


def json_results(text: str) -> list[list[dict]]:
    """The JSON arrays ``scandb sql --json`` prints, one per statement."""
    decoder, results, rest = json.JSONDecoder(), [], text.strip()
    while rest:
        result, end = decoder.raw_decode(rest)
        results.append(result)
        rest = rest[end:].lstrip()
    return results


def test_the_readmes_variable_example_runs_as_written(lab_db):
    """A SET VARIABLE is read by the statements after it, as in the DuckDB shell; the
    example starts with a ``--`` comment, which is SQL, not an option."""
    block = next(b for b in re.findall(r"```sql\n(.*?)```", README.read_text(), flags=re.S)
                 if "getvariable('image')" in b)
    assert block.startswith("--")
    result = run_cli("sql", "--db", str(lab_db), "--json", block)
    assert result.returncode == 0, result.stderr
    trials, neurons = json_results(result.stdout)
    with Database(lab_db) as db:
        expected = db.conn.execute("SELECT count(*) FROM trials WHERE image_id = "
                                   "(SELECT min(image_id) FROM trials WHERE tier = 'test')").fetchone()[0]
    assert expected > 0 and len(trials) == expected
    assert len(neurons) == 20 and {r["scan_key"] for r in trials} == {s.key for s in THREE_SPECS}


def test_sql_statements_of_one_call_share_a_temporary_table(lab_db):
    result = run_cli("sql", "--db", str(lab_db), "--csv",
                     "CREATE TEMP TABLE picked AS SELECT scan_key FROM scans; SELECT count(*) AS n FROM picked")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["n", "3"]


def test_sql_cannot_write(lab_db):
    result = run_cli("sql", "--db", str(lab_db), "DELETE FROM trials")
    assert result.returncode != 0 and "read-only" in result.stderr


def test_info_summarises_a_scan(lab_db, sources):
    spec = THREE_SPECS[0]
    result = run_cli("info", spec.key, "--db", str(lab_db))
    assert result.returncode == 0, result.stderr
    assert f"trials      {spec.n_trials}:" in result.stdout
    assert "responses/all" in result.stdout
    assert "(1, 36, 64) uint8" in result.stdout
    unknown = run_cli("info", "0-0-0", "--db", str(lab_db))
    assert unknown.returncode == 2 and spec.key in unknown.stderr


def test_missing_database_is_a_clear_error(tmp_path):
    result = run_cli("scans", "--db", str(tmp_path / "none.duckdb"))
    assert result.returncode == 4
    assert "no database there" in result.stderr


def test_example_writes_scans_that_ingest(tmp_path):
    result = run_cli("example", str(tmp_path / "ex"), "--count", "2", "--trials", "20", "--neurons", "7")
    assert result.returncode == 0
    zips = result.stdout.split()
    assert len(zips) == 2 and all(Path(z).is_file() for z in zips)
    ingested = run_cli("ingest", "--db", str(tmp_path / "ex.duckdb"), *zips)
    assert ingested.returncode == 0 and "2 ingested" in ingested.stdout


def test_shell_without_the_duckdb_binary_says_how_to_get_it(tmp_path, lab_db, monkeypatch):
    from scandb import shell as shellcmd
    monkeypatch.setattr(shellcmd.sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    assert shellcmd.find_duckdb_shell() is None
    from click.testing import CliRunner
    from scandb.cli import cli
    result = CliRunner().invoke(cli, ["shell", "--db", str(lab_db)])
    assert result.exit_code != 0
    assert "pip install duckdb-cli" in str(result.exception)


def test_progress_bar_on_a_terminal_plain_lines_otherwise(tmp_path):
    import fcntl
    import pty
    import struct
    import termios
    scan = make_scan(tmp_path, n_trials=40)
    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    process = subprocess.Popen([sys.executable, "-m", "scandb", "ingest", "--db", str(tmp_path / "t.duckdb"),
                                str(scan)], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=child,
                               preexec_fn=ahead_of_ingest_nice)
    os.close(child)
    out, _ = process.communicate(timeout=120)
    terminal = b""
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:
            break
        if not chunk:
            break
        terminal += chunk
    os.close(main)
    assert process.returncode == 0
    assert b"trial" in terminal and b"/40" in terminal
    plain = run_process("ingest", "--db", str(tmp_path / "p.duckdb"), str(scan))
    assert plain.stderr == "" and plain.stdout.startswith("26872-17-20: ingested 40 trials")


@pytest.mark.parametrize("name", ["main", "memory", "scandb"])
def test_any_database_file_name_works(tmp_path, name):
    scan = make_scan(tmp_path, n_trials=20)
    result = run_cli("ingest", "--db", str(tmp_path / f"{name}.duckdb"), str(scan))
    assert result.returncode == 0, result.stderr
    assert "(1 row)" in run_cli("scans", "--db", str(tmp_path / f"{name}.duckdb")).stdout


# -- sql: empty input, several statements, long values -------------------------------------


@pytest.mark.parametrize("query", ["", "   ", "/* only a comment */", ";"])
def test_sql_without_a_statement_is_a_usage_error(lab_db, query):
    result = run_cli("sql", "--db", str(lab_db), query)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "no SQL statement given" in result.stderr


def test_sql_prints_the_result_of_every_statement(lab_db):
    query = ("SELECT count(*) AS n_scans FROM scans; SET threads = 1; "
             "SELECT count(*) AS n_neurons FROM neurons;")
    table = run_cli("sql", "--db", str(lab_db), query)
    assert table.returncode == 0, table.stderr
    first, second = table.stdout.strip().split("\n\n")
    assert first.split()[:3] == ["n_scans", "-------", "3"]
    assert second.split()[:3] == ["n_neurons", "---------", str(sum(s.n_neurons for s in THREE_SPECS))]
    csv = run_cli("sql", "--db", str(lab_db), "--csv", query).stdout.split()
    assert csv == ["n_scans", "3", "n_neurons", str(sum(s.n_neurons for s in THREE_SPECS))]
    documents = run_cli("sql", "--db", str(lab_db), "--json", query).stdout
    decoder, found, at = json.JSONDecoder(), [], 0
    while at < len(documents.strip()):
        value, at = decoder.raw_decode(documents, at)
        found.append(value)
        at += len(documents[at:]) - len(documents[at:].lstrip())
    assert found == [[{"n_scans": 3}], [{"n_neurons": sum(s.n_neurons for s in THREE_SPECS)}]]


def test_a_failing_statement_stops_the_rest_with_one_line(lab_db):
    result = run_cli("sql", "--db", str(lab_db), "SELECT 1 AS one; SELECT * FROM nowhere; SELECT 2 AS two")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "nowhere" in result.stderr
    assert result.stdout.split() == ["one", "---", "1", "(1", "row)"]


def test_a_long_response_list_is_shortened_in_tables_and_whole_in_csv(tmp_path):
    db = tmp_path / "wide.duckdb"
    scan = make_scan(tmp_path, n_trials=20, n_neurons=8000)
    assert run_cli("ingest", "--db", str(db), str(scan)).returncode == 0
    query = "SELECT trial_id, response FROM responses WHERE trial_id = 0"
    table = run_cli("sql", "--db", str(db), query)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert len(lines) == 4 and max(len(line) for line in lines) <= 100
    assert lines[2].startswith("0") and lines[2].endswith("…") and "[" in lines[2]
    csv = run_cli("sql", "--db", str(db), "--csv", query).stdout.splitlines()
    assert len(csv[1].split(",")) == 8000 + 1


# -- opening a database ----------------------------------------------------------------------


def sqlite_file(path: Path) -> Path:
    import sqlite3
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes (text TEXT)")
    return path


OFFLINE_ENV = {"HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
               "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}
"""A proxy nothing listens on: any download attempt fails at once."""


@pytest.mark.parametrize("command", [("scans",), ("sql", "SELECT 1"), ("ingest", "SCAN"), ("migrate",),
                                     ("shell", "--write")])
@pytest.mark.parametrize("kind", ["sqlite", "text"])
def test_a_foreign_file_is_not_a_scandb_database(tmp_path, command, kind):
    foreign = sqlite_file(tmp_path / "notes.db") if kind == "sqlite" else tmp_path / "notes.db"
    if kind == "text":
        foreign.write_text("scan_key,trial_id\n1-2-3,0\n")
    content = foreign.read_bytes()
    args = [str(make_scan(tmp_path)) if a == "SCAN" else a for a in command]
    env = {k: v for k, v in os.environ.items() if k != "SCANDB_DEBUG"} | OFFLINE_ENV
    result = subprocess.run([sys.executable, "-m", "scandb", *args, "--db", str(foreign)], capture_output=True,
                            text=True, env=env, timeout=120, preexec_fn=ahead_of_ingest_nice)
    assert result.returncode == 4
    assert result.stderr.strip() == f"scandb: error: {foreign}: not a scandb database (" + (
        "a SQLite database)" if kind == "sqlite" else "not a DuckDB file)")
    assert foreign.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("static")) == ["notes.db"]


def test_python_errors_name_python_arguments_and_the_cli_names_options(tmp_path):
    import scandb
    db = tmp_path / "held.duckdb"
    scan = make_scan(tmp_path, n_trials=20)
    assert run_cli("ingest", "--db", str(db), str(scan)).returncode == 0
    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys; c = duckdb.connect(sys.argv[1]); "
                               "print('holding', flush=True); sys.stdin.read()", str(db)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "holding\n"
        started = time.monotonic()
        with pytest.raises(scandb.DatabaseError) as raised:
            scandb.connect(db, wait=0)
        assert "pass wait=SECONDS" in str(raised.value) and "--wait" not in str(raised.value)
        cli = run_process("scans", "--db", str(db), "--wait", "0")
        assert cli.returncode == 4 and "pass --wait SECONDS" in cli.stderr and "wait=" not in cli.stderr
        assert cli.stderr.count("\n") == 1 and "in use by another process" in cli.stderr
        assert time.monotonic() - started < DEFAULT_WAIT / 2  # at once, not after the default wait
        waited = run_process("scans", "--db", str(db), "--wait", "0.5")
        assert waited.returncode == 4
        waiting, error = waited.stderr.splitlines()
        assert waiting.startswith(f"scandb: {db}: in use by ") and waiting.endswith("waiting up to 0.5 s")
        assert error.endswith("(waited 0.5 s)")
    finally:
        holder.communicate("", timeout=60)


# -- ingest leaves nothing behind when nothing went in ----------------------------------------


def test_a_failed_ingest_leaves_no_new_database_file(tmp_path):
    bad = tmp_path / "not_a_scan"
    bad.mkdir()
    (bad / "notes.txt").write_text("hello")
    db = tmp_path / "new.duckdb"
    result = run_cli("ingest", "--db", str(db), str(bad))
    assert result.returncode == 3 and "not a scan" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not_a_scan"]
    good = make_scan(tmp_path, n_trials=20)
    mixed = run_cli("ingest", "--db", str(db), str(bad), str(good))
    assert mixed.returncode == 3 and "1 ingested; 1 failed" in mixed.stderr
    assert "(1 row)" in run_cli("scans", "--db", str(db)).stdout


def test_a_failed_ingest_into_an_existing_database_keeps_it(tmp_path):
    db = tmp_path / "kept.duckdb"
    assert run_cli("migrate", "--db", str(db)).returncode == 0
    bad = tmp_path / "empty"
    bad.mkdir()
    assert run_cli("ingest", "--db", str(db), str(bad)).returncode == 3
    assert db.is_file() and "(0 rows)" in run_cli("scans", "--db", str(db)).stdout


@pytest.mark.parametrize("layout", ["empty", "zips"])
def test_a_folder_that_is_not_a_scan_says_so(tmp_path, layout):
    folder = tmp_path / "downloads"
    folder.mkdir()
    if layout == "zips":
        make_scan(folder, n_trials=20)
        make_scan(folder, n_trials=20, animal_id=30000)
    result = run_cli("ingest", "--db", str(tmp_path / "x.duckdb"), str(folder))
    assert result.returncode == 3
    expected = ("empty folder: not a scan" if layout == "empty"
                else "a folder holding 2 zip files, not a scan: give the scan zips themselves")
    assert result.stderr.startswith(f"scandb: error: {folder}: {expected}")


# -- the DuckDB shell opened for writing ------------------------------------------------------


def row_groups(db: Path, table: str) -> int:
    import duckdb
    with duckdb.connect(str(db), read_only=True) as conn:
        return conn.execute(f"SELECT count(DISTINCT row_group_id) FROM pragma_storage_info('{table}')").fetchone()[0]


def test_shell_write_keeps_scandb_row_group_size(tmp_path, lab_db):
    import shutil
    from scandb.catalog.database import ROW_GROUP_SIZE
    from scandb.shell import find_duckdb_shell
    binary = find_duckdb_shell()
    if binary is None:
        pytest.skip("duckdb-cli is not installed")
    create = "CREATE TABLE mine AS SELECT range AS i FROM range(10000);\n"
    copy = shutil.copy(lab_db, tmp_path / "copy.duckdb")
    result = subprocess.run([sys.executable, "-m", "scandb", "shell", "--write", "--db", str(copy)], input=create,
                            capture_output=True, text=True, timeout=120, preexec_fn=ahead_of_ingest_nice)
    assert result.returncode == 0 and not result.stderr, result.stderr
    assert row_groups(copy, "mine") == -(-10000 // ROW_GROUP_SIZE)
    plain = shutil.copy(lab_db, tmp_path / "plain.duckdb")
    subprocess.run([binary, str(plain)], input=create, capture_output=True, text=True, timeout=120, check=True)
    assert row_groups(plain, "mine") == 1


def test_scans_lists_each_scan_with_its_image_shape_as_a_list(lab_db):
    from scandb.catalog.database import Database

    with Database(lab_db) as db:
        expected = db.conn.execute("SELECT scan_key, image_shape FROM scans ORDER BY 1").fetchall()
    result = run_cli("scans", "--db", str(lab_db))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for scan_key, shape in expected:
        line = next(line for line in lines if line.startswith(scan_key))
        assert "[" + ", ".join(map(str, shape)) + "]" in line
    assert lines[-1] == f"({len(expected)} rows)"


NICENESS_AFTER_INGEST = """
import os, sys
from scandb.cli import main
try:
    main()
finally:
    print("niceness", os.nice(0), file=sys.stderr)
"""


@pytest.mark.parametrize(("option", "expected"), [((), 10), (("--nice", "0"), 0), (("--nice", "3"), 3)])
def test_ingest_runs_at_lower_cpu_priority_so_readers_keep_their_speed(tmp_path, three_scans, option, expected):
    start = os.nice(0)
    result = subprocess.run([sys.executable, "-c", NICENESS_AFTER_INGEST, "ingest", *option,
                             "--db", str(tmp_path / "lab.duckdb"), str(three_scans[0][1])],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"niceness {min(start + expected, 19)}" in result.stderr
