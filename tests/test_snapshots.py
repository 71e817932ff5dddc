"""Snapshots: every change to a lake is one, listed by ``scandb snapshots``; a connection or a
``ScanDataset`` reads the lake as it was at one; removal and replacement keep the files older
snapshots reference until ``gc`` expires them. Commands run in this process (``run_cli``),
except where a reader must see another process's writes, as in a lab; the lake tests run on
a SQLite catalog, those marked ``on_both_catalogs`` on PostgreSQL too: the ``snapshots`` and
``gc`` commands, a training job and a held connection following other processes' commits."""

from __future__ import annotations

import getpass
import os
import socket
import time
from pathlib import Path

import numpy as np
import pytest

import scandb
from scandb.catalog import lake as lakes
from scandb.errors import UsageError
from scandb.synthetic import ScanSpec, generate, write_zip

from .hostile import run_cli, run_scandb
from .lakes import on_both_catalogs
from .scans import source

torch = pytest.importorskip("torch")
from scandb.torchdata import ScanDataset  # noqa: E402

ORIGINAL = ScanSpec(animal_id=61001, seed=11, n_trials=32, n_neurons=20)
REPLACEMENT = ScanSpec(animal_id=61001, seed=12, n_trials=24, n_neurons=20)
"""The same scan key with other content (other images, responses, fewer trials)."""
OTHER = ScanSpec(animal_id=62002, seed=13, n_trials=24, n_neurons=15)

KEYS = ("images", "responses", "behavior", "pupil_center")
HOURS_7 = 7 * 3600


