"""Many processes on one lake: readers (a held connection, the DuckDB shell, a DataLoader)
run while an ingest is inside its transaction; two ingests of different scans both commit;
two ingests of the same scan give one scan; a killed ingest leaves nothing visible and its
files are collected. On a SQLite and on a PostgreSQL catalog (tests/lakes.py): concurrent
writers, conflicts and a killed writer's open transaction are the catalog's own business.
The racing processes are real; set-up and checks (migrate, verify) run in this process.

An ingest (of a scan or a session) is paused inside its transaction (all its rows written,
just before its digests and commit) by wrapping ``record_digests``, so the overlap is certain, not a matter of timing.
Writers on a lake take a lock file in the data path, so a second one waits; the tests of
the conflict itself switch that lock off, as a share whose locks do not work would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import scandb
from scandb.catalog import lake as lakes
from scandb.catalog.database import Database
from scandb.synthetic import ScanSpec, generate, write_zip

from .hostile import Run, ahead_of_ingest_nice, run_cli, scandb_command
from .lakes import on_both_catalogs
from .scans import source

FIRST = ScanSpec(animal_id=51001, seed=5, n_trials=40, n_neurons=30)
SECOND = ScanSpec(animal_id=52002, seed=6, n_trials=40, n_neurons=25)
"""Two scans of different animals; they share the test images (as Sensorium scans do)."""

PAUSED_INGEST = """
import contextlib
import sys
import scandb.ingest.session as session_writer
import scandb.ingest.writer as writer
from scandb.catalog.database import Database
from scandb.cli import main

if sys.argv.pop(1) == "without-lock":  # a share whose file locks do not work
    Database.writer_lock = lambda self: contextlib.nullcontext()

record = writer.record_digests
paused = False

def pause_then_record(db, scan_key, *rest):
    global paused
    if not paused:  # the first attempt only: a retried ingest goes straight through
        paused = True
        print("inside", flush=True)
        sys.stdin.readline()
    return record(db, scan_key, *rest)

writer.record_digests = pause_then_record
session_writer.record_digests = pause_then_record
sys.argv = ["scandb", "ingest", *sys.argv[1:]]
main()
"""


class PausedIngest:
    """``scandb ingest ARGS`` in a subprocess that stops inside its transaction until released."""

    def __init__(self, *args, lock: bool = True):
        self.process = subprocess.Popen([sys.executable, "-c", PAUSED_INGEST, "with-lock" if lock else "without-lock",
                                         *map(str, args)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True, preexec_fn=ahead_of_ingest_nice)

    def inside(self) -> "PausedIngest":
        line = self.process.stdout.readline().strip()
        if not line:  # stdout closed: the process is exiting; wait for it so its stderr shows below
            self.process.wait(timeout=60)
        assert line == "inside", (line, self.process.stderr.read() if self.process.poll() is not None else "")
        return self

    def release(self) -> None:
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def finish(self, timeout: float = 180) -> Run:
        out, err = self.process.communicate(timeout=timeout)
        return Run(self.process.returncode, out, err.splitlines())


def commit_at_once(ingests: list[PausedIngest]) -> list[Run]:
    """Let paused ingests commit at the same moment (without the writer lock, one conflicts
    and retries); their runs once finished, each of which must have succeeded."""
    for ingest in ingests:
        ingest.inside()
    for ingest in ingests:
        ingest.release()
    runs = [ingest.finish() for ingest in ingests]
    assert [r.code for r in runs] == [0] * len(runs), runs
    return runs


@pytest.fixture(scope="module")
def scans(tmp_path_factory) -> dict[str, Path]:
    """The two scans as zips, written once: tests only read them."""
    folder = tmp_path_factory.mktemp("lake-concurrency-scans")
    return {spec.key: write_zip(generate(spec), folder / f"{spec.name}.zip") for spec in (FIRST, SECOND)}


@pytest.fixture
def lake_with_first(lake, scans, fill_lake):
    return fill_lake(lake, scans[FIRST.key])


def scan_keys(url: str) -> list[str]:
    with Database(url) as db:
        return sorted(r[0] for r in db.conn.execute("SELECT scan_key FROM scans").fetchall())


def assert_consistent(url: str, expected_scans: list[str]) -> None:
    """One row per scan and per image, and verify finds nothing wrong."""
    with Database(url) as db:
        assert sorted(r[0] for r in db.conn.execute("SELECT scan_key FROM scans").fetchall()) == expected_scans
        assert db.conn.execute("SELECT image_hash FROM images GROUP BY ALL HAVING count(*) > 1").fetchall() == []
        assert db.conn.execute("SELECT scan_key, trial_id FROM trials GROUP BY ALL HAVING count(*) > 1"
                               ).fetchall() == []
    verified = run_cli("verify", "--db", url)
    assert verified.code == 0, verified


READER = """
import sys
import scandb
db = scandb.connect(sys.argv[1])
for line in sys.stdin:  # each line asks again, on the same held connection
    print(",".join(sorted(db.scans()["scan_key"])), flush=True)
