"""A lake whose data path is an S3 bucket: DuckLake's Parquet files and scandb's store
objects on moto's S3 server (tests/s3.py, a real server in its own process; nothing inside
scandb is mocked), on a SQLite catalog and once on PostgreSQL. Commands run in this process
(``run_cli``), concurrent writers and the DuckDB shell in their own."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

import scandb
from scandb.catalog import lake as lakes
from scandb.store.bucket import Bucket
from scandb.store.cache import IN_USE_S, Cache

from scandb.shell import shell_command

from .hostile import PrimedCommand, run_cli, scandb_command
from .lakes import pg_server  # noqa: F401  (fixture)
from .s3 import SECRET, moto_server, s3_bucket  # noqa: F401  (fixtures)
from .scans import make_scan, source, spec_for

SPEC = dict(n_trials=12, n_neurons=9, seed=5, animal_id=24001)


@pytest.fixture(scope="module")
def scan_file(tmp_path_factory):
    return make_scan(tmp_path_factory.mktemp("bucket-scan"), **SPEC)


def catalog(tmp_path) -> str:
    return f"ducklake:sqlite:{tmp_path / 'catalog.sqlite'}"


def assert_equal_source(db, spec=None) -> None:
    """The scan of ``spec`` (the module's scan unless given) reads as its source files."""
    spec = spec or spec_for(**SPEC)
    got = db.fetch("SELECT scan_key, trial_id FROM trials WHERE scan_key = ? ORDER BY trial_id", "images",
                   "responses", "behavior", params=[spec.key])
    assert len(got["images"]) == spec.n_trials, spec.key
    for key in ("images", "responses", "behavior"):
        expected = source(spec, key)
        np.testing.assert_array_equal(got[key], expected.reshape(got[key].shape).astype(got[key].dtype),
                                      err_msg=key)


@pytest.fixture(scope="module")
def filled_template(tmp_path_factory) -> dict:
    """Where ``filled`` ingests once per module: a catalog, a cache and (once made) a bucket of its own."""
    return {"folder": tmp_path_factory.mktemp("bucket-template")}


@pytest.fixture
def filled(s3_bucket, tmp_path, scan_file, filled_template, monkeypatch):
    """A lake on the bucket holding the scan, as ``scandb ingest`` of it into a new lake
    leaves it: its catalog, its bucket's objects and the objects the ingest kept in the cache.

    Ingested with the command line once per module into a template bucket, then copied as
    ``fill_lake`` copies a SQLite lake (tests/lakes.py): the objects server-side into this
    test's bucket, with new modification times as just written; the catalog file with the
    data path it records changed to this bucket; the cached objects under this bucket's name."""
    template = filled_template
    folder = template["folder"]
    if "bucket" not in template:
        template["bucket"] = s3_bucket.server.bucket()
        with monkeypatch.context() as env:
            env.setenv("SCANDB_CACHE", str(folder / "cache"))
            run = run_cli("ingest", str(scan_file), "--db", catalog(folder), "--data-path",
                          f"s3://{template['bucket']}/lab")
        assert run.code == 0, run
    client = s3_bucket.server.client()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=template["bucket"]):
        for entry in page.get("Contents", []):
            client.copy_object(Bucket=s3_bucket.name, Key=entry["Key"],
                               CopySource={"Bucket": template["bucket"], "Key": entry["Key"]})
    url = catalog(tmp_path)
    shutil.copy(folder / "catalog.sqlite", tmp_path / "catalog.sqlite")
    with contextlib.closing(sqlite3.connect(tmp_path / "catalog.sqlite")) as conn, conn:
        changed = conn.execute("UPDATE ducklake_metadata SET value = ? WHERE key = 'data_path'",
                               [s3_bucket.url + "/"]).rowcount
    assert changed == 1
    shutil.copytree(folder / "cache" / "objects" / "s3" / template["bucket"],
                    s3_bucket.cache / "objects" / "s3" / s3_bucket.name)
    (s3_bucket.cache / "staging").mkdir()
    return url


