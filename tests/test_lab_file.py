"""One database file shared by readers and writers in separate processes: an idle
connection does not block an ingest, a read waits for a writer when asked to, a training
job runs through an ingest, and a multi-scan ingest lets readers in between its scans."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import scandb
from scandb.errors import DatabaseError
from scandb.synthetic import ScanSpec, generate, write_zip

from .hostile import BAD_SPEC, GOOD_SPEC, ahead_of_ingest_nice, bad_base, before, good_db, run_cli, run_scandb, template_db  # noqa: F401
from .test_concurrency import Holder

IDLE_READER = """
import sys
import scandb
db = scandb.connect(sys.argv[1])
print(",".join(db.scans()["scan_key"]), flush=True)
for line in sys.stdin:  # each line asks again, on the same connection
    print(",".join(db.scans()["scan_key"]), flush=True)
"""
"""A notebook: connects, reads, then sits idle with the connection open until asked again."""


class IdleReader:
    def __init__(self, db: Path):
        self.process = subprocess.Popen([sys.executable, "-c", IDLE_READER, str(db)], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True, preexec_fn=ahead_of_ingest_nice)

    def scans(self) -> list[str]:
        return self.process.stdout.readline().strip().split(",")

    def ask(self) -> list[str]:
        self.process.stdin.write("again\n")
        self.process.stdin.flush()
        return self.scans()

    def close(self) -> None:
        self.process.stdin.close()
        assert self.process.wait(timeout=30) == 0
        self.process.stdout.close()


@pytest.fixture
def second_scan(tmp_path, bad_base) -> Path:
    return write_zip(bad_base, tmp_path / f"{BAD_SPEC.name}.zip")


def test_an_idle_connection_in_another_process_does_not_block_an_ingest(good_db, second_scan):
    reader = IdleReader(good_db)
    try:
        assert reader.scans() == [GOOD_SPEC.key]
        run = run_scandb("ingest", str(second_scan), "--db", str(good_db), "--wait", "0")  # blocked: fails at once
        assert run.code == 0, run
        assert sorted(reader.ask()) == sorted([GOOD_SPEC.key, BAD_SPEC.key])  # and it sees the new scan
    finally:
        reader.close()


def test_variables_and_temporary_tables_outlast_calls_while_a_writer_gets_in_between(good_db, second_scan):
    """One DuckDB session per connection, as in the DuckDB shell, though the file itself is
    closed between calls (the ingest with --wait 0 proves it)."""
    db = scandb.connect(good_db)
    try:
        db.sql("SET VARIABLE x = 1")
        db.sql("CREATE TEMP TABLE seen AS SELECT scan_key FROM scans")
        run = run_scandb("ingest", str(second_scan), "--db", str(good_db), "--wait", "0")
        assert run.code == 0, run
        assert db.sql("SELECT getvariable('x')").fetchall() == [(1,)]
        assert db.sql("SELECT scan_key FROM seen").fetchall() == [(GOOD_SPEC.key,)]
        assert sorted(db.scans()["scan_key"]) == sorted([GOOD_SPEC.key, BAD_SPEC.key])  # and it sees the new scan
    finally:
        db.close()


def test_a_read_waits_for_a_writer_saying_so_then_fails_in_one_line(good_db, caplog):
    db = scandb.connect(good_db, wait=1)
    holder = Holder(good_db, "write").holding()
    try:
        started = time.monotonic()
        with caplog.at_level(logging.INFO, logger="scandb"), pytest.raises(DatabaseError) as failed:
            db.scans()
        assert time.monotonic() - started >= 1
        assert f"PID {holder.pid}); waiting up to 1 s" in caplog.text
        message = str(failed.value)
        assert "\n" not in message and str(good_db) in message and "(waited 1 s)" in message
    finally:
        holder.release()
    assert list(db.scans()["scan_key"]) == [GOOD_SPEC.key]  # the same connection reads once the writer left
    db.close()


def test_a_read_waiting_long_enough_gets_in_once_the_writer_leaves(good_db):
    db = scandb.connect(good_db, wait=30)
    holder = Holder(good_db, "write").holding()
    threading.Timer(1.0, holder.release).start()
    try:
        assert list(db.scans()["scan_key"]) == [GOOD_SPEC.key]
    finally:
        if holder.process.poll() is None:
            holder.release()
        db.close()


PAUSING_INGEST = """
import sys
import scandb
def pause(result):
    print(result.status, result.scan_key, flush=True)
    sys.stdin.readline()
db = scandb.connect(sys.argv[1], read_only=False)
db.ingest(sys.argv[2:], on_result=pause)
db.close()
"""
"""An ingest of several scans that stops after each one until told to go on."""


def test_a_multi_scan_ingest_lets_readers_in_between_scans(good_db, second_scan, tmp_path):
    third = write_zip(generate(ScanSpec(animal_id=30002, seed=12, n_trials=30, n_neurons=20)), tmp_path / "third.zip")
    ingest = subprocess.Popen([sys.executable, "-c", PAUSING_INGEST, str(good_db), str(second_scan), str(third)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              preexec_fn=ahead_of_ingest_nice)
    try:
        assert ingest.stdout.readline().split() == ["ingested", BAD_SPEC.key]
        with scandb.connect(good_db, wait=0) as db:  # between the two scans, with no wait
            assert sorted(db.scans()["scan_key"]) == sorted([GOOD_SPEC.key, BAD_SPEC.key])
            np.testing.assert_array_equal(db.responses(range(3), scan=BAD_SPEC.key),
                                          np.stack([generate(BAD_SPEC).arrays[f"data/responses/{i}.npy"]
                                                    for i in range(3)]))
        ingest.stdin.write("go\n")
        ingest.stdin.flush()
        assert ingest.stdout.readline().split()[0] == "ingested"
        ingest.stdin.write("go\n")
        ingest.stdin.flush()
        assert ingest.wait(timeout=60) == 0
    finally:
        if ingest.poll() is None:
            ingest.kill()
        ingest.stdin.close()
        ingest.stdout.close()
    with scandb.connect(good_db) as db:
        assert len(db.scans()) == 3


def test_a_relation_from_sql_stays_usable_after_another_process_writes(good_db, second_scan):
    db = scandb.connect(good_db)
    relation = db.sql("SELECT scan_key, trial_id FROM trials ORDER BY trial_id LIMIT 5")
    assert run_scandb("ingest", str(second_scan), "--db", str(good_db)).code == 0
    assert relation.fetchall() == [(GOOD_SPEC.key, i) for i in range(5)]
    assert len(db.fetch(relation, "responses")["responses"]) == 5
    db.close()


def test_scandb_db_names_the_database_for_commands_and_connect(good_db, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no scandb.duckdb here: only the variable can lead to good_db
    monkeypatch.setenv("SCANDB_DB", str(good_db))
    run = run_cli("sql", "SELECT scan_key FROM scans", "--csv")
    assert run.code == 0 and run.out.split() == ["scan_key", GOOD_SPEC.key], run
    with scandb.connect() as db:
        assert list(db.scans()["scan_key"]) == [GOOD_SPEC.key]
    assert run_cli("scans", "--db", str(tmp_path / "other.duckdb")).code == 4  # --db wins over the variable
