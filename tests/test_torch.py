"""The PyTorch dataset yields what neuralpredictors' FileTreeDataset reads from the source
files, through a 2-worker DataLoader, and refuses a bad selection when it is made."""

from __future__ import annotations

import pickle
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from scandb.catalog.database import Database
from scandb.errors import DatabaseError, UsageError
from scandb.ingest import ingest
from scandb.synthetic import generate

from .reference_loaders import neuralpredictors  # noqa: F401 (a fixture)
from .scans import spec_for, stack, write
from .test_concurrency import Holder

torch = pytest.importorskip("torch")
from scandb.torchdata import ScanDataset  # noqa: E402

KEYS = ("images", "responses", "behavior", "pupil_center")
FOLDER_SPEC = spec_for("common", animal_id=31001, n_trials=40, n_neurons=20, seed=7)
OTHER_SPEC = spec_for("common", animal_id=31002, n_trials=24, n_neurons=13, seed=8)
SCAN, OTHER = FOLDER_SPEC.key, OTHER_SPEC.key
DESCENDING = f"SELECT scan_key, trial_id FROM trials WHERE scan_key = '{SCAN}' ORDER BY trial_id DESC"
BOTH = "SELECT scan_key, trial_id FROM trials ORDER BY trial_id, scan_key"


@pytest.fixture(scope="module")
def scans(tmp_path_factory) -> dict:
    """A database of two scans of different neuron counts; the first is also a folder."""
    directory = tmp_path_factory.mktemp("torch")
    folder = write(FOLDER_SPEC, directory, folder=True)
    (directory / "db").mkdir()
    with Database(directory / "db" / "t.duckdb", read_only=False) as db:
        db.ensure_schema()
        ingest(db, folder)
        ingest(db, write(OTHER_SPEC, directory))
    return {"db": directory / "db" / "t.duckdb", "folder": folder,
            "arrays": {SCAN: generate(FOLDER_SPEC).arrays, OTHER: generate(OTHER_SPEC).arrays}}


def test_items_have_filetreedatasets_fields_and_values(scans, neuralpredictors):
    _, FileTreeDataset = neuralpredictors
    theirs = FileTreeDataset(str(scans["folder"]), *KEYS)
    ours = ScanDataset(scans["db"], DESCENDING, normalize=False, image_dtype=None)
    assert ours[0]._fields == theirs[0]._fields
    assert len(ours) == len(theirs)
    for index in (0, 17, len(ours) - 1):
        trial = len(ours) - 1 - index
        for key in KEYS:
            expected = np.asarray(getattr(theirs[trial], key))
            got = getattr(ours[index], key)
            assert got.dtype == expected.dtype, key
            np.testing.assert_array_equal(got, expected.reshape(got.shape), err_msg=key)


def test_normalised_items_match_neuronormalizer(scans, neuralpredictors):
    NeuroNormalizer, FileTreeDataset = neuralpredictors
    theirs = FileTreeDataset(str(scans["folder"]), *KEYS)
    normalizer = NeuroNormalizer(theirs)
    ours = ScanDataset(scans["db"], range(FOLDER_SPEC.n_trials), scan=SCAN)
    for trial in (0, 9, 39):
        expected = normalizer(theirs[trial])
        for key in KEYS:
            got = getattr(ours[trial], key)
            assert got.dtype == np.float32, key
            np.testing.assert_allclose(got, np.asarray(getattr(expected, key)).reshape(got.shape),
                                       rtol=2e-6, atol=1e-6, err_msg=key)


def test_a_two_worker_dataloader_yields_every_trial_in_order(scans):
    dataset = ScanDataset(scans["db"], DESCENDING, normalize=False)
    batches = list(torch.utils.data.DataLoader(dataset, batch_size=16, num_workers=2))
    trials = list(range(FOLDER_SPEC.n_trials))[::-1]
    for key in KEYS:
        got = torch.cat([getattr(b, key) for b in batches]).numpy()
        expected = stack(scans["arrays"][SCAN], key, trials)
        np.testing.assert_array_equal(got, expected.reshape(got.shape).astype(got.dtype), err_msg=key)
    assert batches[0].images.shape == (16, *FOLDER_SPEC.image_shape)
    assert batches[0].images.dtype == torch.float32