def test_ingest_puts_every_file_in_the_bucket_and_arrays_equal_the_source_cold_and_cached(
        filled, s3_bucket, tmp_path, monkeypatch):
    keys = s3_bucket.keys()
    store = lakes.STORE_FOLDER
    assert [k for k in keys if k.startswith(f"{store}/responses/")], keys
    packs = [k for k in keys if k.startswith(f"{store}/packs/") and k.endswith(".pack")]
    assert len(packs) == 1, keys  # the scan's 12 trials are one ingest chunk: their images one object
    assert not [k for k in keys if k.startswith(f"{store}/") and k.count("/") == 2 and k.endswith(".npy")
                and not k.startswith(f"{store}/responses/")], keys  # no image object of its own
    assert [k for k in keys if k.startswith("main/") and k.endswith(".parquet")], keys  # DuckLake's files
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("scandb")]  # nothing local but the catalog

    cold = tmp_path / "cold-cache"
    monkeypatch.setenv("SCANDB_CACHE", str(cold))
    with scandb.connect(filled) as db:
        assert_equal_source(db)  # every object downloaded
        cached = Cache(cold).info()
        assert cached["blocks"] == 0 and cached["objects"] >= 2  # the pack and the matrix, read by range,
        # then kept as whole files (every block of them was read) and their blocks dropped
        assert_equal_source(db)  # from the cache
    assert Cache(cold).info() == cached
    with scandb.connect(filled) as db:
        assert_equal_source(db)  # a new connection: from the cache, nothing fetched again
    assert Cache(cold).info() == cached

    listed = run_cli("scans", "--db", filled)
    assert listed.code == 0 and "24001" in listed.out, listed
    scan = run_cli("sql", "--csv", "--db", filled, "SELECT scan_key FROM scans").out.split()[1]
    assert run_cli("info", scan, "--db", filled).out.startswith(f"scan {scan}")
    counted = run_cli("sql", "--csv", "--db", filled, "SELECT count(*) AS n FROM trials_full")
    assert counted.out.split() == ["n", "12"], counted
    verified = run_cli("verify", "--db", filled)
    assert verified.code == 0 and "ok: 1 scan" in verified.out, verified


def test_remove_then_gc_deletes_the_objects_nothing_references(filled, s3_bucket, monkeypatch):
    store = lakes.STORE_FOLDER
    before = [k for k in s3_bucket.keys() if k.startswith(f"{store}/")]
    with scandb.connect(filled) as db:
        scan = db.scans()["scan_key"][0]
    removed = run_cli("remove", scan, "--db", filled)
    assert removed.code == 0, removed
    assert [k for k in s3_bucket.keys() if k.startswith(f"{store}/")] == before  # older snapshots need them
    monkeypatch.setattr(lakes, "IN_FLIGHT_S", 0.0)
    from scandb.catalog.lake_catalog import LakeCatalog
    monkeypatch.setattr(LakeCatalog, "garbage_age", 0.0)
    collected = run_cli("gc", "--older-than", "0", "--db", filled)
    assert collected.code == 0, collected
    assert "deleted" in collected.out and "store file" in collected.out, collected
    assert [k for k in s3_bucket.keys() if k.startswith(f"{store}/")] == []
    assert run_cli("verify", "--db", filled).code == 0


def test_gc_deletes_a_pack_no_row_names_and_keeps_the_packs_rows_name(filled, s3_bucket, tmp_path, monkeypatch):
    store, listed = f"lab/{lakes.STORE_FOLDER}", lakes.STORE_FOLDER  # keys in the bucket, and as listed
    with scandb.connect(filled) as db:
        (pack,), = db.conn.execute("SELECT DISTINCT path FROM images").fetchall()
    stray = f"packs/{'0' * 64}.pack"  # as a killed ingest leaves one: a whole pack, named by no row
    client = s3_bucket.server.client()
    client.copy_object(Bucket=s3_bucket.name, Key=f"{store}/{stray}", CopySource={"Bucket": s3_bucket.name,
                                                                               "Key": f"{store}/{pack}"})
    young = run_cli("gc", "--older-than", "0", "--db", filled)
    assert young.code == 0 and f"{listed}/{stray}" in s3_bucket.keys(), young  # younger than an ingest may run
    monkeypatch.setattr(lakes, "IN_FLIGHT_S", 0.0)
    from scandb.catalog.lake_catalog import LakeCatalog
    monkeypatch.setattr(LakeCatalog, "garbage_age", 0.0)
    collected = run_cli("gc", "--older-than", "0", "--db", filled)
    assert collected.code == 0 and "deleted 1 store file" in collected.out, collected
    assert f"{listed}/{stray}" not in s3_bucket.keys() and f"{listed}/{pack}" in s3_bucket.keys()
    monkeypatch.setenv("SCANDB_CACHE", str(tmp_path / "cold"))
    with scandb.connect(filled) as db:
        assert_equal_source(db)
    assert run_cli("verify", "--db", filled).code == 0


