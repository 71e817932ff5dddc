"""Dynamic (video) scans: every 2023 layout read, a bit-identical round trip (NaN padding
included), frames= windows, time-resolved normalisation, withheld data, and one database
holding static and dynamic scans."""

from __future__ import annotations

import numpy as np
import pytest

import scandb
from scandb.catalog.database import Database
from scandb.errors import BadScanError, UsageError
from scandb.ingest import ingest
from scandb.synthetic import ScanSpec, VideoSpec, generate, generate_dynamic, write_folder, write_zip

from .conftest import digest_database
from .scans import stack

VARIANTS = {
    "common": {},
    "no_trial_idx": {"trial_idx": False},
    "no_image_ids": {"image_id_file": None},
    "colorframeprojector_ids": {"image_id_file": "colorframeprojector_image_id"},
    "no_top_folder_with_junk": {"top_folder": False, "junk": True},
    "float64_data": {"video_dtype": "float64", "response_dtype": "float64", "behavior_dtype": "float64"},
    "no_none_tier": {"none_tier": False},
    "stored_uncompressed": {"compression": 0},
}
SELECT_ALL = "SELECT scan_key, trial_id FROM trials WHERE scan_key = ? ORDER BY trial_id"


def valid_length(responses: np.ndarray) -> int:
    """Written out: the first frame where every neuron is NaN, else the padded length."""
    for frame in range(responses.shape[1]):
        if all(np.isnan(value) for value in responses[:, frame]):
            return frame
    return responses.shape[1]


def bits(array: np.ndarray) -> np.ndarray:
    """The array's bytes in C order, whatever its strides (NaN payloads compared too)."""
    return np.ascontiguousarray(array).view(np.uint8)


def ingest_paths(db_path, *paths):
    with Database(db_path, read_only=False) as db:
        db.ensure_schema()
        return [ingest(db, path) for path in paths]


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """One database holding a static scan and a dynamic scan; tests only read it."""
    directory = tmp_path_factory.mktemp("mixed")
    video = VideoSpec(animal_id=29515, seed=3, junk=True)
    static = ScanSpec(animal_id=26872, seed=4)
    paths = [write_zip(generate_dynamic(video), directory / f"{video.name}.zip"),
             write_zip(generate(static), directory / f"{static.name}.zip")]
    db_path = directory / "lab.duckdb"
    ingest_paths(db_path, *paths)
    return db_path, video, generate_dynamic(video).arrays, static


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_dynamic_variant_round_trips_bit_for_bit_nan_padding_included(tmp_path, variant):
    spec = VideoSpec(**VARIANTS[variant])
    source = generate_dynamic(spec)
    path = write_zip(source, tmp_path / f"{spec.name}.zip")
    [result] = ingest_paths(tmp_path / "lab.duckdb", path)
    assert result.status == "ingested", result.summary()
    with scandb.connect(tmp_path / "lab.duckdb") as db:
        arrays = db.fetch(SELECT_ALL, params=[spec.key])
        assert set(arrays) == {"videos", "responses", "behavior", "pupil_center"}
        for key, fetched in arrays.items():
            expected = stack(source.arrays, key, range(spec.n_trials))
            assert fetched.dtype == expected.dtype if key != "responses" else fetched.dtype == np.float32
            assert np.array_equal(bits(fetched), bits(expected.astype(fetched.dtype))), key
        for rel, array in source.arrays.items():
            if rel.startswith("meta/"):
                assert db.file(spec.key, rel).tobytes() == array.tobytes()
        assert db.sql("SELECT kind FROM scans").fetchone()[0] == "dynamic"
        lengths = db.sql("SELECT n_frames FROM trials ORDER BY trial_id").fetchnumpy()["n_frames"]
        assert lengths.tolist() == [valid_length(source.arrays[f"data/responses/{i}.npy"])
                                    for i in range(spec.n_trials)]
        assert db.verify().ok


