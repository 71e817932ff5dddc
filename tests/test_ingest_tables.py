"""A scan turned into Arrow tables and read in chunks, checked against the source: no database."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np
import pytest

from scandb.ingest import prefetch, tables
from scandb.ingest.writer import content_digest
from scandb.source.scan import open_scan
from scandb.store.images import ImageStore
from scandb.synthetic import generate, write_folder, write_zip

from .scans import spec_for

SPEC = spec_for(animal_id=31313, n_trials=70, n_neurons=12, seed=9)


@pytest.fixture(scope="module")
def source():
    return generate(SPEC)


@pytest.fixture(scope="module")
def scan_zip(tmp_path_factory, source) -> Path:
    return write_zip(source, tmp_path_factory.mktemp("tables") / f"{SPEC.name}.zip")


@pytest.fixture
def scan(scan_zip):
    with open_scan(scan_zip) as opened:
        yield opened


def read_all(scan, store, order=None):
    groups = tables.neuron_groups(scan)
    order = np.arange(scan.n_trials, dtype=np.int32) if order is None else order
    return [prefetch.read_chunk(scan, store, groups, trials) for trials in prefetch.chunks_in(order)], groups


def test_trial_table_holds_each_trials_tier_and_image_id(scan, source):
    table = tables.trial_table(scan, ["h"] * scan.n_trials)
    assert table.column("tier").to_pylist() == [str(t) for t in source.arrays["meta/trials/tiers.npy"]]
    assert table.column("image_id").to_pylist() == source.arrays["meta/trials/frame_image_id.npy"].tolist()
    assert table.column("trial_id").to_pylist() == list(range(SPEC.n_trials))


def test_neuron_table_holds_unit_ids_areas_and_coordinates(scan, source):
    table = tables.neuron_table(scan)
    assert table.column("unit_id").to_pylist() == source.arrays["meta/neurons/unit_ids.npy"].tolist()
    assert table.column("area").to_pylist() == [str(a) for a in source.arrays["meta/neurons/area.npy"]]
    coords = source.arrays["meta/neurons/cell_motor_coordinates.npy"]
    assert table.column("z").to_pylist() == coords[:, 2].astype(float).tolist()


def test_response_rows_are_the_source_files_in_the_order_read(scan, source, tmp_path):
    order = tables.image_order(scan)
    chunks, _ = read_all(scan, ImageStore(tmp_path / "lab.images"), order)
    image_ids = tables.image_ids(scan)
    for chunk in chunks:
        table = tables.response_table(scan.key, chunk, image_ids)
        for trial, row, image_id in zip(chunk.trials, table.column("response").to_pylist(),
                                        table.column("image_id").to_pylist()):
            np.testing.assert_array_equal(np.array(row, np.float32), source.arrays[f"data/responses/{trial}.npy"])
            assert image_id == source.arrays["meta/trials/frame_image_id.npy"][trial]


def test_image_order_sorts_trials_by_image_then_trial(scan, source):
    order = tables.image_order(scan)
    ids = source.arrays["meta/trials/frame_image_id.npy"]
    assert sorted(order.tolist()) == list(range(SPEC.n_trials))
    assert [(ids[t], t) for t in order] == sorted((ids[t], t) for t in range(SPEC.n_trials))


def test_area_sums_equal_sums_over_the_source_responses(scan, source, tmp_path):
    chunks, groups = read_all(scan, ImageStore(tmp_path / "lab.images"))
    areas = source.arrays["meta/neurons/area.npy"].astype(str)
    layers = source.arrays["meta/neurons/layer.npy"].astype(str)
    for chunk in chunks:
        table = tables.area_response_table(scan.key, chunk, groups).to_pylist()
        for row in table:
            mask = (areas == row["area"]) & (layers == row["layer"])
            expected = source.arrays[f"data/responses/{row['trial_id']}.npy"][mask].astype(np.float64).sum()
            assert row["n_neurons"] == mask.sum()
            assert row["response_sum"] == pytest.approx(expected, rel=1e-6, abs=1e-9)


def test_a_chunk_stores_its_images_and_hashes_every_member_it_read(scan, scan_zip, tmp_path):
    store = ImageStore(tmp_path / "lab.images")
    chunk = prefetch.read_chunk(scan, store, tables.neuron_groups(scan), np.array([3, 1], np.int32))
    with zipfile.ZipFile(scan_zip) as zf:
        for rel, digest in chunk.member_digests.items():
            assert hashlib.sha256(zf.read(f"{SPEC.name}/{rel}")).hexdigest() == digest
        for trial, stored in zip((3, 1), chunk.images):
            assert store.file(stored.image_hash).read_bytes() == zf.read(f"{SPEC.name}/data/images/{trial}.npy")
    assert len(chunk.member_digests) == 8
    assert sorted(chunk.created) == sorted({str(store.file(i.image_hash)) for i in chunk.images})


def test_a_failing_chunk_removes_the_images_it_wrote(source, tmp_path):
    broken = generate(SPEC)
    broken.arrays["data/responses/5.npy"] = np.zeros(3, np.float32)
    with open_scan(write_zip(broken, tmp_path / "broken.zip")) as scan:
        store = ImageStore(tmp_path / "lab.images")
        with pytest.raises(Exception, match=r"data/responses/5\.npy"):
            prefetch.read_chunk(scan, store, tables.neuron_groups(scan), np.arange(10, dtype=np.int32))
        assert store.files() == {} and store.created == []


def test_worker_processes_read_the_same_chunks_as_the_caller(scan, scan_zip, tmp_path):
    order = tables.image_order(scan)
    serial, _ = read_all(scan, ImageStore(tmp_path / "a.images"), order)
    store = ImageStore(tmp_path / "b.images")
    with prefetch.Prefetcher(scan_zip, scan, store, tables.neuron_groups(scan), workers=2) as reader:
        parallel = list(reader.chunks(order))
    assert len(parallel) == len(serial)
    for one, other in zip(serial, parallel):
        np.testing.assert_array_equal(one.trials, other.trials)
        np.testing.assert_array_equal(one.responses, other.responses)
        np.testing.assert_array_equal(one.area_sums, other.area_sums)
        assert one.member_digests == other.member_digests
        assert [i.image_hash for i in one.images] == [i.image_hash for i in other.images]
    assert set(store.files()) == {i.image_hash for c in serial for i in c.images}


def test_a_bad_member_read_by_a_worker_is_the_same_one_line_error(tmp_path):
    broken = generate(SPEC)
    broken.arrays["data/behavior/40.npy"] = np.zeros(7, np.float32)
    path = write_zip(broken, tmp_path / "broken.zip")
    with open_scan(path) as scan:
        store = ImageStore(tmp_path / "lab.images")
        reader = prefetch.Prefetcher(path, scan, store, tables.neuron_groups(scan), workers=2)
        with pytest.raises(Exception) as raised:
            list(reader.chunks(np.arange(scan.n_trials, dtype=np.int32)))
        reader.close()
    assert type(raised.value).__name__ == "BadScanError"
    assert str(raised.value).endswith("data/behavior/40.npy: shape (7,) float32, but trial 0 of behavior is "
                                      "shape (3,) float32")


def test_content_digest_is_the_same_for_a_zip_and_its_unzipped_folder(scan_zip, source, tmp_path):
    with zipfile.ZipFile(scan_zip) as zf:
        zf.extractall(tmp_path / "unzipped")
    with open_scan(scan_zip) as zipped, open_scan(tmp_path / "unzipped") as folder:
        assert content_digest(zipped) == content_digest(folder)
    changed = generate(SPEC)
    changed.arrays["data/responses/0.npy"] = changed.arrays["data/responses/0.npy"] + 1
    with open_scan(scan_zip) as zipped, open_scan(write_folder(changed, tmp_path / "changed")) as other:
        assert content_digest(zipped) != content_digest(other)


def test_missing_optional_meta_is_named(tmp_path):
    bare = generate(SPEC)
    for rel in [r for r in bare.arrays if r.startswith("meta/statistics/")] + ["meta/neurons/area.npy"]:
        del bare.arrays[rel]
    with open_scan(write_zip(bare, tmp_path / "bare.zip")) as scan:
        assert tables.missing_meta(scan) == ["meta/neurons/area.npy", "meta/statistics/"]
        assert tables.statistics_table(scan) is None
        assert tables.neuron_table(scan).column("area").null_count == SPEC.n_neurons
