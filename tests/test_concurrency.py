"""DuckDB's rule, one writing process and no other process while it writes, as users meet it.

Other processes hold the database here; this test process is the second party, running the
command line in-process, or in a subprocess where it must run while this process waits.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from scandb.catalog import DEFAULT_WAIT
from scandb.synthetic import ScanSpec, generate, write_zip

from .conftest import digest_database
from .hostile import (BAD_SPEC, BIG_SPEC, GOOD_SPEC, PrimedCommand, ahead_of_ingest_nice, bad_base, before, big_scan,  # noqa: F401
                      good_db, image_files, run_cli, scan_keys, scandb_command, template_db, wait_for)

HOLDER = """
import sys
from scandb.catalog.database import Database
with Database(sys.argv[1], read_only=sys.argv[2] == "read") as db:
    db.conn.execute("SELECT count(*) FROM scans").fetchone()
    print("holding", flush=True)
    sys.stdin.read()
"""
"""A process that opens the database and keeps it open until its stdin closes."""


class Holder:
    """Another process with the database open (started at once; ``holding`` waits for it)."""

    def __init__(self, db: Path, mode: str):
        self.process = subprocess.Popen([sys.executable, "-c", HOLDER, str(db), mode], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True, preexec_fn=ahead_of_ingest_nice)

    @property
    def pid(self) -> int:
        return self.process.pid

    def holding(self) -> "Holder":
        assert self.process.stdout.readline().strip() == "holding"
        return self

    def release(self) -> None:
        self.process.stdin.close()
        assert self.process.wait(timeout=30) == 0
        self.process.stdout.close()


@pytest.fixture
def hold():
    """Start processes holding a database open; all are released at the end of the test."""
    holders: list[Holder] = []

    def start(db: Path, mode: str) -> Holder:
        holders.append(Holder(db, mode))
        return holders[-1]
    yield start
    for holder in holders:
        if holder.process.poll() is None:
            holder.release()


@pytest.fixture
def second_scan(tmp_path, bad_base) -> Path:
    return write_zip(bad_base, tmp_path / f"{BAD_SPEC.name}.zip")


def test_a_second_writer_waits_then_names_the_holder(good_db, before, second_scan, hold):
    holder = hold(good_db, "write").holding()
    started = time.monotonic()
    run = run_cli("ingest", str(second_scan), "--db", str(good_db), "--wait", "1")
    assert time.monotonic() - started >= 1
    assert run.code == 4
    waiting, error = run.err_lines
    assert f"PID {holder.pid}); waiting up to 1 s" in waiting
    assert "in use by another process (" in error and f"PID {holder.pid})" in error
    assert "(waited 1 s)" in error
    holder.release()
    assert digest_database(good_db) == before


def test_a_second_writer_goes_ahead_once_the_holder_leaves(good_db, second_scan, hold):
    holder = hold(good_db, "write")
    second = PrimedCommand("ingest", second_scan, "--db", good_db, "--wait", "30")
    holder.holding()
    second.fire()
    waiting = second.process.stderr.readline()  # printed once it found the holder and began to wait
    assert f"PID {holder.pid}); waiting up to 30 s" in waiting, waiting
    assert second.process.poll() is None, "the second writer should still be waiting"
    holder.release()
    run = second.finish()
    assert run.code == 0, run
    assert f"{BAD_SPEC.key}: ingested" in run.out


THIRD_SPEC = ScanSpec(animal_id=30002, seed=12, n_trials=30, n_neurons=20)


def wait_for_store_to_grow(db: Path, already: int) -> None:
    """Until an ingest in another process is inside its transaction (it writes image files)."""
    assert wait_for(lambda: len(image_files(db)) > already, timeout=60, interval=0.005), \
        "the first ingest wrote no image file within 60 s"


def test_a_second_ingest_started_during_a_running_one_waits_and_both_go_in(good_db, big_scan, second_scan,
                                                                           tmp_path):
    """The first ingest of two scans releases the file between them; the second, by default,
    waits for it, and the first waits in turn if the second got the file in between."""
    third = write_zip(generate(THIRD_SPEC), tmp_path / f"{THIRD_SPEC.name}.zip")
    second = PrimedCommand("ingest", third, "--db", good_db)
    already = len(image_files(good_db))
    first = subprocess.Popen(scandb_command("ingest", big_scan, second_scan, "--db", good_db),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             preexec_fn=ahead_of_ingest_nice)
    wait_for_store_to_grow(good_db, already)

    waited = second.run()

    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert "2 scans: 2 ingested" in out
    assert waited.code == 0, waited
    assert f"PID {first.pid}); waiting up to {DEFAULT_WAIT:g} s" in waited.err_lines[0]  # it did meet the first
    assert scan_keys(good_db) == sorted([GOOD_SPEC.key, BIG_SPEC.key, BAD_SPEC.key, THIRD_SPEC.key])


POLLER = """
import sys, time
from pathlib import Path
import scandb.cli
db, stop = sys.argv[1], Path(sys.argv[2])
codes = []
while True:
    last = stop.exists()  # one poll more once the stop file is there
    sys.argv = ["scandb", "sql", "--db", db, "--csv", "SELECT count(*) AS n FROM scans"]
    code = 0
    try:
        scandb.cli.main()
    except SystemExit as exit:
        code = exit.code or 0
    codes.append(code)
    sys.stdout.flush()
    if last:
        break
    time.sleep(0.05)
