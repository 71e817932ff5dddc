"""A held connection keeps each scan's reader between calls, so a fetch costs no SQL; it
follows other processes' writes: a replaced or removed scan is read again (or refused) on
the next call, other scans' readers stay. On a file, a SQLite-catalog lake and a
PostgreSQL-catalog lake; writes come from ``scandb`` in other processes."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import scandb
from scandb.errors import UsageError
from scandb.synthetic import ScanSpec, generate, write_zip

from .hostile import ahead_of_ingest_nice, copy_database, run_cli, run_scandb
from .lakes import LakeUnderTest
from .scans import source

FIRST = ScanSpec(animal_id=71001, seed=1, n_trials=30, n_neurons=20)
REPLACEMENT = FIRST.with_(seed=2)
"""The same scan key with other recordings: what ``--replace`` puts in its place."""
OTHER = ScanSpec(animal_id=72002, seed=3, n_trials=25, n_neurons=15)


@pytest.fixture(scope="module")
def zips(tmp_path_factory) -> dict[ScanSpec, Path]:
    """The three scans as zips, written once: tests only read them."""
    folder = tmp_path_factory.mktemp("kept-readers-scans")
    return {spec: write_zip(generate(spec), folder / f"{spec.name}-{spec.seed}.zip")
            for spec in (FIRST, REPLACEMENT, OTHER)}


@pytest.fixture(scope="module")
def file_with_first(tmp_path_factory, zips) -> Path:
    """A database file holding FIRST, ingested once; copy it, never write it."""
    path = tmp_path_factory.mktemp("kept-readers-file") / "lab.duckdb"
    run = run_cli("ingest", str(zips[FIRST]), "--db", str(path))
    assert run.code == 0, run
    return path


@pytest.fixture(params=["file", "sqlite", "postgres"])
def target(request, tmp_path, zips, file_with_first, fill_lake) -> tuple[str, list[str]]:
    """A database holding FIRST, and the options ``scandb ingest`` needs for it.

    FIRST goes in before the test's connection opens, so it is set-up, not a write the
    connection must follow: a copy of a file or a SQLite lake made once (tests/lakes.py),
    an ingest in this process on PostgreSQL. The writes a test then makes come from other
    processes."""
    if request.param == "file":
        return str(copy_database(file_with_first, tmp_path)), []
    lake = request.getfixturevalue("lake")
    if request.param == "sqlite":
        fill_lake(lake, zips[FIRST])
    else:
        lake = LakeUnderTest("postgres", request.getfixturevalue("lake_postgres"), lake.data)
        run = run_cli("ingest", str(zips[FIRST]), "--db", lake.url, "--data-path", str(lake.data))
        assert run.code == 0, run
    return lake.url, ["--data-path", str(lake.data)]


@pytest.fixture
def lake_postgres(pg_server) -> str:
    return f"ducklake:postgres:{pg_server.database()}"


def ingest(url: str, options: list[str], path: Path, *more: str) -> None:
    """``scandb ingest`` in another process, as a lab's other machines write."""
    run = run_scandb("ingest", str(path), "--db", url, *options, *more)
    assert run.code == 0, run


def test_a_replaced_scan_is_read_again_on_the_next_call(target, zips):
    url, options = target
    with scandb.connect(url) as db:
        before = db.fetch(np.arange(FIRST.n_trials), "responses", "images", scan=FIRST.key)
        np.testing.assert_array_equal(before["responses"], source(FIRST, "responses"))
        ingest(url, options, zips[REPLACEMENT], "--replace")
        after = db.fetch(np.arange(FIRST.n_trials), "responses", "images", scan=FIRST.key)
        np.testing.assert_array_equal(after["responses"], source(REPLACEMENT, "responses"))
        np.testing.assert_array_equal(after["images"], source(REPLACEMENT, "images"))
        assert not np.array_equal(after["responses"], before["responses"])