def test_a_scan_sharing_images_with_a_stored_one_packs_only_its_new_images(filled, s3_bucket, tmp_path,
                                                                           monkeypatch):
    other = dict(SPEC, animal_id=24003, seed=6)
    (tmp_path / "other").mkdir()
    with scandb.connect(filled) as db:
        before = {h for (h,) in db.conn.execute("SELECT image_hash FROM images").fetchall()}
    packs_before = {k for k in s3_bucket.keys() if k.endswith(".pack")}
    run = run_cli("ingest", str(make_scan(tmp_path / "other", **other)), "--db", filled)
    assert run.code == 0, run
    spec = spec_for(**other)
    with scandb.connect(filled) as db:
        assert db.conn.execute("SELECT count(*) - count(DISTINCT image_hash) FROM images").fetchone()[0] == 0
        mine = {h for (h,) in db.conn.execute("SELECT DISTINCT image_hash FROM trials WHERE scan_key = ?",
                                              [spec.key]).fetchall()}
        shared = mine & before
        assert shared and mine - before  # the test images are shared, the others new
        new_packs = {k for k in s3_bucket.keys() if k.endswith(".pack")} - packs_before
        assert len(new_packs) == 1
        (new_pack,) = new_packs
        members = db.conn.execute("SELECT image_hash, pack_length FROM images WHERE path = ?",
                                  [new_pack.removeprefix(f"{lakes.STORE_FOLDER}/")]).fetchall()
        assert {h for h, _ in members} == mine - before  # the shared ones stay in the first scan's pack
        size = s3_bucket.server.client().head_object(Bucket=s3_bucket.name, Key=f"lab/{new_pack}")["ContentLength"]
        assert size == sum(length for _, length in members)  # and are not in the new pack either
        assert not [k for k in s3_bucket.keys() if k.endswith(".npy") and "/responses/" not in k
                    and "/meta/" not in k]  # nor written as objects of their own
    monkeypatch.setenv("SCANDB_CACHE", str(tmp_path / "cold"))
    with scandb.connect(filled) as db:
        assert_equal_source(db)
        assert_equal_source(db, spec)
    assert run_cli("verify", "--db", filled).code == 0


def test_a_deleted_object_is_damage_verify_names_and_fetch_refuses(filled, s3_bucket, tmp_path, monkeypatch):
    with scandb.connect(filled) as db:
        matrix = db.conn.execute("SELECT path FROM response_matrices").fetchone()[0]
    s3_bucket.server.client().delete_object(Bucket=s3_bucket.name, Key=f"lab/{lakes.STORE_FOLDER}/{matrix}")
    monkeypatch.setenv("SCANDB_CACHE", str(tmp_path / "empty-cache"))
    verified = run_cli("verify", "--db", filled)
    assert verified.code != 0 and matrix.rpartition("/")[2] in verified.out + "\n".join(verified.err_lines), verified
    with scandb.connect(filled) as db, pytest.raises(scandb.DatabaseError, match="response matrix"):
        db.fetch("SELECT scan_key, trial_id FROM trials", "responses")


def test_missing_credentials_are_one_line_naming_what_to_set(filled, monkeypatch):
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    listed = run_cli("scans", "--db", filled)
    assert listed.code != 0
    assert "AWS_SECRET_ACCESS_KEY" in listed.error and "AWS_ENDPOINT_URL" in listed.error, listed
    assert "AWS_ACCESS_KEY_ID" not in listed.error  # only what is missing


