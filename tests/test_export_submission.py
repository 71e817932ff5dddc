"""export format "submission": a model's stored predictions in the Sensorium 2023 submission
layout (ecker-lab/sensorium_2023, sensorium/utility/submission.py), read back with pyarrow and
compared with the arrays given to add_predictions here and with the scans' source files."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import scandb
from scandb.catalog.database import Database
from scandb.errors import UsageError
from scandb.ingest import ingest
from scandb.synthetic import ScanSpec, VideoSpec, generate, generate_dynamic, write_zip

from .hostile import run_cli

STATIC = ScanSpec(animal_id=53001, seed=71, n_trials=30, n_neurons=9, n_test_images=3, responsive=True,
                  image_shape=(1, 18, 32))
VIDEO = VideoSpec(animal_id=53002, seed=72, n_trials=12, n_neurons=6, n_frames=90, min_length=60,
                  video_shape=(18, 32))
COLUMNS = ["mouse", "trial_indices", "prediction", "neuron_ids"]
SKIP = 50
"""Frames the 2023 scorer (and so its submission) leaves out at the start of each trial."""


def source(spec):
    arrays = (generate_dynamic(spec) if isinstance(spec, VideoSpec) else generate(spec)).arrays
    return {"tiers": arrays["meta/trials/tiers.npy"].astype(str),
            "unit_ids": arrays["meta/neurons/unit_ids.npy"].astype(np.int64),
            "lengths": np.array([int((~np.isnan(arrays[f"data/responses/{i}.npy"]).all(axis=0)).sum())
                                 if isinstance(spec, VideoSpec) else 0 for i in range(spec.n_trials)])}


def given_predictions():
    rng = np.random.default_rng(11)
    static = rng.normal(size=(STATIC.n_trials, STATIC.n_neurons)).astype(np.float32)
    video = rng.normal(size=(VIDEO.n_trials, VIDEO.n_neurons, VIDEO.n_frames)).astype(np.float32)
    for trial, length in enumerate(source(VIDEO)["lengths"]):
        video[trial, :, length:] = np.nan  # after the trial's end
    return static, video


def every(spec) -> str:
    return f"SELECT scan_key, trial_id FROM trials WHERE scan_key = '{spec.key}' ORDER BY trial_id"


def fill(db, video_only: bool = False) -> None:
    static, video = given_predictions()
    db.add_predictions("video-cnn", every(VIDEO), video)
    if video_only:
        return
    db.add_predictions("cnn", every(STATIC), static)
    db.add_predictions("both", f"{every(STATIC)[:-len(' ORDER BY trial_id')]} OR scan_key = '{VIDEO.key}' "
                               "ORDER BY scan_key, trial_id", {STATIC.key: static, VIDEO.key: video})
    db.add_predictions("train-only", f"SELECT scan_key, trial_id FROM trials WHERE scan_key = '{STATIC.key}' "
                                     "AND tier = 'train' ORDER BY trial_id", static[source(STATIC)["tiers"] == "train"])


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    directory = tmp_path_factory.mktemp("submission")
    path = directory / "lab.duckdb"
    with Database(path, read_only=False) as db:
        db.ensure_schema()
        ingest(db, write_zip(generate(STATIC), directory / f"{STATIC.name}.zip"))
        ingest(db, write_zip(generate_dynamic(VIDEO), directory / f"{VIDEO.name}.zip"))
    with scandb.connect(path, read_only=False) as db:
        fill(db)
    return path


def read(path) -> pa.Table:
    table = pq.read_table(path)
    assert table.column_names == COLUMNS
    assert table.schema.field("mouse").type == pa.string()
    assert table.schema.field("neuron_ids").type == pa.list_(pa.uint32())
    return table


def test_static_predictions_round_trip_one_file_per_tier_in_the_selections_order(lab, tmp_path):
    static, _ = given_predictions()
    files = source(STATIC)
    with scandb.connect(lab) as db:
        result = db.export(every(STATIC).replace("ORDER BY trial_id", "ORDER BY trial_id DESC"), tmp_path / "out",
                           format="submission", model="cnn")
    tiers = list(dict.fromkeys(files["tiers"][::-1].tolist()))
    assert result.paths == [tmp_path / "out" / f"predictions_{tier}.parquet" for tier in tiers]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in result.paths)
    assert result.n_trials == STATIC.n_trials and result.n_scans == 1
    for tier, path in zip(tiers, result.paths):
        table = read(path)
        assert table.schema.field("prediction").type == pa.list_(pa.float32())
        expected_ids = [t for t in range(STATIC.n_trials - 1, -1, -1) if files["tiers"][t] == tier]
        assert table["trial_indices"].to_pylist() == expected_ids
        assert table["mouse"].to_pylist() == [STATIC.name] * len(expected_ids)
        for row, trial in enumerate(expected_ids):
            np.testing.assert_array_equal(np.array(table["prediction"][row].as_py(), np.float32), static[trial])
            assert table["neuron_ids"][row].as_py() == files["unit_ids"].tolist()


def test_video_predictions_hold_each_trials_frames_from_the_50th_to_its_end(lab, tmp_path):
    _, video = given_predictions()
    files = source(VIDEO)
    assert files["lengths"].min() > SKIP
    with scandb.connect(lab) as db:
        result = db.export(every(VIDEO), tmp_path / "out", format="submission", model="video-cnn")
    seen = []
    for path in result.paths:
        table = read(path)
        assert table.schema.field("prediction").type == pa.list_(pa.list_(pa.float32()))
        assert set(table["mouse"].to_pylist()) == {VIDEO.name}
        tier = path.name.removeprefix("predictions_").removesuffix(".parquet")
        trials = table["trial_indices"].to_pylist()
        assert trials == [t for t in range(VIDEO.n_trials) if files["tiers"][t] == tier]
        for row, trial in enumerate(trials):
            prediction = np.array(table["prediction"][row].as_py(), dtype=np.float32)  # (neurons, frames)
            np.testing.assert_array_equal(prediction, video[trial, :, SKIP:files["lengths"][trial]])
            assert table["neuron_ids"][row].as_py() == files["unit_ids"].tolist()
        seen += trials
    assert sorted(seen) == list(range(VIDEO.n_trials))  # withheld tiers too: a submission predicts them


def test_chosen_neurons_in_their_order_with_their_unit_ids(lab, tmp_path):
    _, video = given_predictions()
    files = source(VIDEO)
    oracle = [t for t in range(VIDEO.n_trials) if files["tiers"][t] == "oracle"]
    with scandb.connect(lab) as db:
        result = db.export(f"SELECT scan_key, trial_id FROM trials WHERE scan_key = '{VIDEO.key}' AND tier = 'oracle'",
                           tmp_path / "out", [4, 0, 2], format="submission", model="video-cnn")
    table, = (read(p) for p in result.paths)
    assert sorted(table["trial_indices"].to_pylist()) == oracle
    for row, trial in enumerate(table["trial_indices"].to_pylist()):
        assert table["neuron_ids"][row].as_py() == files["unit_ids"][[4, 0, 2]].tolist()
        np.testing.assert_array_equal(np.array(table["prediction"][row].as_py(), np.float32),
                                      video[trial, [4, 0, 2], SKIP:files["lengths"][trial]])


def test_a_selected_trial_without_a_prediction_is_refused_and_nothing_is_written(lab, tmp_path):
    files = source(STATIC)
    first_unpredicted = min(t for t in range(STATIC.n_trials) if files["tiers"][t] != "train")
    with scandb.connect(lab) as db:
        with pytest.raises(UsageError, match=rf"no prediction of trial {first_unpredicted} of scan {STATIC.key}"):
            db.export(every(STATIC), tmp_path / "out", format="submission", model="train-only")
        with pytest.raises(UsageError, match="no model 'nobody'"):
            db.export(every(STATIC), tmp_path / "out", format="submission", model="nobody")
        with pytest.raises(UsageError, match="name the model"):
            db.export(every(STATIC), tmp_path / "out", format="submission")
        with pytest.raises(UsageError, match="applies to format 'submission' only"):
            db.export(every(STATIC), tmp_path / "out", format="npz", model="cnn")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_a_tier_with_static_and_video_trials_is_refused(lab, tmp_path):
    with scandb.connect(lab) as db:
        with pytest.raises(UsageError, match="tier 'train' holds static and video trials"):
            db.export("SELECT scan_key, trial_id FROM trials ORDER BY ALL", tmp_path / "out", format="submission",
                      model="both")
        result = db.export("SELECT scan_key, trial_id FROM trials WHERE tier IN ('test', 'oracle') ORDER BY ALL",
                           tmp_path / "out", format="submission", model="both")
    # files in the order the selection (static scan first) meets the tiers, one scan in each here
    assert [p.name for p in result.paths] == ["predictions_test.parquet", "predictions_oracle.parquet"]
    assert [set(read(p)["mouse"].to_pylist()) for p in result.paths] == [{STATIC.name}, {VIDEO.name}]


def test_an_existing_file_is_refused_before_any_is_written(lab, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "predictions_train.parquet").write_bytes(b"mine")
    with scandb.connect(lab) as db:
        with pytest.raises(UsageError, match="predictions_train.parquet: already exists"):
            db.export(every(STATIC), out, format="submission", model="cnn")
    assert sorted(p.name for p in out.iterdir()) == ["predictions_train.parquet"]
    assert (out / "predictions_train.parquet").read_bytes() == b"mine"


def test_the_cli_writes_the_same_files(lab, tmp_path):
    static, _ = given_predictions()
    files = source(STATIC)
    query = f"SELECT scan_key, trial_id FROM trials WHERE scan_key = '{STATIC.key}' AND tier = 'test' ORDER BY trial_id"
    run = run_cli("export", query, str(tmp_path / "out"), "--format", "submission", "--model", "cnn", "--db", str(lab))
    assert run.returncode == 0, run.stderr
    assert "as submission" in run.stdout
    table = read(tmp_path / "out" / "predictions_test.parquet")
    test = [t for t in range(STATIC.n_trials) if files["tiers"][t] == "test"]
    assert table["trial_indices"].to_pylist() == test
    np.testing.assert_array_equal(np.array(table["prediction"].to_pylist(), np.float32), static[test])
    refused = run_cli("export", query, str(tmp_path / "other"), "--format", "submission", "--db", str(lab))
    assert refused.returncode != 0 and "--model" in refused.stderr


def test_on_a_lake(lake, fill_lake, tmp_path):
    fill_lake(lake, write_zip(generate_dynamic(VIDEO), tmp_path / f"{VIDEO.name}.zip"))
    _, video = given_predictions()
    files = source(VIDEO)
    with scandb.connect(lake.url, read_only=False) as db:
        fill(db, video_only=True)
    with scandb.connect(lake.url) as db:
        result = db.export(f"SELECT scan_key, trial_id FROM trials WHERE scan_key = '{VIDEO.key}' AND tier = 'oracle' "
                           "ORDER BY trial_id", tmp_path / "out", format="submission", model="video-cnn")
    table, = (read(p) for p in result.paths)
    oracle = [t for t in range(VIDEO.n_trials) if files["tiers"][t] == "oracle"]
    assert table["trial_indices"].to_pylist() == oracle
    for row, trial in enumerate(oracle):
        np.testing.assert_array_equal(np.array(table["prediction"][row].as_py(), np.float32),
                                      video[trial, :, SKIP:files["lengths"][trial]])
