"""Dynamic (video) scans out of the database: an export that neuralpredictors'
MovieFileTreeDataset reads as the source arrays, and every report figure, including the
mean response over frames of the oracle videos."""

from __future__ import annotations

import io

import numpy as np
import pytest

import scandb
from scandb.catalog.database import Database
from scandb.ingest import ingest
from scandb.report import numbers
from scandb.synthetic import VideoSpec, generate_dynamic, write_zip

from .reference_loaders import neuralpredictors  # noqa: F401 (a fixture)

SPEC = VideoSpec(animal_id=29701, seed=21, n_trials=40, n_neurons=12)
KEYS = ("videos", "responses", "behavior", "pupil_center")
NEURONS = [7, 0, 3]


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    directory = tmp_path_factory.mktemp("video-export")
    source = generate_dynamic(SPEC)
    with Database(directory / "lab.duckdb", read_only=False) as db:
        db.ensure_schema()
        ingest(db, write_zip(source, directory / f"{SPEC.name}.zip"))
    return directory / "lab.duckdb", source.arrays


def test_moviefiletreedataset_reads_exactly_the_source_arrays(video, tmp_path, neuralpredictors):
    pytest.importorskip("torch")
    from neuralpredictors.data.datasets import MovieFileTreeDataset

    db_path, arrays = video
    tiers = arrays["meta/trials/tiers.npy"]
    trials = [int(t) for t in np.flatnonzero(tiers == "oracle")[::-1]] + [int(np.flatnonzero(tiers == "train")[0])]
    with scandb.connect(db_path) as db:
        (folder,) = db.export([(SPEC.key, t) for t in trials], tmp_path, neurons=NEURONS).paths
    assert folder.name == SPEC.name
    dataset = MovieFileTreeDataset(str(folder), *KEYS)
    assert len(dataset) == len(trials)
    for i, trial in enumerate(trials):
        item = dataset[i]
        for key in KEYS:
            expected = arrays[f"data/{key}/{trial}.npy"]
            if key == "responses":
                expected = expected[NEURONS]
            got = np.asarray(getattr(item, key))
            assert got.dtype == expected.dtype and got.shape == expected.shape, key
            assert got.tobytes() == expected.tobytes(), (key, trial)
    assert list(np.load(folder / "meta/trials/source_trial_id.npy")) == trials
    std = np.load(folder / "meta/statistics/responses/all/std.npy")
    assert std.tobytes() == arrays["meta/statistics/responses/all/std.npy"][NEURONS].tobytes()


def test_parquet_holds_every_statistic_and_meta_file_of_a_dynamic_scan_itself(video, tmp_path):
    """A dynamic scan keeps its time-resolved statistics as store files: the Parquet tables
    hold their values and bytes all the same, and no path into the store."""
    import pyarrow.dataset as ds

    db_path, arrays = video
    with scandb.connect(db_path) as db:
        db.export([(SPEC.key, 0), (SPEC.key, 3)], tmp_path, format="parquet")
    folder = tmp_path / "parquet"
    statistics = ds.dataset(folder / "statistics", partitioning="hive").to_table().to_pylist()
    files = ds.dataset(folder / "scan_files", partitioning="hive").to_table()
    assert "stored_as" not in files.column_names
    content = dict(zip(files["path"].to_pylist(), files["content"].to_pylist()))
    expected = {path: value for path, value in arrays.items() if path.startswith("meta/statistics/")}
    assert len(statistics) == len(expected) and len(expected) > 4
    for row in statistics:
        path = f"meta/statistics/{row['variable']}/{row['source']}/{row['stat']}.npy"
        source = expected[path]
        assert row["data"] is not None, path
        np.testing.assert_array_equal(np.asarray(row["data"], np.float64).astype(source.dtype).reshape(source.shape),
                                      source)
        assert np.load(io.BytesIO(content[path]), allow_pickle=False).tobytes() == source.tobytes(), path
    assert any(source.ndim == 2 for source in expected.values())  # some are time-resolved (neurons x frames)