def test_the_bucket_medium_puts_lists_reads_and_deletes(s3_bucket, tmp_path):
    bucket = Bucket(f"{s3_bucket.url}/store", Cache(tmp_path / "c"))
    bucket.put("ab/one.npy", b"x" * 100)
    staged = bucket.staging("responses/two.npy")
    staged.write_bytes(bytes(range(256)) * 1000)
    bucket.publish(staged, "responses/two.npy")
    assert not staged.exists()
    assert set(bucket.list("??/*.npy")) == {"ab/one.npy"}
    assert set(bucket.list("responses/*.npy")) == {"responses/two.npy"}
    assert bucket.exists("ab/one.npy") and not bucket.exists("ab/three.npy")
    out = [memoryview(bytearray(4)), memoryview(bytearray(2))]
    got = bucket.read_ranges([("responses/two.npy", 256 + 1, out[0]), ("ab/one.npy", 98, out[1]),
                              ("ab/none.npy", 0, memoryview(bytearray(1)))])
    assert got[:2] == [4, 2] and isinstance(got[2], FileNotFoundError)
    assert bytes(out[0]) == bytes([1, 2, 3, 4]) and bytes(out[1]) == b"xx"
    assert str(bucket.path("ab/one.npy")) == f"{s3_bucket.url}/store/ab/one.npy"
    assert bucket.delete(["ab/one.npy", "responses/two.npy"]) == 2
    assert bucket.list("**") == {} and s3_bucket.keys() == []
    shutil.rmtree(tmp_path / "c")


def test_cache_warm_fetches_a_selection_info_counts_it_and_clear_empties_it(filled, tmp_path, monkeypatch):
    monkeypatch.setenv("SCANDB_CACHE", str(tmp_path / "warm-cache"))
    warmed = run_cli("cache", "warm", "SELECT scan_key FROM scans", "--db", filled)
    assert warmed.code == 0 and "cached" in warmed.out, warmed
    n = int(warmed.out.split()[1])
    with scandb.connect(filled) as db:
        images = db.conn.execute("SELECT count(*) FROM images").fetchone()[0]
        packs = [p for (p,) in db.conn.execute("SELECT DISTINCT path FROM images WHERE pack_offset IS NOT NULL")
                 .fetchall()]
        others = db.conn.execute("SELECT (SELECT count(*) FROM response_matrices) + "
                                 "(SELECT count(*) FROM scan_files WHERE stored_as IS NOT NULL)").fetchone()[0]
        bucket = db.database.store
    assert len(packs) == 1 and images > 1
    assert n == len(packs) + others  # each pack once, whole, not once per image; the matrix and meta files
    assert Cache(tmp_path / "warm-cache").file(bucket.url_of(packs[0])).is_file()
    info = run_cli("cache", "info")
    assert info.code == 0 and f"{n} objects" in info.out, info
    with scandb.connect(filled) as db:
        assert_equal_source(db)
    cleared = run_cli("cache", "clear")
    assert cleared.code == 0, cleared
    assert "0 objects" in run_cli("cache", "info").out


