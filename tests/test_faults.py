"""Faults outside scandb's control: a killed ingest, a read-only database, a full disk."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from scandb.catalog.database import Database
from scandb.errors import DatabaseError
from scandb.ingest import ingest
from scandb.synthetic import ScanSpec, generate, write_zip

from .conftest import digest_database
from .hostile import (GOOD_SPEC, ahead_of_ingest_nice, bad_base, before, big_scan, copy_database, good_db,  # noqa: F401
                      grow_disk, image_files, immutable, run_cli, run_scandb, scan_keys, scandb_command,
                      small_disk, template_db, wait_for)


# -- kill -9 ------------------------------------------------------------------------------


def test_an_ingest_killed_mid_way_leaves_no_trace(good_db, before, big_scan):
    """kill -9 with image files already written: no rows, orphans collected by the next run."""
    already = len(image_files(good_db))
    process = subprocess.Popen(scandb_command("ingest", big_scan, "--db", good_db),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=ahead_of_ingest_nice)
    try:
        started = wait_for(lambda: len(image_files(good_db)) > already + 50, timeout=60)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert started and process.returncode == -signal.SIGKILL, "the ingest ended before it could be killed"

    assert scan_keys(good_db) == [GOOD_SPEC.key]
    orphans = run_cli("verify", "--db", str(good_db))
    assert orphans.code == 5 and ": orphan (no row references it" in orphans.out

    next_run = run_cli("ingest", str(good_db.parent / "nothing.zip"), "--db", str(good_db))
    assert next_run.code == 3
    assert digest_database(good_db) == before

    again = run_cli("ingest", str(big_scan), "--db", str(good_db))
    assert again.code == 0, again
    assert run_cli("verify", "--db", str(good_db)).code == 0


def test_a_killed_ingest_takes_its_reader_processes_with_it(good_db, before, big_scan):
    """kill -9 of an ingest reading with worker processes: no worker outlives it, so no
    image file appears after the next command has collected the orphans."""
    script = ("import sys; from pathlib import Path; from scandb.catalog.database import Database; "
              "from scandb.ingest import ingest; db = Database(Path(sys.argv[2]), read_only=False); "
              "ingest(db, Path(sys.argv[1]), workers=2)")
    already = len(image_files(good_db))
    process = subprocess.Popen([sys.executable, "-c", script, str(big_scan), str(good_db)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=ahead_of_ingest_nice)
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
    try:
        started = wait_for(lambda: len(image_files(good_db)) > already + 50, timeout=60)
        workers = children.read_text().split() if children.exists() else []
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert started and process.returncode == -signal.SIGKILL, "the ingest ended before it could be killed"
    assert len(workers) == 2, workers
    assert wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in workers), timeout=10)

    assert run_cli("ingest", str(good_db.parent / "nothing.zip"), "--db", str(good_db)).code == 3
    # Every process that could write a file later (the ingest, reaped above, and its workers)
    # is gone, so the store as it is now is the store for good: no sleep can change it.
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers), workers
    assert digest_database(good_db) == before


# -- read-only --------------------------------------------------------------------------


def test_a_read_only_database_file(good_db, before, bad_base, tmp_path):
    scan = write_zip(bad_base, tmp_path / "scan.zip")
    with immutable(good_db):
        run = run_cli("ingest", str(scan), "--db", str(good_db))
        assert run.code == 4
        assert f"{good_db}: cannot open for writing (Operation not permitted)" in run.error
        assert run_cli("scans", "--db", str(good_db)).code == 0
    assert digest_database(good_db) == before


def test_a_read_only_folder_for_a_new_database(tmp_path, bad_base):
    scan = write_zip(bad_base, tmp_path / "scan.zip")
    folder = tmp_path / "readonly"
    folder.mkdir()
    with immutable(folder):
        run = run_cli("ingest", str(scan), "--db", str(folder / "lab.duckdb"))
    assert run.code == 4
    assert "lab.duckdb: cannot open for writing (Operation not permitted)" in run.error
    assert list(folder.iterdir()) == []


def test_a_read_only_image_store(good_db, before, bad_base, tmp_path):
    scan = write_zip(bad_base, tmp_path / "scan.zip")
    store = good_db.with_suffix(".images")
    with immutable(store, *store.iterdir()):
        run = run_cli("ingest", str(scan), "--db", str(good_db))
    assert run.code == 4
    line = run.error
    assert line.startswith(f"scandb: error: {scan}: cannot write {store}")
    assert "(Operation not permitted); nothing of this scan was kept" in line
    assert digest_database(good_db) == before


# -- a full disk --------------------------------------------------------------------------


def used_bytes(*paths: Path) -> int:
    files = [p for path in paths for p in ([path] if path.is_file() else path.rglob("*"))]
    return sum(-(-p.stat().st_size // 4096) * 4096 for p in files if p.is_file())


def split_database(template: Path, db_folder: Path, store_folder: Path) -> Path:
    """A copy of the template whose database file lives in ``db_folder`` and whose image
    store lives in ``store_folder`` (reached through a symbolic link beside the file)."""
    db = copy_database(template, db_folder)
    store = db.with_suffix(".images")
    target = store_folder / store.name
    shutil.move(store, target)
    store.symlink_to(target, target_is_directory=True)
    return db


def test_a_full_disk_under_the_image_store(template_db, tmp_path):
    """Images and the response matrix fail to write; DuckDB's disk has room."""
    scan = write_zip(generate(ScanSpec(animal_id=50005, seed=5, n_trials=600, n_neurons=10)), tmp_path / "s.zip")
    (tmp_path / "roomy").mkdir()
    store_size = used_bytes(template_db[0].with_suffix(".images"))
    with small_disk(tmp_path / "disk", store_size + (1 << 20)) as disk:
        db = split_database(template_db[0], tmp_path / "roomy", disk)
        run = run_scandb("ingest", scan, "--db", db)
        assert run.code == 4, run
        assert re.search(rf"cannot write {re.escape(str(db.with_suffix('.images')))}(/\S+)? "
                         r"\(No space left on device\); nothing of this scan was kept", run.error), run.error
        assert digest_database(db) == template_db[1]

        grow_disk(disk, 64 << 20)
        assert run_cli("ingest", str(scan), "--db", str(db)).code == 0