@pytest.fixture(scope="module")
def zips(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("snapshot-scans")
    return {name: write_zip(generate(spec), folder / f"{name}.zip")
            for name, spec in (("original", ORIGINAL), ("replacement", REPLACEMENT), ("other", OTHER))}


def cli(lake, *args, run=run_cli):
    return run(*args, "--db", lake.url)


def ingest(lake, *paths, replace=False, run=run_cli):
    """``scandb ingest`` in this process, or in another with ``run=run_scandb``."""
    run = run("ingest", *map(str, paths), *(["--replace"] if replace else []), "--db", lake.url,
              "--data-path", str(lake.data))
    assert run.code == 0, run
    return newest(lake)


def newest(lake) -> int:
    with scandb.connect(lake.url) as db:
        return db.snapshot


def selection(spec: ScanSpec) -> str:
    return f"SELECT scan_key, trial_id FROM trials WHERE scan_key = '{spec.key}' ORDER BY trial_id"


def epoch(loader) -> dict[str, np.ndarray]:
    batches = [{k: v.numpy().copy() for k, v in batch._asdict().items()} for batch in loader]
    return {k: np.concatenate([b[k] for b in batches]) for k in KEYS}


def assert_equals_source(arrays: dict[str, np.ndarray], spec: ScanSpec) -> None:
    for key in KEYS:
        expected = source(spec, key)
        np.testing.assert_array_equal(arrays[key], expected.reshape(arrays[key].shape).astype(arrays[key].dtype),
                                      err_msg=key)


def store_files(lake) -> set[str]:
    store = lake.data / lakes.STORE_FOLDER
    return {p.relative_to(store).as_posix() for p in store.rglob("*.npy")}


def referenced_at(lake, snapshot: int) -> set[str]:
    """The store files rows name at a snapshot (relative to the store), read by SQL at that snapshot."""
    with scandb.connect(lake.url, snapshot=snapshot) as db:
        images = {f"{h[:2]}/{h}.npy" for (h,) in db.sql("SELECT image_hash FROM images").fetchall()}
        matrices = {p for (p,) in db.sql("SELECT path FROM response_matrices").fetchall()}
    return images | matrices


def age_store(lake, seconds: float) -> None:
    """Make every store file look ``seconds`` old: gc leaves younger unreferenced files alone
    (an ingest in another process may be writing them)."""
    then = time.time() - seconds
    for path in (lake.data / lakes.STORE_FOLDER).rglob("*.npy"):
        os.utime(path, (then, then))


def snapshot_rows(lake) -> list[list[str]]:
    run = run_cli("snapshots", "--csv", "--db", lake.url)
    assert run.code == 0, run
    lines = run.out.splitlines()
    assert lines[0] == "snapshot,time_utc,author,change"
    return [line.split(",") for line in lines[1:]]


# -- what each commit did -----------------------------------------------------------------


@on_both_catalogs
def test_snapshots_list_each_commit_with_its_time_author_and_what_changed(lake, zips):
    started = time.time()
    ingest(lake, zips["original"], zips["other"])
    ingest(lake, zips["replacement"], replace=True)
    assert cli(lake, "remove", ORIGINAL.key).code == 0

    rows = snapshot_rows(lake)
    assert [int(r[0]) for r in rows] == list(range(len(rows)))
    assert rows[0][3] == "created the lake"
    me = f"{getpass.getuser()}@{socket.gethostname()}"
    assert [r[2:] for r in rows[-4:]] == [[me, f"ingested {ORIGINAL.key}"], [me, f"ingested {OTHER.key}"],
                                          [me, f"replaced {ORIGINAL.key}"], [me, f"removed {ORIGINAL.key}"]]
    times = [time.mktime(time.strptime(r[1], "%Y-%m-%d %H:%M:%S")) - time.timezone for r in rows[-4:]]
    assert started - 1 <= times[0] <= times[-1] <= time.time() + 1

    table = run_cli("snapshots", "--db", lake.url).out.splitlines()
    assert table[0].split() == ["snapshot", "time_utc", "author", "change"]
    assert table[-2].split()[-3:] == [me, "removed", ORIGINAL.key]
    assert table[-1] == f"({len(rows)} rows)"


# -- reading as it was ----------------------------------------------------------------------


@on_both_catalogs
def test_a_training_job_keeps_its_data_while_its_scan_is_replaced_and_removed(lake, zips, fill_lake):
    """The job's dataset reads the newest snapshot when made; other processes then replace and
    remove its scan; fresh workers every epoch still read exactly the original files."""
    fill_lake(lake, zips["original"])
    ingested = newest(lake)
    dataset = ScanDataset(lake.url, selection(ORIGINAL), normalize=False)
    assert dataset.snapshot == ingested
    loader = torch.utils.data.DataLoader(dataset, batch_size=8, num_workers=2, persistent_workers=False)
    assert_equals_source(epoch(loader), ORIGINAL)

    ingest(lake, zips["replacement"], replace=True, run=run_scandb)
    assert_equals_source(epoch(loader), ORIGINAL)
    assert cli(lake, "remove", ORIGINAL.key, run=run_scandb).code == 0
    assert_equals_source(epoch(loader), ORIGINAL)


def test_in_a_database_file_too_a_training_job_keeps_its_data_until_gc(tmp_path, zips):
    """A file has no snapshots, but replace and remove keep the files a running job reads;
    gc --older-than 0 deletes them, after which only fresh datasets work."""
    db_file = str(tmp_path / "lab.duckdb")
    assert run_cli("ingest", str(zips["original"]), "--db", db_file).code == 0
    dataset = ScanDataset(db_file, selection(ORIGINAL), normalize=False)
    assert dataset.snapshot is None
    loader = torch.utils.data.DataLoader(dataset, batch_size=8, num_workers=2, persistent_workers=False)
    assert run_cli("ingest", "--replace", str(zips["replacement"]), "--db", db_file).code == 0
    assert_equals_source(epoch(loader), ORIGINAL)
    removed = run_cli("remove", ORIGINAL.key, "--db", db_file)
    assert removed.code == 0 and "('scandb gc --older-than DAYS' frees them)" in removed.out
    assert_equals_source(epoch(loader), ORIGINAL)

    assert "deleted 0 store files" in run_cli("gc", "--older-than", "1", "--db", db_file).out
    assert_equals_source(epoch(loader), ORIGINAL)
    collected = run_cli("gc", "--older-than", "0", "--db", db_file)
    assert collected.code == 0, collected
    assert not list((tmp_path / "lab.images").rglob("*.npy"))  # neither version is in the database now
    assert run_cli("verify", "--db", db_file).code == 0


def test_a_dataset_made_at_a_snapshot_after_its_scan_was_replaced_and_removed_is_the_original(lake, zips,
                                                                                              fill_lake):
    fill_lake(lake, zips["original"])
    first = newest(lake)
    replaced = ingest(lake, zips["replacement"], replace=True)
    assert cli(lake, "remove", ORIGINAL.key).code == 0

    for snapshot, spec in ((first, ORIGINAL), (replaced, REPLACEMENT)):
        dataset = ScanDataset(lake.url, selection(spec), normalize=False, snapshot=snapshot)
        assert dataset.snapshot == snapshot and len(dataset) == spec.n_trials
        loader = torch.utils.data.DataLoader(dataset, batch_size=8, num_workers=2)
        assert_equals_source(epoch(loader), spec)
    assert len(ScanDataset(lake.url, selection(ORIGINAL), normalize=False)) == 0  # the newest has no such scan


@on_both_catalogs
def test_db_snapshot_is_the_id_a_connection_reads(lake, zips, fill_lake):
    fill_lake(lake, zips["original"])
    first = newest(lake)
    with scandb.connect(lake.url) as newest_db, scandb.connect(lake.url, snapshot=first) as pinned:
        assert newest_db.snapshot == pinned.snapshot == first
        second = ingest(lake, zips["other"], run=run_scandb)  # another process commits
        assert second > first
        assert newest_db.snapshot == second
        assert sorted(newest_db.scans()["scan_key"]) == sorted([ORIGINAL.key, OTHER.key])
        assert pinned.snapshot == first
        assert list(pinned.scans()["scan_key"]) == [ORIGINAL.key]
    scans = run_cli("scans", "--db", lake.url, "--snapshot", str(first))
    assert scans.code == 0 and ORIGINAL.key in scans.out and OTHER.key not in scans.out


def test_verify_at_a_snapshot_does_not_count_newer_scans_files_as_orphans(lake, zips, fill_lake):
    fill_lake(lake, zips["original"])
    first = newest(lake)
    ingest(lake, zips["other"])
    age_store(lake, HOURS_7)  # old enough to be garbage, if nothing referenced them
    with scandb.connect(lake.url, snapshot=first) as pinned:
        report = pinned.verify()
    assert report.ok, report.text()
    assert any("orphan" in note and "newest snapshot" in note for note in report.notes), report.notes
    with scandb.connect(lake.url) as newest_db:
        assert newest_db.verify().ok


def test_a_snapshot_that_does_not_exist_is_one_line_naming_the_ids_there_are(lake, zips, fill_lake):
    fill_lake(lake, zips["original"])
    last = newest(lake)
    with pytest.raises(UsageError) as refused:
        scandb.connect(lake.url, snapshot=last + 5)
    assert str(refused.value) == (f"{lake.url}: no snapshot {last + 5} (it has 0-{last}; "
                                  "'scandb snapshots' lists them)")
    run = run_cli("sql", "SELECT 1", "--db", lake.url, "--snapshot", str(last + 5))
    assert run.code == 2
    assert f"no snapshot {last + 5} (it has 0-{last};" in run.error


def test_a_connection_at_a_snapshot_refuses_writes_in_one_line(lake, zips, fill_lake):
    fill_lake(lake, zips["original"])
    first = newest(lake)
    with pytest.raises(UsageError, match="a snapshot is the database as it was, read-only"):
        scandb.connect(lake.url, snapshot=first, read_only=False)
    with scandb.connect(lake.url, snapshot=first) as db:
        with pytest.raises(UsageError, match=f"opened at snapshot {first}, which is read-only; to remove"):
            db.remove(ORIGINAL.key)
    run = run_cli("sql", "DELETE FROM scans", "--db", lake.url, "--snapshot", str(first))
    assert run.code == 2 and "read-only" in run.error
    assert newest(lake) == first
    assert ORIGINAL.key in run_cli("scans", "--db", lake.url).out


# -- gc ----------------------------------------------------------------------------------------


def test_gc_keeps_what_unexpired_snapshots_reference_and_deletes_the_rest(lake, zips, fill_lake):
    fill_lake(lake, zips["original"], zips["other"])
    first = newest(lake)
    replaced = ingest(lake, zips["replacement"], replace=True)
    at_first, at_replaced = referenced_at(lake, first), referenced_at(lake, replaced)
    only_original = at_first - at_replaced
    assert only_original and store_files(lake) == at_first | at_replaced  # replace kept the original's files
    time.sleep(1.5)  # apart enough that the cutoff between them stands while an in-process gc starts
    assert cli(lake, "remove", ORIGINAL.key).code == 0
    removed = newest(lake)
    now = referenced_at(lake, removed)
    assert store_files(lake) == at_first | at_replaced  # remove kept the replacement's files too
    age_store(lake, HOURS_7)

    with scandb.connect(lake.url) as db:
        made = {s.id: s.time for s in db.snapshots()}
    cutoff = (made[replaced] + made[removed]) / 2  # `first` was replaced before it, `replaced` after it

    def days() -> str:
        return repr((time.time() - cutoff) / 86400)

    dry = run_cli("gc", "--older-than", days(), "--dry-run", "--db", lake.url)
    assert dry.code == 0, dry
    listed = {line.split("file ", 1)[1] for line in dry.out.splitlines() if line.startswith("  file ")}
    assert listed == {f"{lakes.STORE_FOLDER}/{f}" for f in only_original}
    assert f"would expire {first + 1} snapshots (0-{first}), kept 2 snapshots ({replaced}-{removed})" in dry.out
    assert store_files(lake) == at_first | at_replaced  # a dry run deletes nothing
    assert [int(r[0]) for r in snapshot_rows(lake)][0] == 0

    run = run_cli("gc", "--older-than", days(), "--db", lake.url)
    assert run.code == 0, run
    assert f"expired {first + 1} snapshots (0-{first}), kept 2 snapshots ({replaced}-{removed}); " \
           f"deleted {len(only_original)} store files" in run.out
    assert store_files(lake) == at_replaced | now
    assert [int(r[0]) for r in snapshot_rows(lake)] == [replaced, removed]
    with scandb.connect(lake.url, snapshot=replaced) as db:  # still readable, files and all
        assert_equals_source(db.fetch(selection(REPLACEMENT), *KEYS), REPLACEMENT)
    gone = run_cli("scans", "--db", lake.url, "--snapshot", str(first))
    assert gone.code == 2 and f"no snapshot {first} (it has {replaced}-{removed};" in gone.error

    assert run_cli("gc", "--older-than", "0", "--db", lake.url).code == 0
    assert store_files(lake) == now
    assert [int(r[0]) for r in snapshot_rows(lake)] == [removed]
    assert run_cli("verify", "--db", lake.url).code == 0
    with scandb.connect(lake.url) as db:
        assert_equals_source(db.fetch(selection(OTHER), *KEYS), OTHER)


@on_both_catalogs
def test_a_connection_whose_snapshot_gc_expired_says_so_in_one_line(lake, zips, fill_lake):
    fill_lake(lake, zips["original"])
    first = newest(lake)
    with scandb.connect(lake.url, snapshot=first) as pinned:
        assert list(pinned.scans()["scan_key"]) == [ORIGINAL.key]
        ingest(lake, zips["replacement"], replace=True)
        assert run_cli("gc", "--older-than", "0", "--db", lake.url).code == 0
        with pytest.raises(scandb.DatabaseError) as failed:
            pinned.scans()
    message = str(failed.value)
    assert "\n" not in message
    assert f"snapshot {first} no longer exists ('scandb gc' expired it after this connection opened it)" in message


def test_gc_leaves_new_unreferenced_files_an_ingest_may_be_writing(lake, zips, fill_lake):
    fill_lake(lake, zips["original"])
    ingest(lake, zips["replacement"], replace=True)
    before = store_files(lake)
    run = run_cli("gc", "--older-than", "0", "--db", lake.url)
    assert run.code == 0, run
    assert "deleted 0 store files" in run.out and "newer unreferenced file" in run.out
    assert store_files(lake) == before


# -- files, help ------------------------------------------------------------------------------


def test_a_database_file_has_no_snapshots(tmp_path, zips):
    db_file = tmp_path / "lab.duckdb"
    assert run_cli("ingest", str(zips["original"]), "--db", str(db_file)).code == 0
    run = run_cli("snapshots", "--db", str(db_file))
    assert run.code == 2
    assert run.error == (f"scandb: error: {db_file}: a database file has no snapshots (only a DuckLake does: "
                         "--db ducklake:...)")
    assert run_cli("scans", "--db", str(db_file), "--snapshot", "1").code == 2
    with scandb.connect(db_file) as db:
        assert db.snapshot is None
    with pytest.raises(UsageError, match="a database file has no snapshots"):
        scandb.connect(db_file, snapshot=1)


@pytest.mark.parametrize("command, words", [("snapshots", ["--db", "--csv"]),
                                            ("gc", ["--older-than", "--dry-run", "DAYS"]),
                                            ("scans", ["--snapshot"]), ("sql", ["--snapshot"])])
def test_snapshot_commands_explain_themselves(command, words):
    run = run_cli(command, "--help")
    assert run.code == 0
    for word in words:
        assert word in run.out
