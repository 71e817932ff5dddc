"""Time-major copies of videos: each dynamic video once more as (T, H, W) in the store, so a
window of frames is one contiguous read. Fetches give the source values either way, the
copies follow the videos through remove, verify and garbage collection."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import scandb
from scandb.catalog.database import Database
from scandb.errors import DatabaseError
from scandb.ingest import ingest
from scandb.synthetic import VideoSpec, generate_dynamic, write_zip

SELECT_ALL = "SELECT scan_key, trial_id FROM trials WHERE scan_key = ? ORDER BY trial_id"


def bits(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array).view(np.uint8)


def copies_in(db_path) -> list:
    return sorted((db_path.parent / "lab.images" / "frames").glob("??/*.npy"))


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    directory = tmp_path_factory.mktemp("copies")
    spec = VideoSpec(animal_id=29516, seed=5)
    source = generate_dynamic(spec)
    db_path = directory / "lab.duckdb"
    with Database(db_path, read_only=False) as db:
        db.ensure_schema()
        ingest(db, write_zip(source, directory / f"{spec.name}.zip"))
    return db_path, spec, source.arrays


@pytest.fixture
def copied(video, tmp_path):
    """A copy of the module's database a test may change."""
    db_path, spec, source = video
    shutil.copytree(db_path.parent, tmp_path / "db", ignore=shutil.ignore_patterns("*.zip"))
    return tmp_path / "db" / "lab.duckdb", spec, source


def test_each_distinct_video_has_one_copy_holding_its_values_time_first(video):
    db_path, spec, source = video
    videos = {source[f"data/videos/{i}.npy"].tobytes(): source[f"data/videos/{i}.npy"]
              for i in range(spec.n_trials)}
    copies = [np.load(path) for path in copies_in(db_path)]
    assert len(copies) == len(videos) < spec.n_trials  # oracle repeats share one copy
    expected = sorted(bits(np.moveaxis(v, -1, 0)).tobytes() for v in videos.values())
    assert sorted(bits(c).tobytes() for c in copies) == expected
    assert {c.shape for c in copies} == {(spec.n_frames, *spec.video_shape)}


def test_video_windows_are_the_source_values_as_a_time_major_view(video):
    db_path, spec, source = video
    starts = [(7 * row) % (spec.n_frames - 10) for row in range(spec.n_trials)]
    with scandb.connect(db_path) as db:
        got = db.fetch(SELECT_ALL, "videos", params=[spec.key],
                       frames=[(s, s + 10) for s in starts])["videos"]
        sliced = db.fetch(SELECT_ALL, "videos", params=[spec.key], frames=(3, 13))["videos"]
    expected = np.stack([source[f"data/videos/{i}.npy"][..., s:s + 10] for i, s in enumerate(starts)])
    assert got.shape == expected.shape == (spec.n_trials, *spec.video_shape, 10)
    assert np.array_equal(bits(got), bits(expected))
    h, w = spec.video_shape
    assert got.strides == (10 * h * w * 4, w * 4, 4, h * w * 4)  # frames outermost: each row one read
    assert np.array_equal(bits(sliced), bits(np.stack([source[f"data/videos/{i}.npy"][..., 3:13]
                                                       for i in range(spec.n_trials)])))


def test_without_copies_videos_come_from_their_source_files_bit_for_bit(copied):
    db_path, spec, source = copied
    with scandb.connect(db_path) as db:
        with_copies = db.fetch(SELECT_ALL, params=[spec.key], frames=(5, 25))
    shutil.rmtree(db_path.parent / "lab.images" / "frames")  # a database ingested before copies existed
    with scandb.connect(db_path) as db:
        without = db.fetch(SELECT_ALL, params=[spec.key], frames=(5, 25))
        assert db.verify().ok
    for key in with_copies:
        assert np.array_equal(bits(without[key]), bits(with_copies[key])), key


def test_verify_names_a_copy_that_no_longer_holds_its_video(copied):
    db_path, spec, _ = copied
    damaged = copies_in(db_path)[0]
    data = bytearray(damaged.read_bytes())
    data[-1] ^= 0xFF
    damaged.write_bytes(bytes(data))
    with scandb.connect(db_path) as db:
        report = db.verify()
    assert not report.ok
    assert f"video copy lab.images/frames/{damaged.parent.name}/{damaged.name}: not the values of" in report.text()