"""

TRAINING = """
import sys
import numpy as np
import torch
from scandb.torchdata import ScanDataset
dataset = ScanDataset(sys.argv[1], sys.argv[2], keys=("images", "responses"), normalize=False)
loader = torch.utils.data.DataLoader(dataset, batch_size=8, num_workers=2)
for epoch in range(2):
    batches = list(loader)
    np.save(f"{sys.argv[3]}.{epoch}.images.npy", np.concatenate([b.images.numpy() for b in batches]))
    np.save(f"{sys.argv[3]}.{epoch}.responses.npy", np.concatenate([b.responses.numpy() for b in batches]))
"""


@on_both_catalogs
def test_readers_run_while_an_ingest_is_inside_its_transaction(lake_with_first, scans, tmp_path):
    pytest.importorskip("torch")
    lake = lake_with_first
    reader = subprocess.Popen([sys.executable, "-c", READER, lake.url], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, preexec_fn=ahead_of_ingest_nice)

    def ask() -> str:
        reader.stdin.write("again\n")
        reader.stdin.flush()
        return reader.stdout.readline().strip()

    try:
        assert ask() == FIRST.key  # the reader holds its connection from here on
        ingest = PausedIngest(scans[SECOND.key], "--db", lake.url).inside()
        assert ask() == FIRST.key
        shell = subprocess.run(scandb_command("shell", "--db", lake.url), input=".mode csv\n"
                               "SELECT count(*) FROM trials;\n", capture_output=True, text=True, timeout=120,
                               preexec_fn=ahead_of_ingest_nice)
        assert shell.returncode == 0 and shell.stdout.split()[-1] == str(FIRST.n_trials), shell
        selection = f"SELECT scan_key, trial_id FROM trials WHERE scan_key = '{FIRST.key}' ORDER BY trial_id"
        training = subprocess.run([sys.executable, "-c", TRAINING, lake.url, selection, str(tmp_path / "epoch")],
                                  capture_output=True, text=True, timeout=300, preexec_fn=ahead_of_ingest_nice)
        assert training.returncode == 0, training.stderr
        for epoch in range(2):
            for key in ("images", "responses"):
                got = np.load(tmp_path / f"epoch.{epoch}.{key}.npy")
                np.testing.assert_array_equal(got, source(FIRST, key).reshape(got.shape))
        ingest.release()
        done = ingest.finish()
        assert done.code == 0, done
        assert ask() == f"{FIRST.key},{SECOND.key}"  # the held connection sees the commit
    finally:
        reader.stdin.close()
        reader.wait(timeout=30)
    assert_consistent(lake.url, sorted([FIRST.key, SECOND.key]))


@on_both_catalogs
def test_a_second_ingest_waits_for_the_first_and_both_commit(lake, scans):
    assert run_cli("migrate", "--db", lake.url, "--data-path", str(lake.data)).code == 0
    first = PausedIngest(scans[FIRST.key], "--db", lake.url).inside()
    second = subprocess.Popen(scandb_command("ingest", scans[SECOND.key], "--db", lake.url),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              preexec_fn=ahead_of_ingest_nice)
    assert second.stderr.readline().strip() == \
        f"scandb: {lakes.parse(lake.url).name}: another process is writing to the lake; waiting for it"
    first.release()
    runs = [first.finish(), Run(second.wait(timeout=180), second.stdout.read(), second.stderr.read().splitlines())]
    assert [r.code for r in runs] == [0, 0], runs
    assert not any("retrying" in line for r in runs for line in r.err_lines), runs
    assert_consistent(lake.url, sorted([FIRST.key, SECOND.key]))


@on_both_catalogs
def test_two_ingests_of_different_scans_at_once_both_commit(lake, scans):
    assert run_cli("migrate", "--db", lake.url, "--data-path", str(lake.data)).code == 0
    runs = commit_at_once([PausedIngest(scans[key], "--db", lake.url, lock=False) for key in (FIRST.key, SECOND.key)])
    assert any("another process committed first; retrying" in line for r in runs for line in r.err_lines), runs
    assert_consistent(lake.url, sorted([FIRST.key, SECOND.key]))
    with scandb.connect(lake.url) as db:
        for spec in (FIRST, SECOND):
            got = db.fetch(f"SELECT scan_key, trial_id FROM trials WHERE scan_key = '{spec.key}' ORDER BY ALL",
                           "responses", "images")
            for key in ("responses", "images"):
                np.testing.assert_array_equal(got[key], source(spec, key).reshape(got[key].shape))


@on_both_catalogs
def test_the_same_scan_from_two_processes_goes_in_once(lake, scans):
    assert run_cli("migrate", "--db", lake.url, "--data-path", str(lake.data)).code == 0
    ingests = [PausedIngest(scans[FIRST.key], "--db", lake.url, lock=False) for _ in range(2)]
    for ingest in ingests:
        ingest.inside()
    for ingest in ingests:
        ingest.release()
    runs = [ingest.finish() for ingest in ingests]
    assert [r.code for r in runs] == [0, 0], runs
    outcomes = sorted(r.out.splitlines()[-1].split(": ", 1)[1].split(" ")[0] for r in runs)
    assert outcomes == ["already", "ingested"], runs
    assert_consistent(lake.url, [FIRST.key])
    with Database(lake.url) as db:
        assert db.conn.execute("SELECT count(*) FROM trials").fetchone()[0] == FIRST.n_trials


@on_both_catalogs
def test_a_killed_ingest_leaves_nothing_visible_and_its_files_are_collected(lake_with_first, scans):
    lake = lake_with_first
    store = lake.data / lakes.STORE_FOLDER
    before = {p for p in store.rglob("*") if p.is_file()}
    ingest = PausedIngest(scans[SECOND.key], "--db", lake.url).inside()
    left = {p for p in store.rglob("*") if p.is_file()} - before
    assert any(p.parent.name == "responses" for p in left)  # its matrix and images are on disk
    os.kill(ingest.process.pid, signal.SIGKILL)
    ingest.finish()
    assert scan_keys(lake.url) == [FIRST.key]
    verified = run_cli("verify", "--db", lake.url)  # young files may be another ingest's: not damage
    assert verified.code == 0, verified
    assert all(p.exists() for p in left)
    hours_ago = time.time() - lakes.IN_FLIGHT_S - 60
    for path in left:
        os.utime(path, (hours_ago, hours_ago))
    assert "orphan" in run_cli("verify", "--db", lake.url).out
    again = run_cli("ingest", str(scans[FIRST.key]), "--db", lake.url)  # any ingest collects them
    assert again.code == 0, again
    assert not any(p.exists() for p in left)
    assert {p for p in store.rglob("*") if p.is_file()} == before
    assert_consistent(lake.url, [FIRST.key])