def test_an_unzipped_dynamic_folder_is_the_same_scan_as_its_zip(tmp_path):
    spec = VideoSpec()
    source = generate_dynamic(spec)
    zipped = write_zip(source, tmp_path / f"{spec.name}.zip")
    folder = write_folder(source, tmp_path / spec.name)
    first, second = ingest_paths(tmp_path / "lab.duckdb", zipped, folder)
    assert (first.status, second.status) == ("ingested", "unchanged")


def test_a_repeated_oracle_video_is_stored_once(mixed):
    db_path, video, _, _ = mixed
    with scandb.connect(db_path) as db:
        distinct, trials = db.sql("SELECT count(DISTINCT image_hash), count(*) FROM trials "
                                  "WHERE scan_key = ? AND tier = 'oracle'", [video.key]).fetchone()
    assert trials == 2 * 10 and distinct == video.n_oracle_videos


def test_static_and_dynamic_scans_share_one_database_and_verify_clean(mixed):
    db_path, video, _, static = mixed
    with scandb.connect(db_path) as db:
        kinds = dict(db.sql("SELECT scan_key, kind FROM scans").fetchall())
        assert kinds == {video.key: "dynamic", static.key: "static"}
        static_arrays = db.fetch(SELECT_ALL, params=[static.key])
        assert static_arrays["images"].shape == (static.n_trials, *static.image_shape)
        assert static_arrays["responses"].shape == (static.n_trials, static.n_neurons)
        report = db.verify()
    assert report.ok, report.text()


def test_a_selection_mixing_static_and_dynamic_trials_is_a_clear_error_unless_per_scan(mixed):
    db_path, video, _, static = mixed
    with scandb.connect(db_path) as db:
        with pytest.raises(UsageError, match="mixes static scans .* and dynamic scans .*per_scan=True"):
            db.fetch("SELECT scan_key, trial_id FROM trials")
        by_scan = db.fetch("SELECT scan_key, trial_id FROM trials", per_scan=True)
    assert by_scan[video.key]["videos"].shape[1:] == (36, 64, video.n_frames)
    assert by_scan[static.key]["images"].shape[1:] == static.image_shape


def test_a_frames_window_is_that_slice_of_every_array(mixed):
    db_path, video, source, _ = mixed
    with scandb.connect(db_path) as db:
        window = db.fetch(SELECT_ALL, params=[video.key], frames=(7, 19))
    for key, fetched in window.items():
        expected = stack(source, key, range(video.n_trials))[..., 7:19]
        assert fetched.shape == expected.shape
        assert np.array_equal(bits(fetched), bits(expected.astype(fetched.dtype))), key


@pytest.mark.parametrize("frames, message", [((0, 41), r"outside the trials' 40 padded frames"),
                                             ((5, 5), r"outside"), ((-1, 3), r"outside"),
                                             ("0:5", r"takes \(start, stop\)")])
def test_a_bad_window_is_a_usage_error(mixed, frames, message):
    db_path, video, _, _ = mixed
    with scandb.connect(db_path) as db, pytest.raises(UsageError, match=message):
        db.fetch(SELECT_ALL, params=[video.key], frames=frames)


def test_frames_on_a_static_scan_and_images_of_a_dynamic_one_are_usage_errors(mixed):
    db_path, video, _, static = mixed
    with scandb.connect(db_path) as db:
        with pytest.raises(UsageError, match="frames= applies to dynamic"):
            db.fetch(SELECT_ALL, params=[static.key], frames=(0, 5))
        with pytest.raises(UsageError, match="is dynamic: its stimulus key is 'videos'"):
            db.fetch(SELECT_ALL, "images", params=[video.key])


def test_zero_filled_test_responses_are_marked_withheld_and_train_trials_are_not(mixed):
    db_path, video, source, _ = mixed
    with scandb.connect(db_path) as db:
        flags = db.sql("SELECT tier, responses_withheld, behavior_withheld FROM trials WHERE scan_key = ? "
                       "ORDER BY trial_id", [video.key]).fetchall()
    test_tiers = {"live_test_main", "live_test_bonus", "final_test_main", "final_test_bonus"}
    assert {tier for tier, withheld, _ in flags if withheld} == test_tiers
    assert not any(behavior for _, _, behavior in flags)