def test_the_duckdb_shell_reads_a_lake_on_a_bucket(filled):
    done = subprocess.run(scandb_command("shell", "--db", filled), input=".mode csv\n"
                          "SELECT count(*) AS n FROM trials_full;\n", capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "12", done.stdout
    shown = " ".join(shell_command(filled, None, write=False))
    assert SECRET not in shown and "getenv('AWS_SECRET_ACCESS_KEY')" in shown  # not on its command line


def test_a_corrupted_object_is_damage_verify_reports_even_with_a_good_copy_cached(filled, s3_bucket):
    with scandb.connect(filled) as db:
        assert_equal_source(db)  # every object in the cache, intact
        digest, path, offset, length = db.conn.execute(
            "SELECT image_hash, path, pack_offset, pack_length FROM images ORDER BY pack_offset DESC LIMIT 1 OFFSET 1"
        ).fetchone()
    assert path.startswith("packs/") and offset > 0  # an image inside the pack, neither first nor last
    key = f"lab/{lakes.STORE_FOLDER}/{path}"
    client = s3_bucket.server.client()
    good = client.get_object(Bucket=s3_bucket.name, Key=key)["Body"].read()
    at = offset + length - 7  # one of its pixels
    client.put_object(Bucket=s3_bucket.name, Key=key, Body=good[:at] + bytes([good[at] ^ 0xFF]) + good[at + 1:])
    verified = run_cli("verify", "--db", filled)
    assert verified.code != 0, verified
    damaged = [line for line in verified.out.splitlines() if digest in line]
    assert len(damaged) == 1 and path.rpartition("/")[2] in damaged[0], verified  # the image and its pack
    assert sum(path.rpartition("/")[2] in line for line in verified.out.splitlines()) == 1  # its neighbours intact


def test_a_deleted_pack_is_damage_verify_names_and_fetch_refuses_in_one_line(filled, s3_bucket, tmp_path,
                                                                             monkeypatch):
    with scandb.connect(filled) as db:
        pack, n = db.conn.execute("SELECT path, count(*) FROM images GROUP BY 1").fetchone()
    s3_bucket.server.client().delete_object(Bucket=s3_bucket.name, Key=f"lab/{lakes.STORE_FOLDER}/{pack}")
    monkeypatch.setenv("SCANDB_CACHE", str(tmp_path / "empty-cache"))
    verified = run_cli("verify", "--db", filled)
    assert verified.code != 0 and pack.rpartition("/")[2] in verified.out, verified
    assert f"damage found: {n} image files missing" in verified.out.splitlines()[0], verified
    assert sum("missing" in line and pack.rpartition("/")[2] in line for line in verified.out.splitlines()) == n
    with scandb.connect(filled) as db, pytest.raises(scandb.DatabaseError) as refused:
        db.fetch("SELECT scan_key, trial_id FROM trials", "images")
    message = str(refused.value)
    assert "\n" not in message and pack in message and "run 'scandb verify'" in message, message


def test_export_report_snapshots_and_predictions_work_on_a_bucket_lake(filled, tmp_path, monkeypatch, scan_file):
    monkeypatch.setenv("SCANDB_CACHE", str(tmp_path / "cold"))
    exported = run_cli("export", "SELECT scan_key, trial_id FROM trials", str(tmp_path / "out"), "--db", filled)
    assert exported.code == 0, exported
    responses = sorted((tmp_path / "out").rglob("data/responses/*.npy"), key=lambda p: int(p.stem))
    expected = source(spec_for(**SPEC), "responses")
    np.testing.assert_array_equal(np.stack([np.load(p) for p in responses]).reshape(expected.shape),
                                  expected.astype(np.float32))
    import zipfile

    images = {int(p.stem): p for p in (tmp_path / "out").rglob("data/images/*.npy")}
    assert sorted(images) == list(range(SPEC["n_trials"]))
    with scandb.connect(filled) as db:
        assert db.conn.execute("SELECT count(*) FROM images WHERE pack_offset IS NULL").fetchone()[0] == 0
    with zipfile.ZipFile(scan_file) as archive:
        members = {int(n.rpartition("/")[2].removesuffix(".npy")): n for n in archive.namelist()
                   if "/data/images/" in f"/{n}" and n.endswith(".npy")}
        for i, path in images.items():  # the source's .npy files, byte for byte, out of the pack
            assert path.read_bytes() == archive.read(members[i]), i
        sources = {archive.read(members[i]) for i in images}
    parquet = run_cli("export", "SELECT scan_key, trial_id FROM trials", str(tmp_path / "pq"), "--format", "parquet",
                      "--db", filled)
    assert parquet.code == 0, parquet
    import pyarrow.parquet as pq

    rows = pq.read_table(tmp_path / "pq" / "parquet" / "images.parquet")
    assert set(rows["npy"].to_pylist()) == sources and "pack_offset" not in rows.column_names
    reported = run_cli("report", (scan := run_cli("sql", "--csv", "--db", filled, "SELECT scan_key FROM scans")
                                  .out.split()[1]), "--out", str(tmp_path / "report"), "--db", filled)
    assert reported.code == 0 and (tmp_path / "report" / "report.html").is_file(), reported
    assert "ingest" in run_cli("snapshots", "--db", filled).out
    npz = tmp_path / "predictions.npz"
    np.savez(npz, scan_key=np.array([scan] * 12), trial_id=np.arange(12),
             predictions=np.random.default_rng(0).random((12, 9), dtype=np.float32))
    added = run_cli("predictions", "add", "model", str(npz), "--db", filled)
    assert added.code == 0, added
    assert "model" in run_cli("predictions", "list", "--db", filled).out


def test_an_unreachable_endpoint_is_one_line_naming_it(filled, monkeypatch, tmp_path):
    from .s3 import _free_port

    endpoint = f"127.0.0.1:{_free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{endpoint}")
    monkeypatch.setenv("SCANDB_CACHE", str(tmp_path / "cold"))
    exported = run_cli("export", "SELECT scan_key, trial_id FROM trials", str(tmp_path / "out"), "--db", filled)
    assert exported.code != 0 and endpoint in exported.error, exported  # DuckDB's, reading the Parquet files
    from scandb.catalog.database import Database

    with Database(filled) as db, pytest.raises(scandb.DatabaseError, match="check AWS_ENDPOINT_URL"):
        db.store.read(db.conn.execute("SELECT path FROM response_matrices").fetchone()[0])


