"""Ingest: every array of a scan lands and comes back identical; re-ingest, replace, rollback."""

from __future__ import annotations

import hashlib
import zipfile

import numpy as np
import pytest

import scandb
from scandb.catalog.database import Database
from scandb.errors import BadScanError
from scandb.ingest import ingest
from scandb.maintenance.gc import gc
from scandb.synthetic import generate, write_folder, write_zip

from .conftest import digest_database
from .scans import VARIANTS, make_scan, spec_for, write

DATA_KEYS = ("images", "responses", "behavior", "pupil_center")


def test_three_variants_land_in_one_database(lab_db, three_scans):
    with scandb.connect(lab_db) as db:
        scans = db.scans().set_index("scan_key")
        for spec, _ in three_scans:
            assert scans.loc[spec.key, "n_trials"] == spec.n_trials
            assert scans.loc[spec.key, "n_neurons"] == spec.n_neurons
            assert scans.loc[spec.key, "name"] == spec.name


def test_counts_per_tier_and_area_match_the_source(lab_db, sources):
    with scandb.connect(lab_db) as db:
        for key, arrays in sources.items():
            tiers, counts = np.unique(arrays["meta/trials/tiers.npy"], return_counts=True)
            got = dict(db.sql("SELECT tier, count(*) FROM trials WHERE scan_key = ? GROUP BY tier", [key]).fetchall())
            assert got == dict(zip(tiers.tolist(), counts.tolist()))
            areas, counts = np.unique(arrays["meta/neurons/area.npy"], return_counts=True)
            got = dict(db.sql("SELECT area, count(*) FROM neurons WHERE scan_key = ? GROUP BY area", [key]).fetchall())
            assert got == dict(zip(areas.tolist(), counts.tolist()))


@pytest.mark.parametrize("key", DATA_KEYS)
def test_data_comes_back_bit_identical(lab_db, sources, key):
    with scandb.connect(lab_db) as db:
        for scan, arrays in sources.items():
            n = len(arrays["meta/trials/tiers.npy"])
            sample = sorted({0, n - 1, *np.random.default_rng(0).choice(n, 8, replace=False).tolist()})
            got = db.fetch([(scan, t) for t in sample], key)[key]
            for row, trial in enumerate(sample):
                expected = arrays[f"data/{key}/{trial}.npy"]
                assert got[row].dtype == expected.dtype
                np.testing.assert_array_equal(got[row], expected.reshape(got[row].shape))
                assert got[row].tobytes() == expected.tobytes()


def test_every_meta_and_statistics_file_comes_back_identical(lab_db, sources):
    with scandb.connect(lab_db) as db:
        for scan, arrays in sources.items():
            meta = {p: a for p, a in arrays.items() if p.startswith("meta/")}
            assert meta
            for path, expected in meta.items():
                got = db.file(scan, path)
                assert got.dtype == expected.dtype and got.shape == expected.shape, path
                np.testing.assert_array_equal(got, expected)
                parts = path.split("/")
                if parts[1] == "statistics":
                    stat = db.statistic(scan, parts[2], parts[4][:-4], source=parts[3])
                    assert stat.dtype == expected.dtype and stat.tobytes() == expected.tobytes()


def test_meta_columns_are_typed_and_extras_are_queryable(lab_db, sources):
    with scandb.connect(lab_db) as db:
        for scan, arrays in sources.items():
            trials = db.trials(scan=scan).set_index("trial_id")
            ids = next(arrays[f"meta/trials/{n}.npy"] for n in ("frame_image_id", "colorframeprojector_image_id")
                       if f"meta/trials/{n}.npy" in arrays)
            np.testing.assert_array_equal(trials["image_id"].to_numpy(), ids)
            np.testing.assert_array_equal(trials["tier"].to_numpy(), arrays["meta/trials/tiers.npy"])
            trial_idx = arrays["meta/trials/trial_idx.npy"]
            column = "trial_hash" if trial_idx.dtype.kind == "U" else "trial_idx"
            np.testing.assert_array_equal(trials[column].to_numpy().astype(trial_idx.dtype), trial_idx)
            assert trials["timestamp"].notna().all()
            album = db.sql("SELECT extra->>'album' FROM trials WHERE scan_key = ? ORDER BY trial_id", [scan]).fetchall()
            assert [a for (a,) in album] == arrays["meta/trials/album.npy"].tolist()
            coords = db.sql("SELECT x, y, z FROM neurons WHERE scan_key = ? ORDER BY neuron_idx", [scan]).fetchnumpy()
            np.testing.assert_array_equal(np.column_stack([coords["x"], coords["y"], coords["z"]]),
                                          arrays["meta/neurons/cell_motor_coordinates.npy"])