def test_every_figure_renders_with_the_frames_figure(video, tmp_path):
    db_path, _ = video
    with scandb.connect(db_path) as db:
        result = db.report(SPEC.key, tmp_path)
    assert list(result.figures)[-1] == "mean_response_over_frames"
    assert len(result.figures) == 7
    for path in result.figures.values():
        assert path.read_bytes().startswith(b"\x89PNG") and path.stat().st_size > 5_000


def test_numbers_of_dynamic_figures_match_the_source(video):
    db_path, arrays = video
    tiers, areas = arrays["meta/trials/tiers.npy"], arrays["meta/neurons/area.npy"]
    responses = [arrays[f"data/responses/{i}.npy"].astype(np.float64) for i in range(SPEC.n_trials)]
    with scandb.connect(db_path) as db:
        means = numbers.mean_response_by_tier(db, SPEC.key)
        behavior = numbers.behavior_over_order(db, SPEC.key)
        oracle = db.oracle(SPEC.key)["oracle"].to_numpy()
    for area in np.unique(areas):
        values = np.concatenate([r[areas == area].ravel() for r, t in zip(responses, tiers) if t == "train"])
        assert means[(area, "train")] == pytest.approx(np.nanmean(values), rel=1e-5)
    first = int(np.argmin(arrays["meta/trials/trial_idx.npy"]))
    assert behavior.by == "trial_idx"
    assert behavior.values["running_speed"][0] == pytest.approx(np.nanmean(arrays[f"data/behavior/{first}.npy"][1]))
    rows = np.flatnonzero(tiers == "oracle")
    ids = arrays["meta/trials/frame_image_id.npy"][rows]
    pairs_a, pairs_b = [], []
    for video_id in np.unique(ids):
        group = rows[ids == video_id]
        for r in group:
            others = np.mean([responses[o] for o in group if o != r], axis=0)
            pairs_a.append(responses[r].T)
            pairs_b.append(others.T)
    a, b = np.concatenate(pairs_a), np.concatenate(pairs_b)
    keep = ~np.isnan(a[:, 0])
    expected = [np.corrcoef(a[keep, k], b[keep, k])[0, 1] for k in range(SPEC.n_neurons)]
    np.testing.assert_allclose(oracle, expected, rtol=1e-5, atol=1e-6)


def test_withheld_tiers_are_named_and_left_out_of_the_response_numbers(video):
    """Zero-filled test responses are not data: the report names their tiers instead of
    drawing them as silent neurons or counting their zeros."""
    db_path, arrays = video
    tiers, areas = arrays["meta/trials/tiers.npy"], arrays["meta/neurons/area.npy"]
    responses = [arrays[f"data/responses/{i}.npy"] for i in range(SPEC.n_trials)]
    zero_filled = {t for t in np.unique(tiers)
                   if all(np.nan_to_num(r).max() == 0 == np.nan_to_num(r).min() for r, tt in zip(responses, tiers) if tt == t)}
    assert zero_filled  # the generated scan ships withheld test tiers, as competition releases do
    with scandb.connect(db_path) as db:
        withheld = numbers.withheld_tiers(db, SPEC.key)
        means = numbers.mean_response_by_tier(db, SPEC.key)
        distribution = numbers.response_distribution(db, SPEC.key, areas)
    assert withheld == sorted(zero_filled)
    assert {tier for _, tier in means} == set(np.unique(tiers)) - zero_filled
    released = [r for r, t in zip(responses, tiers) if t not in zero_filled]
    assert distribution.n_trials == len(released)
    for area in np.unique(areas):
        values = np.concatenate([r[areas == area].ravel() for r in released])
        values = values[~np.isnan(values)]
        assert distribution.zero_fraction[area] == pytest.approx((values == 0).mean())