def test_dataloader_workers_train_on_a_bucket_lake_while_another_process_ingests(filled, tmp_path, monkeypatch):
    import torch

    from scandb.torchdata import ScanDataset

    monkeypatch.setenv("SCANDB_CACHE", str(tmp_path / "train-cache"))
    (tmp_path / "more").mkdir()
    writer = PrimedCommand("ingest", str(make_scan(tmp_path / "more", animal_id=24201, seed=21, n_trials=10,
                                                   n_neurons=7)), "--db", filled)
    dataset = ScanDataset(filled, "SELECT scan_key, trial_id FROM trials ORDER BY trial_id", normalize=False)
    Cache(tmp_path / "train-cache").clear()  # the forked workers fetch what they read, each with its own client
    writer.fire()
    batches = list(torch.utils.data.DataLoader(dataset, batch_size=4, num_workers=2))
    done = writer.finish()
    assert done.code == 0, done
    spec = spec_for(**SPEC)
    for key in ("images", "responses"):
        got = np.concatenate([getattr(batch, key).numpy() for batch in batches])
        np.testing.assert_array_equal(got, source(spec, key).reshape(got.shape).astype(got.dtype), err_msg=key)
    assert Cache(tmp_path / "train-cache").info()["objects"] >= 2  # read by range, every block: kept whole
    with scandb.connect(filled) as db:
        assert len(db.scans()) == 2


def test_forked_ingest_workers_upload_their_chunks_images(s3_bucket, tmp_path, scan_file, monkeypatch):
    from scandb.ingest import prefetch

    monkeypatch.setattr(prefetch, "MIN_BYTES_FOR_WORKERS", 0)  # this small scan read as a big one is
    monkeypatch.setattr(prefetch, "CHUNK_TRIALS", 4)  # three chunks, shared by two workers
    url = catalog(tmp_path)
    run = run_cli("ingest", str(scan_file), "--db", url, "--data-path", s3_bucket.url)
    assert run.code == 0, run
    monkeypatch.setenv("SCANDB_CACHE", str(tmp_path / "cold"))
    with scandb.connect(url) as db:
        assert_equal_source(db)
    assert run_cli("verify", "--db", url).code == 0


def test_an_ingest_failing_once_its_matrix_upload_began_leaves_whole_objects_gc_deletes(
        s3_bucket, tmp_path, scan_file, monkeypatch):
    """The matrix's upload begins once every row is written; an ingest failing after that
    (its progress callback raising on the last chunk) waits for the upload before it
    returns: nothing is left uploading, staged or referenced, and gc deletes the objects."""
    url, store = catalog(tmp_path), lakes.STORE_FOLDER
    seen = []

    def progress(done, total):
        seen.append(done)
        if sum(seen) == total:
            raise RuntimeError("stopped after the last chunk")

    with scandb.connect(url, read_only=False, data_path=s3_bucket.url) as db:
        with pytest.raises(Exception, match="stopped after the last chunk"):
            db.ingest(scan_file, progress=lambda path: progress)
        assert db.sql("SELECT count(*) FROM scans").fetchone()[0] == 0
    matrices = [k for k in s3_bucket.keys(f"{store}/responses/")]
    assert len(matrices) == 1, matrices  # uploaded whole before the ingest returned
    assert Bucket(f"{s3_bucket.url}/{store}").unfinished_uploads() == []
    assert [p for p in (s3_bucket.cache / "staging").rglob("*") if p.is_file()] == []
    monkeypatch.setattr(lakes, "IN_FLIGHT_S", 0.0)
    from scandb.catalog.lake_catalog import LakeCatalog
    monkeypatch.setattr(LakeCatalog, "garbage_age", 0.0)
    collected = run_cli("gc", "--older-than", "0", "--db", url)
    assert collected.code == 0, collected
    assert [k for k in s3_bucket.keys() if k.startswith(f"{store}/")] == []