def test_shared_test_images_are_stored_once(lab_db):
    with scandb.connect(lab_db) as db:
        shared = db.sql("""
            SELECT image_hash, count(DISTINCT scan_key) AS scans FROM trials WHERE tier = 'test'
            GROUP BY image_hash HAVING scans > 1""").fetchall()
        assert shared, "the uint8 scans share their test images"
        files = db.sql("SELECT count(*) FROM images").fetchone()[0]
        distinct = db.sql("SELECT count(DISTINCT image_hash) FROM trials").fetchone()[0]
        assert files == distinct
    store = lab_db.with_name("lab.images")
    assert len(list(store.glob("??/*.npy"))) == files


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_variant_ingests_and_round_trips(tmp_path, variant):
    spec = spec_for(variant, n_trials=24, n_neurons=9)
    path = write(spec, tmp_path, folder=(variant == "junk"))
    source = generate(spec).arrays
    with Database(tmp_path / "v.duckdb", read_only=False) as db:
        db.ensure_schema()
        result = ingest(db, path)
        assert result.status == "ingested" and result.scan_key == spec.key
        if spec.response_dtype == "float64":
            assert "rounded to float32" in result.summary()
    with scandb.connect(tmp_path / "v.duckdb") as db:
        got = db.fetch([(spec.key, t) for t in range(spec.n_trials)])
        for key in DATA_KEYS:
            expected = np.stack([source[f"data/{key}/{t}.npy"] for t in range(spec.n_trials)])
            if key == "responses":  # stored as float32, whatever the source dtype (documented)
                expected = expected.astype(np.float32)
            np.testing.assert_array_equal(got[key], expected.reshape(got[key].shape))
            assert got[key].dtype == expected.dtype
        assert db.sql("SELECT count(*) FROM scan_files").fetchone()[0] == sum(
            p.startswith("meta/") for p in source) + spec.config_json


def test_reingesting_the_same_file_is_a_noop(tmp_path, open_db):
    path = make_scan(tmp_path)
    db = open_db()
    assert ingest(db, path).status == "ingested"
    before = db.conn.execute("SELECT ingested_at FROM scans").fetchall()
    result = ingest(db, path)
    assert result.status == "unchanged"
    assert "already ingested" in result.summary()
    assert db.conn.execute("SELECT ingested_at FROM scans").fetchall() == before


def test_a_different_file_for_the_same_scan_is_refused_without_replace(tmp_path, open_db):
    first = make_scan(tmp_path / "a" if (tmp_path / "a").mkdir() is None else tmp_path)
    (tmp_path / "b").mkdir()
    second = make_scan(tmp_path / "b", seed=5, n_trials=30)
    db = open_db()
    ingest(db, first)
    with pytest.raises(BadScanError, match="--replace"):
        ingest(db, second)
    assert db.conn.execute("SELECT n_trials FROM scans").fetchall() == [(60,)]


def test_replace_swaps_a_scan_and_gc_drops_its_unused_images(tmp_path, open_db):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    first = make_scan(tmp_path / "a")
    second = make_scan(tmp_path / "b", seed=5, n_trials=30)
    db = open_db()
    ingest(db, first)
    result = ingest(db, second, replace=True)
    assert result.status == "replaced"
    assert db.conn.execute("SELECT n_trials FROM scans").fetchall() == [(30,)]
    for table in ("trials", "responses", "behavior"):
        assert db.conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 30
    referenced = {r[0] for r in db.conn.execute("SELECT DISTINCT image_hash FROM trials").fetchall()}
    stored = {p.stem for p in db.image_dir.glob("??/*.npy")}
    assert stored > referenced  # the replaced scan's images stay for readers that started before
    gc(db, 0)
    stored = {p.stem for p in db.image_dir.glob("??/*.npy")}
    assert stored == referenced
    assert {r[0] for r in db.conn.execute("SELECT image_hash FROM images").fetchall()} == referenced


def test_a_bad_trial_late_in_the_scan_leaves_no_trace(tmp_path, open_db):
    db = open_db()
    ingest(db, make_scan(tmp_path, animal_id=1111))
    db.close()
    before = digest_database(db.path)

    scan = generate(spec_for(animal_id=2222, n_trials=600))
    scan.arrays["data/responses/590.npy"] = np.zeros(3, np.float32)
    bad = write_zip(scan, tmp_path / "bad.zip")
    db = open_db()
    with pytest.raises(BadScanError, match=r"data/responses/590\.npy"):
        ingest(db, bad)
    db.close()
    assert digest_database(db.path) == before