def test_zero_filled_behavior_is_marked_in_every_tier(tmp_path):
    spec = VideoSpec(zero_behavior=True, zero_test_responses=False)
    ingest_paths(tmp_path / "lab.duckdb", write_zip(generate_dynamic(spec), tmp_path / "s.zip"))
    with scandb.connect(tmp_path / "lab.duckdb") as db:
        assert db.sql("SELECT bool_and(behavior_withheld), bool_or(responses_withheld) FROM trials").fetchone() \
            == (True, False)
        with pytest.raises(UsageError, match=r"withheld behavior .*WHERE NOT behavior_withheld"):
            db.fetch("SELECT scan_key, trial_id FROM trials", "behavior", normalize=True)


def test_normalize_refuses_withheld_responses_with_one_clear_line(mixed):
    db_path, video, _, _ = mixed
    with scandb.connect(db_path) as db:
        with pytest.raises(UsageError, match=r"withheld responses .*WHERE NOT responses_withheld\) or pass "
                                             r"normalize=False"):
            db.fetch("SELECT scan_key, trial_id FROM trials WHERE tier = 'live_test_main'", normalize=True)
        kept = db.fetch("SELECT scan_key, trial_id FROM trials WHERE scan_key = ? AND NOT responses_withheld",
                        params=[video.key], normalize=True)
    assert kept["responses"].shape[0] == video.n_trials - 4


def test_normalisation_follows_the_written_out_2023_rule(mixed):
    db_path, video, source, _ = mixed
    stat = {(k, s): source[f"meta/statistics/{k}/all/{s}.npy"].astype(np.float64)
            for k in ("videos", "responses", "behavior", "pupil_center") for s in ("mean", "std")}
    with scandb.connect(db_path) as db:
        query = "SELECT scan_key, trial_id FROM trials WHERE scan_key = ? AND tier = 'train' ORDER BY trial_id"
        ids = db.sql(query, [video.key]).fetchnumpy()["trial_id"]
        got = db.fetch(query, params=[video.key], normalize=True, frames=(3, 30))
    raw = {k: stack(source, k, range(video.n_trials))[ids].astype(np.float64)[..., 3:30]
           for k in ("videos", "responses", "behavior", "pupil_center")}
    std = stat["responses", "std"]
    threshold = 0.01 * std.mean()
    precision = np.where(std > threshold, 1 / np.where(std > threshold, std, 1), 1 / threshold)[:, 3:30]
    expected = {
        "responses": raw["responses"] * precision,
        "videos": (raw["videos"] - stat["videos", "mean"][..., 3:30]) / stat["videos", "std"][..., 3:30],
        "behavior": raw["behavior"] / stat["behavior", "std"][:, 3:30],
        "pupil_center": (raw["pupil_center"] - stat["pupil_center", "mean"][:, 3:30])
        / stat["pupil_center", "std"][:, 3:30],
    }
    for key, value in expected.items():
        assert got[key].dtype == np.float32
        np.testing.assert_allclose(got[key], value, rtol=2e-6, atol=1e-6, equal_nan=True, err_msg=key)


def test_a_dynamic_scan_with_mismatched_frames_is_refused_and_the_database_left_as_it_was(mixed, tmp_path):
    spec = VideoSpec(animal_id=30000)
    source = generate_dynamic(spec)
    source.arrays["data/behavior/0.npy"] = source.arrays["data/behavior/0.npy"][:, :30]
    bad = write_zip(source, tmp_path / f"{spec.name}.zip")
    db_path = tmp_path / "lab.duckdb"
    good = VideoSpec(animal_id=30001)
    ingest_paths(db_path, write_zip(generate_dynamic(good), tmp_path / "good.zip"))
    before = digest_database(db_path)
    with pytest.raises(BadScanError) as refused:
        ingest_paths(db_path, bad)
    assert "data/behavior/0.npy: shape (2, 30), expected (2, T) with the responses' T = 40" in str(refused.value)
    assert "\n" not in str(refused.value)
    assert digest_database(db_path) == before


