"""A training job never holds the database: a DataLoader over a ScanDataset runs through
an ingest in another process, across epochs, with persistent and fresh workers, and yields
exactly the data it started with."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import scandb
from scandb.synthetic import generate, write_zip

from .hostile import BAD_SPEC, GOOD_SPEC, bad_base, good_db, run_scandb, template_db  # noqa: F401
from .scans import source

torch = pytest.importorskip("torch")
from scandb.torchdata import ScanDataset  # noqa: E402

SELECTION = f"SELECT scan_key, trial_id FROM trials WHERE scan_key = '{GOOD_SPEC.key}' ORDER BY trial_id"


def epoch(loader) -> list[dict[str, np.ndarray]]:
    return [{k: v.numpy().copy() for k, v in batch._asdict().items()} for batch in loader]


@pytest.mark.parametrize("persistent", [True, False], ids=["persistent workers", "fresh workers each epoch"])
def test_training_runs_through_an_ingest_and_sees_the_data_it_started_with(good_db, bad_base, tmp_path,
                                                                           persistent):
    dataset = ScanDataset(good_db, SELECTION, normalize=False)
    loader = torch.utils.data.DataLoader(dataset, batch_size=8, num_workers=2, persistent_workers=persistent)
    first = epoch(loader)
    ingest = run_scandb("ingest", str(write_zip(bad_base, tmp_path / "second.zip")), "--db", str(good_db),
                        "--wait", "0")
    assert ingest.code == 0, ingest  # the job's workers (alive when persistent) do not block it
    second = epoch(loader)
    assert len(second) == len(first) == 4
    for before, after in zip(first, second):
        assert before.keys() == after.keys()
        for key in before:
            np.testing.assert_array_equal(before[key], after[key])
    np.testing.assert_array_equal(np.concatenate([b["responses"] for b in second]), source(GOOD_SPEC, "responses"))
    np.testing.assert_array_equal(np.concatenate([b["images"] for b in second]), source(GOOD_SPEC, "images"))


def test_a_dataset_holds_no_connection_while_its_workers_read(good_db, bad_base, tmp_path):
    dataset = ScanDataset(good_db, SELECTION, keys=("responses", "tier"), normalize=False)
    iterator = iter(torch.utils.data.DataLoader(dataset, batch_size=4, num_workers=2, persistent_workers=True))
    next(iterator)
    assert run_scandb("ingest", str(write_zip(bad_base, tmp_path / "second.zip")), "--db", str(good_db),
                      "--wait", "0").code == 0
    rest = list(iterator)  # mid-epoch, after the ingest
    tiers = generate(GOOD_SPEC).arrays["meta/trials/tiers.npy"]
    assert [t for b in rest for t in b.tier] == tiers[4:].tolist()
    np.testing.assert_array_equal(np.concatenate([b.responses.numpy() for b in rest]), source(GOOD_SPEC, "responses")[4:])


def test_a_scan_without_its_matrix_file_is_read_when_the_dataset_is_made(tmp_path, bad_base):
    path = tmp_path / "no-matrix.duckdb"
    with scandb.connect(path, read_only=False) as db:
        db.ingest(write_zip(bad_base, tmp_path / "scan.zip"), response_matrix=False)
    dataset = ScanDataset(path, f"SELECT scan_key, trial_id FROM trials WHERE scan_key = '{BAD_SPEC.key}'",
                          keys=("responses",), normalize=False)
    path.rename(tmp_path / "moved.duckdb")  # items need no database file, only the store's
    expected = np.stack([bad_base.arrays[f"data/responses/{i}.npy"] for i in range(BAD_SPEC.n_trials)])
    items = [dataset[i].responses for i in range(len(dataset))]
    np.testing.assert_array_equal(np.stack(items), expected)