def test_a_bucket_that_does_not_exist_is_one_line(s3_bucket, tmp_path, scan_file):
    run = run_cli("ingest", str(scan_file), "--db", catalog(tmp_path), "--data-path", "s3://no-such-bucket-here/lab")
    assert run.code != 0 and "s3://no-such-bucket-here: no such bucket" in run.error, run


TRAINER = """
import sys
from pathlib import Path

import numpy as np
import torch

from scandb.torchdata import ScanDataset

print("ready", flush=True)
sys.stdin.readline()
url, out, epochs_to_run = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
dataset = ScanDataset(url, "SELECT scan_key, trial_id FROM trials ORDER BY scan_key, trial_id", normalize=False)
loader = torch.utils.data.DataLoader(dataset, batch_size=4, num_workers=2, persistent_workers=True)
epochs = []
for epoch in range(epochs_to_run):
    batches = list(loader)
    epochs.append({key: np.concatenate([getattr(b, key).numpy() for b in batches]) for key in ("images", "responses")})
np.savez(out, scan_keys=dataset.scan_keys.astype(str), trial_ids=dataset.trial_ids,
         **{f"{key}_{n}": array for n, epoch in enumerate(epochs) for key, array in epoch.items()})
print(len(epochs), "epochs of", len(dataset), "trials", flush=True)
"""
"""A trainer (``TRAINER url out epochs``): a DataLoader with 2 workers over the lake's
trials at the newest snapshot when it starts, for some epochs; saves what each epoch read."""


def assert_trainer_read_the_source(out, specs: dict, epochs: int) -> None:
    """Every epoch ``TRAINER`` saved in ``out`` holds the source files' arrays of its trials."""
    report = np.load(out)
    names = sorted({name.rpartition("_")[2] for name in report.files if name.startswith("images_")})
    assert len(names) == epochs, report.files
    for key in ("images", "responses"):
        expected = np.stack([source(specs[scan], key, [trial])[0]
                             for scan, trial in zip(report["scan_keys"], report["trial_ids"])])
        for epoch in names:
            got = report[f"{key}_{epoch}"]
            np.testing.assert_array_equal(got, expected.reshape(got.shape).astype(got.dtype), err_msg=(key, epoch))

MACHINE_SCANS = [dict(SPEC, animal_id=24111, seed=13, n_trials=10), dict(SPEC, animal_id=24112, seed=14, n_trials=10)]
"""What two machines ingest at once (the neurons of SPEC's scan: one trainer batch may mix scans)."""


def machine(folder, request) -> dict:
    """A machine of its own: working folder, cache, home and temporary folder under ``folder``
    (what it shares with the others: the catalog and the bucket). The temporary folder is
    a short path of its own: DataLoader workers put Unix sockets there, whose paths may
    not pass 107 bytes (a pytest-xdist worker's ``tmp_path`` is longer than that allows)."""
    places = {name: folder / name for name in ("work", "cache", "home")}
    for place in places.values():
        place.mkdir(parents=True)
    places["tmp"] = Path(tempfile.mkdtemp(prefix="scandb-machine-", dir="/tmp"))
    request.addfinalizer(lambda: shutil.rmtree(places["tmp"], ignore_errors=True))
    return {"cwd": places["work"], "env": {"SCANDB_CACHE": str(places["cache"]), "HOME": str(places["home"]),
                                           "TMPDIR": str(places["tmp"]), "XDG_CACHE_HOME": None}}


