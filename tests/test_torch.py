"""The PyTorch dataset yields FileTreeDataset's fields and runs through a 2-worker DataLoader."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import scandb

from .conftest import THREE_SPECS

torch = pytest.importorskip("torch")
from scandb.torchdata import ScanDataset  # noqa: E402

SELECTION = f"SELECT scan_key, trial_id FROM trials WHERE scan_key = '{THREE_SPECS[0].key}' ORDER BY trial_id DESC"


def test_items_are_named_like_filetreedataset(lab_db):
    dataset = ScanDataset(lab_db, SELECTION)
    item = dataset[0]
    assert item._fields == ("images", "responses", "behavior", "pupil_center")
    assert item.images.dtype == np.float32 and item.images.shape == (1, 36, 64)
    assert len(dataset) == THREE_SPECS[0].n_trials


def test_a_two_worker_dataloader_yields_every_trial_in_order(lab_db):
    dataset = ScanDataset(lab_db, SELECTION, normalize=False)
    loader = torch.utils.data.DataLoader(dataset, batch_size=16, num_workers=2)
    batches = list(loader)
    responses = torch.cat([b.responses for b in batches]).numpy()
    behavior = torch.cat([b.behavior for b in batches]).numpy()
    with scandb.connect(lab_db) as db:
        expected = db.fetch(SELECTION, "responses", "behavior")
    np.testing.assert_array_equal(responses, expected["responses"])
    np.testing.assert_array_equal(behavior, expected["behavior"])
    assert batches[0].images.shape == (16, 1, 36, 64)


def test_normalised_by_default_and_picklable(lab_db):
    dataset = ScanDataset(lab_db, SELECTION, keys=("responses",))
    dataset[0]  # opens a connection, which must not travel with the pickle
    clone = pickle.loads(pickle.dumps(dataset))
    with scandb.connect(lab_db) as db:
        expected = db.fetch(SELECTION, "responses", normalize=True)["responses"][:1]
    np.testing.assert_array_equal(clone[0].responses, expected[0])
