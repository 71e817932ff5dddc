"""A lake whose data path is an S3 bucket (moto's server, tests/s3.py; nothing inside scandb
is mocked), on a SQLite catalog, beyond the static scans of tests/test_bucket_lake.py.

Video scans and experanto sessions ingest, read back as their sources, verify clean, name a
deleted or changed session array as damage, free their objects through remove and gc, and
export as their source folders. A ``scandb ingest`` killed mid-upload leaves the catalog as
it was, and gc takes its objects and its unfinished multipart upload. On a second server,
one that checks keys, a refused key is one line naming what to set."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from dataclasses import dataclass

import numpy as np
import pytest

import scandb
from scandb.catalog import lake as lakes
from scandb.catalog.lake_catalog import LakeCatalog
from scandb.synthetic import VideoSpec, generate_dynamic, write_zip
from tests import experanto_reference as reference
from tests.experanto_sessions import make_session, spec_for

from .hostile import run_cli, scandb_command
from .s3 import (BucketUnderTest, moto_server, moto_server_checking_keys, s3_bucket,  # noqa: F401  (fixtures)
                 use_bucket, use_credentials)
from .scans import make_scan, stack

VIDEO = VideoSpec(animal_id=29521, seed=3, n_trials=12, n_neurons=6, video_shape=(18, 32), n_frames=20,
                  min_length=10)
SESSION = dict(animal_id=29522, seed=4)
SESSION_KEY = spec_for("videos", **SESSION).key
STORE = lakes.STORE_FOLDER


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("bucket-sources")
    return {"video": write_zip(generate_dynamic(VIDEO), root / f"{VIDEO.name}.zip"),
            "session": make_session(root, "videos", **SESSION)}


@dataclass
class BucketLake:
    url: str
    bucket: BucketUnderTest


@pytest.fixture(scope="module")
def shared(moto_server, sources, tmp_path_factory):
    """One bucket lake holding the video scan and the session, ingested with the command
    line; the environment set for the module (tests that only read share it)."""
    root = tmp_path_factory.mktemp("bucket-lake")
    with pytest.MonkeyPatch.context() as patch:
        bucket = use_bucket(moto_server, patch, root / "cache")
        url = f"ducklake:sqlite:{root / 'catalog.sqlite'}"
        run = run_cli("ingest", str(sources["video"]), str(sources["session"]), "--db", url,
                      "--data-path", bucket.url)
        assert run.code == 0, run
        yield BucketLake(url, bucket)


@pytest.fixture
def own(shared, tmp_path, monkeypatch) -> BucketLake:
    """A copy of the shared lake for a test that changes it: its objects copied into a new
    bucket on the server, its catalog file copied and pointed at that bucket."""
    bucket = use_bucket(shared.bucket.server, monkeypatch, tmp_path / "cache")
    client = bucket.server.client()
    for key in shared.bucket.keys():
        client.copy_object(Bucket=bucket.name, Key=f"lab/{key}",
                           CopySource={"Bucket": shared.bucket.name, "Key": f"lab/{key}"})
    catalog = tmp_path / "catalog.sqlite"
    shutil.copy(shared.url.removeprefix("ducklake:sqlite:"), catalog)
    with contextlib.closing(sqlite3.connect(catalog)) as conn, conn:
        changed = conn.execute("UPDATE ducklake_metadata SET value = ? WHERE key = 'data_path'",
                               [bucket.url + "/"]).rowcount
    assert changed == 1
    return BucketLake(f"ducklake:sqlite:{catalog}", bucket)


def cold(monkeypatch, tmp_path) -> None:
    """Read through a new, empty cache: every object downloaded from the bucket."""
    monkeypatch.setenv("SCANDB_CACHE", str(tmp_path / "cold-cache"))


def session_arrays(url: str) -> list[str]:
    with scandb.connect(url) as db:
        return [row[0] for row in db.run("SELECT path FROM modalities WHERE scan_key = ? AND path IS NOT NULL",
                                         [SESSION_KEY])[1]]


# -- reading ---------------------------------------------------------------------------------------


def test_the_objects_are_in_the_bucket_and_the_video_scan_reads_as_its_source(shared, monkeypatch, tmp_path):
    keys = shared.bucket.keys()
    assert [k for k in keys if k.startswith(f"{STORE}/sessions/")], keys
    cold(monkeypatch, tmp_path)
    arrays = generate_dynamic(VIDEO).arrays
    with scandb.connect(shared.url) as db:
        fetched = db.fetch("SELECT scan_key, trial_id FROM trials WHERE scan_key = ? ORDER BY trial_id",
                           params=[VIDEO.key])
        window = db.fetch("SELECT scan_key, trial_id FROM trials WHERE scan_key = ? ORDER BY trial_id",
                          params=[VIDEO.key], frames=(3, 11))
    assert set(fetched) == {"videos", "responses", "behavior", "pupil_center"}
    for key, got in fetched.items():
        expected = stack(arrays, key, range(VIDEO.n_trials)).astype(got.dtype)
        assert np.ascontiguousarray(got).tobytes() == np.ascontiguousarray(expected).tobytes(), key
        assert np.ascontiguousarray(window[key]).tobytes() == np.ascontiguousarray(expected[..., 3:11]).tobytes()


def test_the_session_samples_as_the_reference_reads_its_source_folder(shared, sources, monkeypatch, tmp_path):
    cold(monkeypatch, tmp_path)
    folder = sources["session"]
    with scandb.connect(shared.url) as db:
        start, end = db.sql("SELECT start_time, end_time FROM modalities WHERE scan_key = ? AND name = 'responses'",
                            params=[SESSION_KEY]).fetchone()
        times = np.linspace(start - 1, end + 1, 50)
        names = ["responses", "eye_tracker", "treadmill", "screen"]
        config = {"screen": {"interpolation": {"rescale": False}, "transforms": {"normalization": "screen_default"}}}
        ours = db.sample(SESSION_KEY, times, names, return_valid=True, config=config)
    modes = {"responses": "normalize_variance_only", "eye_tracker": "normalize", "treadmill": "normalize",
             "screen": "screen_default"}
    for name in names:
        raw, valid = reference.interpolate(folder, name, times, rescale=False)
        expected = reference.normalize(folder, name, raw, modes[name])
        values, got_valid = ours[name]
        np.testing.assert_array_equal(got_valid, valid, err_msg=name)
        assert values.dtype == expected.dtype and values.tobytes() == expected.tobytes(), name


def test_session_dataset_items_are_the_references_chunks(shared, sources, monkeypatch, tmp_path):
    from scandb.torchdata import SessionDataset

    from .test_session_training import SMALL, assert_same_item, reference_config

    cold(monkeypatch, tmp_path)
    dataset = SessionDataset(shared.url, SESSION_KEY, "oracle", config=SMALL)
    config = reference_config(SMALL)
    for index in (0, len(dataset) - 1):
        assert_same_item(dataset[index], reference.chunk(sources["session"], dataset.starts[index], config))


def test_verify_finds_nothing_wrong(shared, monkeypatch, tmp_path):
    cold(monkeypatch, tmp_path)
    verified = run_cli("verify", "--db", shared.url)
    assert verified.code == 0 and "ok: 2 scans" in verified.out, verified


def test_the_session_exports_from_the_bucket_as_its_source_folder(shared, sources, monkeypatch, tmp_path):
    cold(monkeypatch, tmp_path)
    query = f"SELECT scan_key, trial_id FROM trials WHERE scan_key = '{SESSION_KEY}' ORDER BY trial_id"
    exported = run_cli("export", query, str(tmp_path / "out"), "--db", shared.url)
    assert exported.code == 0, exported
    folder = tmp_path / "out" / sources["session"].name

    def files(root):
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    assert files(folder) == files(sources["session"])


# -- damage and freeing ----------------------------------------------------------------------------


def test_a_deleted_and_a_changed_session_array_are_damage_verify_names(own):
    deleted, changed = sorted(p for p in session_arrays(own.url))[:2]
    client = own.bucket.server.client()
    client.delete_object(Bucket=own.bucket.name, Key=f"lab/{STORE}/{deleted}")
    good = client.get_object(Bucket=own.bucket.name, Key=f"lab/{STORE}/{changed}")["Body"].read()
    client.put_object(Bucket=own.bucket.name, Key=f"lab/{STORE}/{changed}", Body=good[:-1] + bytes([good[-1] ^ 1]))
    verified = run_cli("verify", "--db", own.url)
    assert verified.code != 0, verified
    found = [line for line in verified.out.splitlines() if "session array" in line]
    for array in (deleted, changed):
        assert any(array.rpartition("/")[2].removesuffix(".npy") in line for line in found), (array, verified.out)


def test_remove_then_gc_deletes_the_sessions_objects_and_keeps_the_video_scans(own, monkeypatch):
    arrays = session_arrays(own.url)
    before = own.bucket.keys(f"{STORE}/")
    assert arrays and all(f"{STORE}/{a}" in before for a in arrays)
    removed = run_cli("remove", SESSION_KEY, "--db", own.url)
    assert removed.code == 0, removed
    assert own.bucket.keys(f"{STORE}/") == before  # kept for readers that started before
    monkeypatch.setattr(LakeCatalog, "garbage_age", 0.0)
    collected = run_cli("gc", "--older-than", "0", "--db", own.url)
    assert collected.code == 0, collected
    left = own.bucket.keys(f"{STORE}/")
    assert not [a for a in arrays if f"{STORE}/{a}" in left], left
    with scandb.connect(own.url) as db:
        videos = [row[0] for row in db.run("SELECT path FROM images")[1]]
        assert db.scans()["scan_key"].tolist() == [VIDEO.key]
    assert videos and all(f"{STORE}/{v}" in left for v in videos)


# -- a killed ingest -------------------------------------------------------------------------------

BIG_SESSION = dict(animal_id=29530, seed=7, responses_rate=100.0, n_neurons=6000)
"""A session whose responses (40 MB) go up in parts (past ``bucket.MULTIPART_THRESHOLD``)
for most of a second: long enough to kill the ingest mid-upload."""


def catalog_rows(url: str) -> list:
    """Every row of a SQLite catalog, as SQL: equal lists are equal catalogs."""
    with contextlib.closing(sqlite3.connect(url.removeprefix("ducklake:sqlite:"))) as conn:
        return list(conn.iterdump())


def test_an_ingest_killed_mid_upload_leaves_nothing_visible_and_gc_takes_its_objects_and_its_upload(
        s3_bucket, tmp_path, monkeypatch):
    from scandb.store import bucket as buckets

    session = make_session(tmp_path, "videos", **BIG_SESSION)
    assert (session / "responses" / "data.mem").stat().st_size > buckets.MULTIPART_THRESHOLD
    url = f"ducklake:sqlite:{tmp_path / 'catalog.sqlite'}"
    assert run_cli("migrate", "--db", url, "--data-path", s3_bucket.url).code == 0
    before = catalog_rows(url)
    client = s3_bucket.server.client()

    def uploads():
        return client.list_multipart_uploads(Bucket=s3_bucket.name).get("Uploads", [])

    ingest = subprocess.Popen(scandb_command("ingest", str(session), "--db", url),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not uploads() and ingest.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        ingest.send_signal(signal.SIGKILL)
        ingest.wait()
    assert ingest.returncode == -signal.SIGKILL  # killed, not finished
    unfinished = [u["Key"] for u in uploads()]
    assert unfinished and all(k.startswith(f"lab/{STORE}/sessions/") for k in unfinished), unfinished
    orphans = s3_bucket.keys(f"{STORE}/")
    assert orphans, "no object was uploaded before the upload in parts"

    assert catalog_rows(url) == before  # nothing visible
    with scandb.connect(url) as db:
        assert len(db.scans()) == 0

    monkeypatch.setattr(lakes, "IN_FLIGHT_S", 0.0)
    monkeypatch.setattr(LakeCatalog, "garbage_age", 0.0)
    listed = run_cli("gc", "--older-than", "0", "--dry-run", "--db", url)
    assert listed.code == 0 and "would abort 1 unfinished upload" in listed.out, listed
    assert f"upload {unfinished[0].removeprefix('lab/')}" in listed.out, listed
    assert [u["Key"] for u in uploads()] == unfinished

    # moto dates every upload 2010-11-10 (its listing's Initiated is fixed): an age reaching
    # past that makes the upload one an ingest may still be sending
    monkeypatch.setattr(LakeCatalog, "garbage_age", time.time())
    kept = run_cli("gc", "--older-than", "0", "--db", url)
    assert kept.code == 0 and "kept 1 newer unfinished upload" in kept.out, kept
    assert [u["Key"] for u in uploads()] == unfinished and s3_bucket.keys(f"{STORE}/") == orphans

    monkeypatch.setattr(LakeCatalog, "garbage_age", 0.0)
    collected = run_cli("gc", "--older-than", "0", "--db", url)
    assert collected.code == 0, collected
    assert "aborted 1 unfinished upload" in collected.out, collected
    assert f"deleted {len(orphans)} store file" in collected.out, collected
    assert uploads() == [] and s3_bucket.keys(f"{STORE}/") == []
    with scandb.connect(url) as db:
        assert len(db.scans()) == 0


# -- a server that checks keys ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def checked_lake(moto_server_checking_keys, tmp_path_factory):
    """A lake on the server checking keys, holding one scan ingested with the key it accepts."""
    server, root = moto_server_checking_keys, tmp_path_factory.mktemp("checked")
    with pytest.MonkeyPatch.context() as patch:
        use_credentials(server.server, patch, root / "cache", server.key_id, server.secret)
        url = f"ducklake:sqlite:{root / 'catalog.sqlite'}"
        run = run_cli("ingest", str(make_scan(root, animal_id=24301, seed=31, n_trials=6, n_neurons=5)),
                      "--db", url, "--data-path", f"s3://{server.bucket}/lab")
        assert run.code == 0, run  # the key made through moto's IAM works
        yield url


@pytest.mark.parametrize("wrong", ["secret", "key id"])
def test_a_refused_key_is_one_line_naming_what_to_set_and_changes_nothing(checked_lake, moto_server_checking_keys,
                                                                          wrong, tmp_path, monkeypatch):
    from scandb.catalog.database import Database

    url = checked_lake
    second = make_scan(tmp_path, animal_id=24302, seed=32, n_trials=6, n_neurons=5)
    before = catalog_rows(url)
    if wrong == "secret":
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret-of-that-key")
        code = "SignatureDoesNotMatch"
    else:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIANOSUCHKEY0000000")
        code = "InvalidAccessKeyId"
    monkeypatch.setenv("SCANDB_CACHE", str(tmp_path / "cold"))  # nothing read before
    export = ["export", "SELECT scan_key, trial_id FROM trials", str(tmp_path / "out")]
    for command in (["ingest", str(second)], export):  # DuckDB's reads of the Parquet files meet it first
        refused = run_cli(*command, "--db", url)
        assert refused.code != 0, (command, refused)
        line = refused.error  # exactly one line
        assert "the server refused the credentials" in line and code in line, (command, line)
        assert "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" in line, (command, line)
    assert not (tmp_path / "out").exists()
    assert catalog_rows(url) == before
    new = tmp_path / "new.sqlite"  # a new lake: refused before its catalog is made
    refused = run_cli("ingest", str(second), "--db", f"ducklake:sqlite:{new}", "--data-path",
                      f"s3://{moto_server_checking_keys.bucket}/new")
    assert refused.code != 0 and code in refused.error and "AWS_SECRET_ACCESS_KEY" in refused.error, refused
    assert not new.exists()
    with Database(url) as db, pytest.raises(scandb.DatabaseError, match=f"refused the credentials \\({code}"):
        db.store.read(db.conn.execute("SELECT path FROM response_matrices").fetchone()[0])  # the store's client


@pytest.mark.parametrize("wrong", ["secret", "key id"])
def test_the_duckdb_shell_with_a_refused_key_is_one_line_naming_what_to_set(checked_lake, wrong, tmp_path):
    """The lake's small tables are inlined in its catalog: without a check before the shell
    starts, the refused key would be met only at the first query reading a Parquet file."""
    works = subprocess.run(scandb_command("shell", "--db", checked_lake), input=".mode csv\nSELECT count(*) AS n "
                           "FROM trials_full;\n", capture_output=True, text=True, timeout=120)
    assert works.returncode == 0 and works.stdout.split()[-1] == "6", works.stderr  # the key it accepts
    variable, code = (("AWS_SECRET_ACCESS_KEY", "SignatureDoesNotMatch") if wrong == "secret" else
                      ("AWS_ACCESS_KEY_ID", "InvalidAccessKeyId"))
    env = {**os.environ, variable: "AKIANOSUCHKEY0000000", "SCANDB_CACHE": str(tmp_path / "c")}
    done = subprocess.run(scandb_command("shell", "--db", checked_lake), input="SELECT * FROM trials_full;\n",
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode != 0 and not done.stdout, (done.stdout[-600:], done.stderr)
    lines = done.stderr.splitlines()
    assert len(lines) == 1, lines
    assert f"the server refused the credentials ({code}" in lines[0], lines
    assert "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" in lines[0], lines