print("exit codes", *codes, flush=True)
"""
"""``scandb sql`` run again and again in one process (no start-up time between polls)
until a stop file appears, and once after; prints each count, then every exit code."""


def test_an_ingest_succeeds_while_scandb_sql_polls_and_every_poll_succeeds(good_db, big_scan, second_scan,
                                                                          tmp_path):
    stop = tmp_path / "stop"
    poller = subprocess.Popen([sys.executable, "-c", POLLER, str(good_db), str(stop)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, preexec_fn=ahead_of_ingest_nice)
    try:
        assert poller.stdout.readline().strip() == "n"  # polling
        ingest = subprocess.run(scandb_command("ingest", big_scan, second_scan, "--db", good_db),
                                capture_output=True, text=True, timeout=120, preexec_fn=ahead_of_ingest_nice)
    finally:
        stop.touch()
        out, err = poller.communicate(timeout=120)
    assert ingest.returncode == 0, ingest.stderr
    assert "2 scans: 2 ingested" in ingest.stdout
    lines = out.splitlines()
    codes = lines[-1].split()[2:]
    assert codes and set(codes) == {"0"}, err
    counts = [int(line) for line in lines[:-1] if line.isdigit()]
    assert counts[0] == 1 and counts[-1] == 3 and counts == sorted(counts)
    assert "waiting up to" in err  # a poll met the ingest holding the file, and waited


def test_a_writer_with_wait_0_fails_at_once_in_one_line(good_db, before, second_scan, hold):
    holder = hold(good_db, "read").holding()
    started = time.monotonic()
    run = run_cli("ingest", str(second_scan), "--db", str(good_db), "--wait", "0")
    assert time.monotonic() - started < DEFAULT_WAIT / 2
    assert run.code == 4
    assert f"PID {holder.pid})" in run.error and "pass --wait SECONDS" in run.error
    holder.release()
    assert digest_database(good_db) == before


def test_readers_share_the_database_and_keep_writers_out(good_db, before, second_scan, hold):
    readers = [hold(good_db, "read"), hold(good_db, "read")]
    for reader in readers:
        reader.holding()

    listing = run_cli("scans", "--db", str(good_db))
    verified = run_cli("verify", "--db", str(good_db))
    writer = run_cli("ingest", str(second_scan), "--db", str(good_db), "--wait", "0")

    assert listing.code == 0 and GOOD_SPEC.key in listing.out
    assert verified.code == 0, verified
    assert writer.code == 4
    assert any(f"PID {reader.pid})" in writer.error for reader in readers)
    for reader in readers:
        reader.release()
    assert digest_database(good_db) == before