def test_a_full_image_store_disk_hit_by_a_reader_process(template_db, tmp_path):
    """The same one line when a worker process, not the parent, meets the full disk."""
    scan = write_zip(generate(ScanSpec(animal_id=50005, seed=5, n_trials=600, n_neurons=10)), tmp_path / "s.zip")
    (tmp_path / "roomy").mkdir()
    store_size = used_bytes(template_db[0].with_suffix(".images"))
    with small_disk(tmp_path / "disk", store_size + (1 << 20)) as disk:
        db_path = split_database(template_db[0], tmp_path / "roomy", disk)
        with Database(db_path, read_only=False) as db:
            with pytest.raises(DatabaseError, match=r"\(No space left on device\); nothing of this scan was kept"):
                ingest(db, scan, workers=2)
        assert digest_database(db_path) == template_db[1]


def test_a_full_disk_under_the_database_file(template_db, tmp_path):
    """DuckDB fails to write its file; the image store's disk has room."""
    spec = ScanSpec(animal_id=60006, seed=6, n_trials=100, n_neurons=20_000, image_shape=(1, 8, 8))
    scan = write_zip(generate(spec), tmp_path / "wide.zip")
    (tmp_path / "roomy").mkdir()
    with small_disk(tmp_path / "disk", used_bytes(template_db[0]) + (2 << 20)) as disk:
        db = split_database(template_db[0], disk, tmp_path / "roomy")
        run = run_scandb("ingest", scan, "--db", db)
        assert run.code == 4, run
        assert (f"cannot write {db} (No space left on device); nothing of this scan was kept"
                in run.error), run.error
        assert digest_database(db) == template_db[1]

        grow_disk(disk, 64 << 20)
        assert run_cli("ingest", str(scan), "--db", str(db)).code == 0
        assert scan_keys(db) == [GOOD_SPEC.key, spec.key]