@pytest.mark.parametrize("catalog_kind", ["sqlite", "postgres"])
def test_two_machines_ingest_into_a_bucket_lake_at_once_while_a_third_trains(
        catalog_kind, request, s3_bucket, scan_file, tmp_path, monkeypatch):
    if catalog_kind == "sqlite":
        url = request.getfixturevalue("filled")
    else:
        url = f"ducklake:postgres:{request.getfixturevalue('pg_server').database()}"
        run = run_cli("ingest", str(scan_file), "--db", url, "--data-path", s3_bucket.url)
        assert run.code == 0, run
    places = {name: machine(tmp_path / name, request) for name in ("a", "b", "trainer")}
    scans = [make_scan(places[name]["cwd"].parent, **spec) for name, spec in zip("ab", MACHINE_SCANS)]
    writers = [PrimedCommand("ingest", str(scan), "--db", url, **places[name]) for name, scan in zip("ab", scans)]
    read = tmp_path / "trainer" / "read.npz"
    trainer = PrimedCommand(url, read, 3, script=TRAINER, **places["trainer"])
    for writer in writers:
        writer.fire()
    trainer.fire()
    trained = trainer.finish()
    ingests = [writer.finish() for writer in writers]
    for done in ingests:
        assert done.code == 0, done
    assert trained.code == 0, trained

    specs = {spec.key: spec for spec in [spec_for(**SPEC), *(spec_for(**s) for s in MACHINE_SCANS)]}
    assert len(np.load(read)["trial_ids"]) >= SPEC["n_trials"]  # at least the scan that was in before
    assert_trainer_read_the_source(read, specs, 3)
    for name in "ab":
        assert Cache(places[name]["env"]["SCANDB_CACHE"]).info()["objects"] > 0  # each machine its own cache
    assert Cache(places["trainer"]["env"]["SCANDB_CACHE"]).info()["objects"] > 0  # packs and matrices by range,
    # kept whole once every block of them was read
    assert all(not any(places[name]["cwd"].iterdir()) for name in places)  # nothing in a working folder

    cold = tmp_path / "cold-cache"
    monkeypatch.setenv("SCANDB_CACHE", str(cold))
    with scandb.connect(url) as db:
        assert sorted(db.scans()["animal_id"].tolist()) == [24001, 24111, 24112]
        for spec in specs.values():
            assert_equal_source(db, spec)  # every object downloaded
        cached = Cache(cold).info()
        for spec in specs.values():
            assert_equal_source(db, spec)  # from the cache
    assert Cache(cold).info() == cached
    verified = run_cli("verify", "--db", url)
    assert verified.code == 0 and "ok: 3 scans" in verified.out, verified
    assert len([k for k in s3_bucket.keys() if k.startswith(f"{lakes.STORE_FOLDER}/responses/")]) == 3
    assert "s3://" not in run_cli("sql", "--csv", "--db", url, "SELECT path FROM response_matrices").out  # keys, not URLs



def test_processes_and_dataloader_workers_read_through_one_small_cache_evicting_as_they_go(
        filled, tmp_path, monkeypatch):
    """A cache that holds less than a read of the scan keeps (its pack's block and half the
    rest): each read evicts what another process may be about to open or has memory-mapped."""
    import torch

    from scandb.torchdata import ScanDataset

    probe = tmp_path / "probe-cache"
    monkeypatch.setenv("SCANDB_CACHE", str(probe))
    with scandb.connect(filled) as db:
        assert_equal_source(db)
    kept = sorted(size for _, size, _ in Cache(probe).entries())
    limit = kept[-1] + sum(kept[:-1]) // 2  # the largest (the pack's block) and half the rest
    assert sum(kept) > limit
    shared = tmp_path / "shared-cache"
    env = {"SCANDB_CACHE": str(shared), "SCANDB_CACHE_SIZE": str(limit)}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    other = PrimedCommand(filled, tmp_path / "read.npz", 4, script=TRAINER)
    dataset = ScanDataset(filled, "SELECT scan_key, trial_id FROM trials ORDER BY trial_id", normalize=False)
    other.fire()
    loader = torch.utils.data.DataLoader(dataset, batch_size=3, num_workers=2, persistent_workers=True)
    spec = spec_for(**SPEC)
    for epoch in range(4):
        batches = list(loader)
        for key in ("images", "responses"):
            got = np.concatenate([getattr(batch, key).numpy() for batch in batches])
            np.testing.assert_array_equal(got, source(spec, key).reshape(got.shape).astype(got.dtype),
                                          err_msg=(key, epoch))
    done = other.finish()
    assert done.code == 0, done
    assert_trainer_read_the_source(tmp_path / "read.npz", {spec.key: spec}, 4)
    entries = Cache(shared, limit).entries()
    old = [size for used, size, _ in entries if used < time.time() - IN_USE_S]
    assert sum(old) <= limit, entries  # beyond it only what was read in the last seconds
    for used, _, path in entries:
        os.utime(path, (used - IN_USE_S, used - IN_USE_S))  # as if read a while ago
    Cache(shared, limit).evict()
    assert 0 < Cache(shared, limit).info()["bytes"] <= limit