def test_picklable_after_use(scans):
    dataset = ScanDataset(scans["db"], DESCENDING, keys=("responses", "behavior"), normalize=False)
    dataset[0]  # opens a connection, which must not travel with the pickle
    clone = pickle.loads(pickle.dumps(dataset))
    assert clone[3]._fields == ("responses", "behavior")
    np.testing.assert_array_equal(clone[3].responses, stack(scans["arrays"][SCAN], "responses", [36])[0])


def test_neurons_pick_response_columns_in_order(scans):
    dataset = ScanDataset(scans["db"], DESCENDING, keys=("responses",), neurons=[4, 0, 19], normalize=False)
    np.testing.assert_array_equal(dataset[0].responses, stack(scans["arrays"][SCAN], "responses", [39])[0][[4, 0, 19]])


def test_per_scan_gives_one_dataset_per_scan(scans):
    datasets = ScanDataset.per_scan(scans["db"], BOTH, keys=("responses",), normalize=False)
    assert list(datasets) == [SCAN, OTHER]
    assert [len(d) for d in datasets.values()] == [FOLDER_SPEC.n_trials, OTHER_SPEC.n_trials]
    np.testing.assert_array_equal(datasets[OTHER][5].responses, stack(scans["arrays"][OTHER], "responses", [5])[0])
    loader = torch.utils.data.DataLoader(datasets[OTHER], batch_size=8)
    assert next(iter(loader)).responses.shape == (8, OTHER_SPEC.n_neurons)


@pytest.mark.parametrize("arguments, message", [
    ((BOTH,), r"spans scans whose responses differ in size \(31001-17-20: \(20,\), 31002-17-20: \(13,\)\); "
              r"a dataset yields equal-sized items: make one dataset per scan with ScanDataset.per_scan"),
    ((BOTH, ("images", "tiers")), "unknown key 'tiers'"),
    (("SELECT '9-9-9' AS scan_key, 0 AS trial_id",), r"no scan '9-9-9' in the database \(it holds: 31001"),
    ((DESCENDING,), None),
], ids=["mixed-neuron-counts", "unknown-key", "unknown-scan", "fine"])
def test_a_bad_dataset_fails_when_made(scans, arguments, message):
    if message is None:
        assert len(ScanDataset(scans["db"], *arguments)) == FOLDER_SPEC.n_trials
        return
    with pytest.raises(UsageError, match=message):
        ScanDataset(scans["db"], *arguments)


def test_mixed_scans_with_equal_neuron_picks_make_one_dataset(scans):
    picks = {SCAN: [0, 1, 2], OTHER: [12, 11, 10]}
    dataset = ScanDataset(scans["db"], BOTH, keys=("responses",), neurons=picks, normalize=False)
    np.testing.assert_array_equal(dataset[1].responses, stack(scans["arrays"][OTHER], "responses", [0])[0][[12, 11, 10]])


def test_wait_outlasts_a_writer(scans, tmp_path):
    copy = Path(shutil.copytree(scans["db"].parent, tmp_path / "copy")) / scans["db"].name
    holder = Holder(copy, "write").holding()
    try:
        with pytest.raises(DatabaseError):
            ScanDataset(copy, DESCENDING, wait=0)
        threading.Timer(1.0, holder.release).start()
        assert len(ScanDataset(copy, DESCENDING)) == FOLDER_SPEC.n_trials  # the default wait outlasts it
    finally:
        if holder.process.poll() is None:
            holder.release()


def test_normalising_without_statistics_fails_when_made(scans, tmp_path):
    copy = Path(shutil.copytree(scans["db"].parent, tmp_path / "copy")) / scans["db"].name
    with Database(copy, read_only=False) as db:
        db.conn.execute("DELETE FROM statistics WHERE variable = 'behavior'")
    with pytest.raises(UsageError, match=r"normalize=True needs meta/statistics/behavior/all/std\.npy"):
        ScanDataset(copy, DESCENDING)
    assert len(ScanDataset(copy, DESCENDING, keys=("images", "responses"))) == FOLDER_SPEC.n_trials
