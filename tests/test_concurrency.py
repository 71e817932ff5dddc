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

from scandb.synthetic import write_zip

from .conftest import digest_database
from .hostile import (BAD_SPEC, BIG_SPEC, GOOD_SPEC, PrimedCommand, bad_base, before, big_scan,  # noqa: F401
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
                                        stdout=subprocess.PIPE, text=True)

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


def test_a_second_writer_during_a_real_ingest(good_db, big_scan, second_scan):
    second = PrimedCommand("ingest", second_scan, "--db", good_db)
    already = len(image_files(good_db))
    first = subprocess.Popen(scandb_command("ingest", big_scan, "--db", good_db),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert wait_for(lambda: len(image_files(good_db)) > already, timeout=60, interval=0.005), \
        "the first ingest wrote no image file within 60 s"

    refused = second.run()

    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert refused.code == 4, refused
    assert f"PID {first.pid})" in refused.error and "pass --wait SECONDS" in refused.error
    assert scan_keys(good_db) == [GOOD_SPEC.key, BIG_SPEC.key]


def test_readers_share_the_database_and_keep_writers_out(good_db, before, second_scan, hold):
    readers = [hold(good_db, "read"), hold(good_db, "read")]
    for reader in readers:
        reader.holding()

    listing = run_cli("scans", "--db", str(good_db))
    verified = run_cli("verify", "--db", str(good_db))
    writer = run_cli("ingest", str(second_scan), "--db", str(good_db))

    assert listing.code == 0 and GOOD_SPEC.key in listing.out
    assert verified.code == 0, verified
    assert writer.code == 4
    assert any(f"PID {reader.pid})" in writer.error for reader in readers)
    for reader in readers:
        reader.release()
    assert digest_database(good_db) == before
