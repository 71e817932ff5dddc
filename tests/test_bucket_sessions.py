"""Video scans and experanto sessions on a lake whose data path is an S3 bucket (moto's
server, tests/s3.py; nothing inside scandb is mocked), on a SQLite catalog: they ingest,
read back as their sources, verify clean, name a deleted or changed session array as
damage, free their objects through remove and gc, and export as their source folders."""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
from dataclasses import dataclass

import numpy as np
import pytest

import scandb
from scandb.catalog import lake as lakes
from scandb.catalog.lake_catalog import LakeCatalog
from scandb.synthetic import VideoSpec, generate_dynamic, write_zip
from tests import experanto_reference as reference
from tests.experanto_sessions import make_session, spec_for

from .hostile import run_cli
from .s3 import BucketUnderTest, moto_server, s3_bucket, use_bucket  # noqa: F401  (fixtures)
from .scans import stack

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


@pytest.mark.parametrize("damage", ["deleted", "changed"])
def test_a_deleted_or_changed_session_array_is_damage_verify_names(own, damage, monkeypatch, tmp_path):
    (array,) = [p for p in session_arrays(own.url) if p.endswith(".npy")][:1]
    key = f"lab/{STORE}/{array}"
    client = own.bucket.server.client()
    if damage == "deleted":
        client.delete_object(Bucket=own.bucket.name, Key=key)
    else:
        good = client.get_object(Bucket=own.bucket.name, Key=key)["Body"].read()
        client.put_object(Bucket=own.bucket.name, Key=key, Body=good[:-1] + bytes([good[-1] ^ 1]))
    verified = run_cli("verify", "--db", own.url)
    name = array.rpartition("/")[2].removesuffix(".npy")
    assert verified.code != 0 and name in verified.out, verified
    assert "session array" in verified.out, verified


def test_remove_then_gc_deletes_the_sessions_objects(own, monkeypatch):
    arrays = session_arrays(own.url)
    assert arrays and all(f"{STORE}/{a}" in own.bucket.keys() for a in arrays)
    removed = run_cli("remove", SESSION_KEY, "--db", own.url)
    assert removed.code == 0, removed
    assert all(f"{STORE}/{a}" in own.bucket.keys() for a in arrays)  # kept for readers that started before
    monkeypatch.setattr(LakeCatalog, "garbage_age", 0.0)
    collected = run_cli("gc", "--older-than", "0", "--db", own.url)
    assert collected.code == 0, collected
    left = own.bucket.keys(f"{STORE}/sessions/")
    assert not [a for a in arrays if f"{STORE}/{a}" in left], left
    verified = run_cli("verify", "--db", own.url)
    assert verified.code == 0 and "ok: 1 scan" in verified.out, verified
