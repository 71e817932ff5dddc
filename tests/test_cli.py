"""The command line as users meet it: help, version, ingest of several paths, sql, info."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from scandb import __version__

from .conftest import THREE_SPECS
from .scans import make_scan

COMMANDS = ("ingest", "scans", "migrate", "sql", "shell", "info", "example")


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "SCANDB_DEBUG"}
    return subprocess.run([sys.executable, "-m", "scandb", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)


def test_help_lists_every_command_and_the_exit_codes():
    result = run_cli("--help")
    assert result.returncode == 0
    for command in COMMANDS:
        assert command in result.stdout
    assert "Exit codes" in result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    result = run_cli(command, "--help")
    assert result.returncode == 0
    assert "Usage: scandb " + command in result.stdout.replace("python -m scandb", "scandb")


def test_version():
    result = run_cli("--version")
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
                                str(scan)], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=child)
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
    plain = run_cli("ingest", "--db", str(tmp_path / "p.duckdb"), str(scan))
    assert plain.stderr == "" and plain.stdout.startswith("26872-17-20: ingested 40 trials")


@pytest.mark.parametrize("name", ["main", "memory", "scandb"])
def test_any_database_file_name_works(tmp_path, name):
    scan = make_scan(tmp_path, n_trials=20)
    result = run_cli("ingest", "--db", str(tmp_path / f"{name}.duckdb"), str(scan))
    assert result.returncode == 0, result.stderr
    assert "(1 row)" in run_cli("scans", "--db", str(tmp_path / f"{name}.duckdb")).stdout