def test_the_unzipped_folder_of_an_ingested_zip_is_the_same_scan(tmp_path, open_db):
    zipped = make_scan(tmp_path, junk=True)
    with zipfile.ZipFile(zipped) as zf:
        zf.extractall(tmp_path / "unzipped")
    db = open_db()
    ingest(db, zipped)
    db.close()
    before = digest_database(db.path)
    db = open_db()
    result = ingest(db, tmp_path / "unzipped")
    assert result.status == "unchanged"
    assert "already ingested with the same content" in result.summary()
    db.close()
    assert digest_database(db.path) == before


def test_a_folder_with_one_value_changed_is_a_different_scan(tmp_path, open_db):
    db = open_db()
    ingest(db, make_scan(tmp_path))
    changed = generate(spec_for())
    changed.arrays["data/behavior/7.npy"] = changed.arrays["data/behavior/7.npy"] + 1
    with pytest.raises(BadScanError, match=r"different content \(.*data/ members differ.*\); pass --replace"):
        ingest(db, write_folder(changed, tmp_path / "changed"))
    assert ingest(db, tmp_path / "changed", replace=True).status == "replaced"


def test_the_content_digest_recorded_is_that_of_the_source(tmp_path, open_db):
    path = make_scan(tmp_path)
    db = open_db()
    ingest(db, path)
    with zipfile.ZipFile(path) as zf:
        members = {name.split("/", 1)[1]: hashlib.sha256(zf.read(name)).hexdigest()
                   for name in zf.namelist() if not name.endswith("/")}
    expected = hashlib.sha256("".join(f"{n}\0{members[n]}\n" for n in sorted(members)).encode()).hexdigest()
    assert db.conn.execute("SELECT content_sha256 FROM scans").fetchall() == [(expected,)]


def test_missing_optional_meta_is_ingested_with_a_one_line_note(tmp_path, open_db):
    bare = generate(spec_for(animal_id=4242))
    for rel in [r for r in bare.arrays if r.startswith("meta/statistics/")] + ["meta/neurons/area.npy",
                                                                               "meta/neurons/layer.npy"]:
        del bare.arrays[rel]
    db = open_db()
    result = ingest(db, write_zip(bare, tmp_path / "bare.zip"))
    assert result.status == "ingested"
    line = result.summary()
    assert "\n" not in line
    assert ("ingested without the optional meta/neurons/area.npy, meta/neurons/layer.npy, meta/statistics/"
            in line)
    assert db.conn.execute("SELECT count(*) FROM neurons WHERE area IS NULL AND layer IS NULL").fetchone()[0] == 50
    assert db.conn.execute("SELECT count(*) FROM statistics").fetchone()[0] == 0
    assert "optional" not in ingest(db, make_scan(tmp_path)).summary()


def test_reader_processes_ingest_the_same_rows_and_files(tmp_path):
    path = make_scan(tmp_path, n_trials=300, n_neurons=40)
    contents = []
    for workers in (0, 2):
        db_path = tmp_path / f"w{workers}.duckdb"
        with Database(db_path, read_only=False) as db:
            db.ensure_schema()
            assert ingest(db, path, workers=workers).status == "ingested"
            rows = {table: db.conn.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()
                    for table in ("trials", "responses", "area_responses", "behavior", "neurons")}
            rows["images"] = db.conn.execute("SELECT * FROM images ORDER BY ALL").fetchall()  # keys too
            rows["content"] = db.conn.execute("SELECT content_sha256 FROM scans").fetchall()
            matrix = db.conn.execute("SELECT path FROM response_matrices").fetchone()[0]
            files = sorted(p.relative_to(db.image_dir).as_posix() for p in db.image_dir.rglob("*.npy"))
            contents.append((rows, files, (db.image_dir / matrix).read_bytes()))
    assert contents[0] == contents[1]


def test_a_bad_trial_read_by_a_reader_process_leaves_no_trace(tmp_path, open_db):
    db = open_db()
    ingest(db, make_scan(tmp_path, animal_id=1111))
    db.close()
    before = digest_database(db.path)
    scan = generate(spec_for(animal_id=2222, n_trials=2000))
    scan.arrays["data/images/1990.npy"] = np.zeros((1, 3, 3), np.uint8)
    db = open_db()
    with pytest.raises(BadScanError, match=r"data/images/1990\.npy: shape \(1, 3, 3\) uint8"):
        ingest(db, write_zip(scan, tmp_path / "bad.zip"), workers=2)
    db.close()
    assert digest_database(db.path) == before