def test_removing_the_dynamic_scan_leaves_the_static_one_whole(mixed, tmp_path):
    import shutil
    db_path, video, _, static = mixed
    copy = tmp_path / "copy"
    shutil.copytree(db_path.parent, copy)
    with scandb.connect(copy / "lab.duckdb", read_only=False) as db:
        db.remove(video.key)
        db.gc(older_than=0)
        assert [r[0] for r in db.sql("SELECT scan_key FROM scans").fetchall()] == [static.key]
        for table in ("frame_behavior", "area_frame_responses", "response_matrices", "trials"):
            assert db.sql(f"SELECT count(*) FROM {table} WHERE scan_key = ?", [video.key]).fetchone()[0] == 0
        report = db.verify()
    assert report.ok, report.text()
    assert len(list((copy / "lab.images" / "responses").glob("*.npy"))) == 1


def test_area_frame_sums_are_the_per_frame_sums_of_the_source_responses(mixed):
    db_path, video, source, _ = mixed
    area = source["meta/neurons/area.npy"]
    with scandb.connect(db_path) as db:
        rows = db.sql("SELECT trial_id, area, n_neurons, response_sum FROM area_frame_responses "
                      "WHERE scan_key = ? ORDER BY trial_id, area", [video.key]).fetchall()
    assert len(rows) == video.n_trials * len(set(area))
    for trial, name, n, sums in rows:
        responses = source[f"data/responses/{trial}.npy"].astype(np.float64)
        length = valid_length(responses)
        assert n == int((area == name).sum())
        np.testing.assert_allclose(sums, responses[area == name, :length].sum(axis=0), rtol=1e-9)


def test_the_readme_video_sql_answers(mixed):
    db_path, video, source, _ = mixed
    with scandb.connect(db_path) as db:
        per_frame = db.sql("""
            SELECT scan_key, area, frame, sum(s.response_sum[frame]) / sum(s.n_neurons) AS mean_response
            FROM trials t JOIN area_frame_responses s USING (scan_key, trial_id),
                 range(1, t.n_frames + 1) f(frame)
            WHERE t.tier = 'oracle' AND t.image_id = 0
            GROUP BY ALL ORDER BY ALL""").fetchall()
        lengths = db.sql("SELECT tier, min(n_frames), max(n_frames) FROM trials WHERE n_frames IS NOT NULL "
                         "GROUP BY tier ORDER BY tier").fetchall()
    ids = source["meta/trials/frame_image_id.npy"]
    tiers = source["meta/trials/tiers.npy"]
    trials = np.flatnonzero((tiers == "oracle") & (ids == 0))
    v1 = source["meta/neurons/area.npy"] == "V1"
    stacked = np.stack([source[f"data/responses/{i}.npy"][v1].astype(np.float64) for i in trials])
    length = valid_length(stacked[0])
    expected = stacked[:, :, :length].mean(axis=(0, 1))
    got = [mean for scan, area, frame, mean in per_frame if area == "V1"]
    np.testing.assert_allclose(got, expected, rtol=1e-9)
    assert dict((t, (lo, hi)) for t, lo, hi in lengths)["oracle"][1] <= video.n_frames


def zero_filled_static(tmp_path):
    """A static scan released as competition scans are: test responses zero, behavior zero."""
    spec = ScanSpec(animal_id=27204, seed=9)
    source = generate(spec)
    tiers = source.arrays["meta/trials/tiers.npy"]
    for i in range(spec.n_trials):
        source.arrays[f"data/behavior/{i}.npy"] = np.zeros_like(source.arrays[f"data/behavior/{i}.npy"])
        source.arrays[f"data/pupil_center/{i}.npy"] = np.zeros_like(source.arrays[f"data/pupil_center/{i}.npy"])
        if tiers[i] == "test":
            source.arrays[f"data/responses/{i}.npy"] = np.zeros_like(source.arrays[f"data/responses/{i}.npy"])
    return spec, tiers, write_zip(source, tmp_path / f"{spec.name}.zip")