def test_a_connection_left_idle_sees_a_replacement_on_its_next_call(target, zips):
    """Once the catalog's files have been quiet a moment, a connection to a SQLite catalog
    trusts their stat (catalog/newest.py, QUIET_S) until it changes: a commit must change it."""
    url, options = target
    with scandb.connect(url) as db:
        db.fetch([0], scan=FIRST.key)
        time.sleep(1.5)
        db.fetch([1], scan=FIRST.key)  # asks the catalog, and finds its files quiet
        db.fetch([2], scan=FIRST.key)
        ingest(url, options, zips[REPLACEMENT], "--replace")
        np.testing.assert_array_equal(db.fetch(np.arange(FIRST.n_trials), "responses", scan=FIRST.key)["responses"],
                                      source(REPLACEMENT, "responses"))


def test_a_removed_scan_is_refused_on_the_next_call_naming_the_scans_there_are(target, zips):
    url, options = target
    with scandb.connect(url) as db:
        db.fetch([0, 1], scan=FIRST.key)
        ingest(url, options, zips[OTHER])
        assert run_scandb("remove", FIRST.key, "--db", url).code == 0
        with pytest.raises(UsageError, match=f"no scan '{FIRST.key}'.*{OTHER.key}"):
            db.fetch([0, 1], scan=FIRST.key)


def test_another_scans_ingest_leaves_a_kept_reader_reading_the_same_data(target, zips):
    url, options = target
    with scandb.connect(url) as db:
        rows = np.array([3, 0, 7])
        before = db.fetch(rows, "responses", scan=FIRST.key)["responses"]
        ingest(url, options, zips[OTHER])
        np.testing.assert_array_equal(db.fetch(rows, "responses", scan=FIRST.key)["responses"], before)
        np.testing.assert_array_equal(db.fetch(np.arange(OTHER.n_trials), "responses", scan=OTHER.key)["responses"],
                                      source(OTHER, "responses"))


def test_fetches_from_kept_readers_do_not_open_a_database_file(tmp_path, file_with_first):
    """An idle or busy reader holds no file between calls, and a fetch of a scan already read
    opens none: opening costs ~12 ms against ~1 ms for the fetch itself."""
    url = str(copy_database(file_with_first, tmp_path))
    with scandb.connect(url) as db:
        db.fetch([0], scan=FIRST.key)
        opened = db.database.opened
        for start in range(0, FIRST.n_trials, 5):
            got = db.fetch(np.arange(start, start + 5), "responses", "behavior", scan=FIRST.key)
            np.testing.assert_array_equal(got["responses"], source(FIRST, "responses")[start:start + 5])
        assert db.database.opened == opened
        db.fetch("SELECT scan_key, trial_id FROM trials LIMIT 2")  # SQL opens it
        assert db.database.opened == opened + 1


WITHOUT_PSYCOPG = """
import sys
import time
sys.modules["psycopg"] = None  # a machine without it: the newest snapshot comes through DuckLake
import scandb
db = scandb.connect(sys.argv[1])
for line in sys.stdin:
    print(",".join(sorted(db.scans()["scan_key"])), db.fetch([0], "responses", scan=sys.argv[2])["responses"].sum(),
          flush=True)
"""


def test_without_psycopg_a_postgres_lake_still_follows_other_processes(lake_postgres, tmp_path, zips):
    options = ["--data-path", str(tmp_path / "data")]
    assert run_cli("ingest", str(zips[FIRST]), "--db", lake_postgres, *options).code == 0  # before the reader starts
    reader = subprocess.Popen([sys.executable, "-c", WITHOUT_PSYCOPG, lake_postgres, FIRST.key],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              preexec_fn=ahead_of_ingest_nice)

    def ask() -> tuple[str, float]:
        reader.stdin.write("again\n")
        reader.stdin.flush()
        scans, total = reader.stdout.readline().split()
        return scans, float(total)

    try:
        assert ask() == (FIRST.key, pytest.approx(float(source(FIRST, "responses")[0].sum())))
        ingest(lake_postgres, options, zips[REPLACEMENT], "--replace")
        ingest(lake_postgres, options, zips[OTHER])
        assert ask() == (",".join(sorted([FIRST.key, OTHER.key])),
                         pytest.approx(float(source(REPLACEMENT, "responses")[0].sum())))
    finally:
        reader.stdin.close()
        assert reader.wait(timeout=60) == 0, reader.stderr.read()