def test_a_truncated_copy_is_one_line_naming_it(copied):
    db_path, spec, _ = copied
    for path in copies_in(db_path):
        path.write_bytes(path.read_bytes()[:200])
    with scandb.connect(db_path) as db, pytest.raises(DatabaseError) as failed:
        db.fetch(SELECT_ALL, "videos", params=[spec.key], frames=(30, 40))
    assert "time-major video copy" in str(failed.value) and "scandb verify" in str(failed.value)
    assert "\n" not in str(failed.value)


def test_a_removed_scans_copies_stay_until_gc_and_a_stray_copy_is_an_orphan(copied):
    db_path, spec, _ = copied
    stray = db_path.parent / "lab.images" / "frames" / "ab" / ("ab" + "0" * 62 + ".npy")
    stray.parent.mkdir(exist_ok=True)
    stray.write_bytes(b"not a copy")
    with scandb.connect(db_path) as db:
        report = db.verify()
    assert f"image file lab.images/frames/ab/{stray.name}: orphan" in report.text()
    copies = copies_in(db_path)
    with scandb.connect(db_path, read_only=False) as db:
        db.remove(spec.key)
        assert stray not in copies_in(db_path)  # the next write collects orphans
        assert set(copies_in(db_path)) == set(copies) - {stray}  # kept for readers that started before
        db.gc(older_than=0)
    assert copies_in(db_path) == []


def test_reader_processes_write_the_same_matrix_copies_and_rows_as_one_process(tmp_path, monkeypatch):
    from scandb.ingest import prefetch
    monkeypatch.setattr(prefetch, "CHUNK_TRIALS", 5)  # several chunks, spread over both readers
    spec = VideoSpec(animal_id=29518, seed=8)
    path = write_zip(generate_dynamic(spec), tmp_path / f"{spec.name}.zip")
    contents = []
    for workers in (0, 2):
        db_path = tmp_path / f"w{workers}" / "lab.duckdb"
        db_path.parent.mkdir()
        with Database(db_path, read_only=False) as db:
            db.ensure_schema()
            assert ingest(db, path, workers=workers).status == "ingested"
            rows = {table: db.conn.execute(f"SELECT * EXCLUDE (scan_key) FROM {table} ORDER BY ALL").fetchall()
                    for table in ("trials", "frame_behavior", "area_frame_responses")}
            matrix = db.conn.execute("SELECT path FROM response_matrices").fetchone()[0]
        files = {p.relative_to(db_path.parent).as_posix(): p.read_bytes()
                 for p in (db_path.parent / "lab.images").rglob("*") if p.is_file()}
        contents.append((rows, files, matrix))
    assert repr(contents[0]) == repr(contents[1])  # repr: NaN padding compares equal
    matrix = np.load(tmp_path / "w2" / "lab.images" / contents[1][2])
    source = generate_dynamic(spec).arrays
    expected = np.stack([source[f"data/responses/{i}.npy"].T for i in range(spec.n_trials)]).astype(np.float32)
    assert np.array_equal(bits(matrix), bits(expected))


def test_the_matrix_digest_made_from_rows_at_ingest_is_what_verify_reads_and_catches_a_change(copied):
    import hashlib
    db_path, spec, _ = copied
    with scandb.connect(db_path) as db:
        method, recorded = db.sql("SELECT method, digest FROM scan_digests WHERE part = 'response matrix'").fetchone()
        matrix = db_path.with_name("lab.images") / db.sql("SELECT path FROM response_matrices").fetchone()[0]
        assert db.verify().ok
    raw = matrix.read_bytes()
    header = len(raw) - spec.n_trials * spec.n_frames * spec.n_neurons * 4
    rows = [raw[header + i * (len(raw) - header) // spec.n_trials:header + (i + 1) * (len(raw) - header) // spec.n_trials]
            for i in range(spec.n_trials)]
    expected = hashlib.sha256(raw[:header])
    for row in rows:
        expected.update(hashlib.sha256(row).digest())
    expected.update(hashlib.sha256(b"").digest())
    assert (method, recorded) == ("sha256 of row sha256s", expected.hexdigest())
    changed = bytearray(raw)
    changed[header + 5] ^= 1
    matrix.write_bytes(bytes(changed))
    with scandb.connect(db_path) as db:
        report = db.verify()
    assert f"scan {spec.key}: response matrix file changed since ingest" in report.text()