def test_static_withheld_data_is_marked_at_ingest_and_by_the_migration_of_older_databases(tmp_path):
    from .test_migrations import downgrade, upgrade
    spec, tiers, path = zero_filled_static(tmp_path)
    db_path = tmp_path / "lab.duckdb"
    ingest_paths(db_path, path)
    query = "SELECT responses_withheld, behavior_withheld FROM trials ORDER BY trial_id"
    with scandb.connect(db_path) as db:
        at_ingest = db.sql(query).fetchall()
    assert at_ingest == [(tier == "test", True) for tier in tiers.tolist()]
    downgrade(db_path, "0005")
    upgrade(db_path)
    with scandb.connect(db_path) as db:
        assert db.sql(query).fetchall() == at_ingest
        report = db.verify()
        assert report.ok, report.text()
        with pytest.raises(UsageError, match="withheld responses"):
            db.fetch("SELECT scan_key, trial_id FROM trials WHERE tier = 'test'", "responses", normalize=True)
        assert "withheld    test: responses" in db.summary(spec.key).text()


def test_one_window_per_row_gives_each_row_its_own_frames_normalised_alike(mixed):
    db_path, video, source, _ = mixed
    query = "SELECT scan_key, trial_id FROM trials WHERE scan_key = ? AND tier = 'train' ORDER BY trial_id"
    with scandb.connect(db_path) as db:
        ids = db.sql(query, [video.key]).fetchnumpy()["trial_id"]
        starts = [(3 * row) % 25 for row in range(len(ids))]
        windows = [(start, start + 12) for start in starts]
        got = db.fetch(query, params=[video.key], frames=windows)
        normalised = db.fetch(query, params=[video.key], frames=windows, normalize=True)
        whole = db.fetch(query, params=[video.key], normalize=True)
        with pytest.raises(UsageError, match="one length"):
            db.fetch(query, params=[video.key], frames=[(0, 5)] + windows[1:])
    for key, fetched in got.items():
        expected = np.stack([source[f"data/{key}/{trial}.npy"][..., s:s + 12] for trial, s in zip(ids, starts)])
        expected = np.ascontiguousarray(expected.astype(fetched.dtype))
        assert np.array_equal(bits(fetched), bits(expected)), key
        cut = np.stack([whole[key][row][..., s:s + 12] for row, s in enumerate(starts)])
        assert np.array_equal(normalised[key], cut, equal_nan=True), key


def test_dynamic_responses_are_a_time_major_view_in_the_source_layout_that_torch_accepts(mixed):
    db_path, video, source, _ = mixed
    query = "SELECT scan_key, trial_id FROM trials WHERE scan_key = ? AND tier = 'train' ORDER BY trial_id"
    with scandb.connect(db_path) as db:
        ids = db.sql(query, [video.key]).fetchnumpy()["trial_id"]
        starts = [(5 * row) % 20 for row in range(len(ids))]
        got = db.fetch(query, "responses", params=[video.key], frames=[(s, s + 12) for s in starts])["responses"]
    expected = np.stack([source[f"data/responses/{trial}.npy"][:, s:s + 12] for trial, s in zip(ids, starts)])
    expected = expected.astype(np.float32)
    assert got.shape == expected.shape == (len(ids), video.n_neurons, 12)
    assert got.strides == (12 * video.n_neurons * 4, 4, video.n_neurons * 4)  # frames outermost: no transposing copy
    assert np.array_equal(bits(got), bits(expected))
    import torch
    batch = torch.utils.data.default_collate([got[row] for row in range(len(ids))])
    assert np.array_equal(bits(batch.numpy()), bits(expected))
    assert np.array_equal(bits((torch.from_numpy(got) * 1).numpy()), bits(expected))
