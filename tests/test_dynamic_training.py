"""Dynamic trials for training: normalisation against neuralpredictors' MovieFileTreeDataset
with NeuroNormalizer, the 2023 loader's items from ScanDataset, and the command line."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import scandb
from scandb.catalog.database import Database
from scandb.errors import UsageError
from scandb.ingest import ingest
from scandb.synthetic import VideoSpec, generate_dynamic, write_folder, write_zip

from .reference_loaders import neuralpredictors  # noqa: F401 (a fixture)
from .hostile import run_cli

torch = pytest.importorskip("torch")

SPEC = VideoSpec(animal_id=29623, seed=11)


@pytest.fixture(scope="module")
def video_db(tmp_path_factory):
    directory = tmp_path_factory.mktemp("video")
    source = generate_dynamic(SPEC)
    with Database(directory / "lab.duckdb", read_only=False) as db:
        db.ensure_schema()
        ingest(db, write_zip(source, directory / f"{SPEC.name}.zip"))
    return directory / "lab.duckdb", source.arrays


def test_normalised_responses_behavior_and_pupil_match_neuralpredictors(tmp_path, neuralpredictors, video_db):
    NeuroNormalizer, _ = neuralpredictors
    from neuralpredictors.data.datasets import MovieFileTreeDataset
    db_path, _ = video_db
    folder = write_folder(generate_dynamic(SPEC.with_(top_folder=False)), tmp_path / "scan")
    reference = MovieFileTreeDataset(str(folder), "videos", "responses", "behavior", "pupil_center")
    # 0.3.0 names the stimulus statistics "images" or "inputs": videos are left out of its rule
    reference.transforms.append(NeuroNormalizer(reference, exclude=["videos"], inputs_mean=0, inputs_std=1))
    with scandb.connect(db_path) as db:
        ids = db.sql("SELECT trial_id FROM trials WHERE NOT responses_withheld ORDER BY trial_id").fetchnumpy()
        ours = db.fetch("SELECT scan_key, trial_id FROM trials WHERE NOT responses_withheld ORDER BY trial_id",
                        "responses", "behavior", "pupil_center", normalize=True)
    for row, trial in enumerate(ids["trial_id"].tolist()):
        point = reference[trial]
        for key in ("responses", "behavior", "pupil_center"):
            np.testing.assert_allclose(ours[key][row], getattr(point, key).astype(np.float32), rtol=1e-6,
                                       atol=1e-6, equal_nan=True, err_msg=f"{key} of trial {trial}")


def test_train_items_are_windows_inside_the_valid_length_as_the_2023_loader_yields(video_db):
    from scandb.torchdata import ScanDataset
    db_path, source = video_db
    dataset = ScanDataset(db_path, "SELECT scan_key, trial_id FROM trials WHERE tier = 'train' ORDER BY trial_id",
                          frames=12, normalize=False)
    with scandb.connect(db_path) as db:
        ids = db.sql("SELECT trial_id FROM trials WHERE tier = 'train' ORDER BY trial_id").fetchnumpy()["trial_id"]
    for row, trial in enumerate(ids.tolist()):
        item = dataset[row]
        assert item.videos.shape == (1, 12, 36, 64)
        assert item.responses.shape == (SPEC.n_neurons, 12) and item.behavior.shape == (2, 12)
        assert item.pupil_center.shape == (2, 12)
        responses = source[f"data/responses/{trial}.npy"]
        starts = [s for s in range(responses.shape[1] - 11)
                  if np.array_equal(responses[:, s:s + 12], item.responses)]
        assert starts, f"trial {trial}: the item is no window of its responses"
        assert not np.isnan(item.responses).any()  # inside the valid length
        start = starts[0]
        video = source[f"data/videos/{trial}.npy"][:, :, start:start + 12]
        assert np.array_equal(item.videos[0], np.moveaxis(video, -1, 0))


def test_other_tiers_yield_the_whole_valid_length(video_db):
    from scandb.torchdata import ScanDataset
    db_path, source = video_db
    dataset = ScanDataset(db_path, "SELECT scan_key, trial_id FROM trials WHERE tier = 'oracle' ORDER BY trial_id",
                          frames=12)
    with scandb.connect(db_path) as db:
        first, length = db.sql("SELECT trial_id, n_frames FROM trials WHERE tier = 'oracle' "
                               "ORDER BY trial_id LIMIT 1").fetchone()
    item = dataset[0]
    assert item.responses.shape == (SPEC.n_neurons, length)
    assert item.videos.shape == (1, length, 36, 64)
    assert not np.isnan(item.responses).any()


def test_the_dataset_refuses_withheld_trials_and_a_window_longer_than_a_trial(video_db):
    from scandb.torchdata import ScanDataset
    db_path, _ = video_db
    with pytest.raises(UsageError, match="4 selected trials have withheld responses .*WHERE NOT responses_withheld"):
        ScanDataset(db_path, "SELECT scan_key, trial_id FROM trials")
    with pytest.raises(UsageError, match=r"frames=41 is longer than trial"):
        ScanDataset(db_path, "SELECT scan_key, trial_id FROM trials WHERE tier = 'train'", frames=41)


def test_the_dataset_pickles_and_feeds_a_multi_worker_loader(video_db):
    from scandb.torchdata import ScanDataset
    db_path, _ = video_db
    dataset = pickle.loads(pickle.dumps(ScanDataset(
        db_path, "SELECT scan_key, trial_id FROM trials WHERE tier = 'train'", frames=10)))
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, num_workers=2)
    batches = list(loader)
    assert sum(len(b.responses) for b in batches) == len(dataset)
    assert tuple(batches[0].videos.shape) == (4, 1, 10, 36, 64)
    assert batches[0].responses.dtype == torch.float32


def test_cli_example_ingest_info_verify_remove_handle_dynamic_scans(tmp_path):
    made = run_cli("example", str(tmp_path / "ex"), "--kind", "dynamic", "--count", "1", "--trials", "30",
                   "--neurons", "16", "--frames", "24", "--seed", "5")
    assert made.returncode == 0, made.stderr
    [zipped] = sorted((tmp_path / "ex").glob("dynamic*-Video-*.zip"))
    db = str(tmp_path / "lab.duckdb")
    assert run_cli("ingest", str(zipped), "--db", db).returncode == 0
    key = "-".join(zipped.name[len("dynamic"):].split("-")[:3])
    info = run_cli("info", key, "--db", db)
    assert info.returncode == 0, info.stderr
    assert "kind        dynamic" in info.stdout
    assert "videos      (36, 64, 24) float32" in info.stdout
    assert "live_test_main: responses 1" in info.stdout
    assert "oracle 20" in info.stdout
    assert run_cli("verify", "--db", db).returncode == 0
    assert run_cli("remove", key, "--db", db).returncode == 0
    assert run_cli("verify", "--db", db).returncode == 0
    assert "--kind" in run_cli("example", "--help").stdout
