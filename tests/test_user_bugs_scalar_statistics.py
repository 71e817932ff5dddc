"""Video scans whose statistics are scalars (shape ``()``): normalisation broadcasts them
as the Sensorium rule does, in db.fetch and in ScanDataset."""

from __future__ import annotations

import numpy as np
import pytest

import scandb
from scandb.catalog.database import Database
from scandb.ingest import ingest
from scandb.synthetic import VideoSpec, generate_dynamic, write_zip

SPEC = VideoSpec(animal_id=29700, seed=5, n_frames=60, min_length=55, scalar_video_statistics=True)
TRAIN = "SELECT scan_key, trial_id FROM trials WHERE tier = 'train' ORDER BY trial_id"


@pytest.fixture(scope="module")
def scalar_db(tmp_path_factory):
    directory = tmp_path_factory.mktemp("scalar")
    source = generate_dynamic(SPEC)
    assert source.arrays["meta/statistics/videos/all/mean.npy"].shape == ()
    with Database(directory / "lab.duckdb", read_only=False) as db:
        db.ensure_schema()
        ingest(db, write_zip(source, directory / f"{SPEC.name}.zip"))
    return directory / "lab.duckdb", source.arrays


def test_fetch_normalises_videos_with_scalar_statistics(scalar_db):
    db_path, source = scalar_db
    mean = float(source["meta/statistics/videos/all/mean.npy"])
    std = float(source["meta/statistics/videos/all/std.npy"])
    with scandb.connect(db_path) as db:
        ids = db.sql(TRAIN).fetchnumpy()["trial_id"]
        got = db.fetch(TRAIN, normalize=True, frames=(0, 50))
    raw = np.stack([source[f"data/videos/{i}.npy"] for i in ids.tolist()]).astype(np.float64)[..., 0:50]
    assert got["videos"].shape == (len(ids), 36, 64, 50)
    np.testing.assert_allclose(got["videos"], (raw - mean) / std, rtol=2e-6, atol=1e-5, equal_nan=True)


def test_scan_dataset_items_normalise_videos_with_scalar_statistics(scalar_db):
    pytest.importorskip("torch")
    from scandb.torchdata import ScanDataset
    db_path, source = scalar_db
    mean = float(source["meta/statistics/videos/all/mean.npy"])
    std = float(source["meta/statistics/videos/all/std.npy"])
    with scandb.connect(db_path) as db:
        trial = int(db.sql(TRAIN).fetchnumpy()["trial_id"][0])
    item = ScanDataset(db_path, TRAIN, frames=50)[0]
    assert item.videos.shape == (1, 50, 36, 64)
    video = np.moveaxis(source[f"data/videos/{trial}.npy"].astype(np.float64), -1, 0)
    starts = [s for s in range(video.shape[0] - 49)
              if np.allclose(item.videos[0], (video[s:s + 50] - mean) / std, rtol=2e-6, atol=1e-5)]
    assert starts, "the item is no normalised window of the trial's video"
