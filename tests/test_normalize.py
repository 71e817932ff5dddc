"""normalize=True matches neuralpredictors' NeuroNormalizer to float32 precision."""

from __future__ import annotations

import numpy as np
import pytest

import scandb
from scandb.catalog.database import Database
from scandb.ingest import ingest
from scandb.query.normalize import response_precision
from scandb.synthetic import generate

from .conftest import THREE_SPECS
from .reference_loaders import neuralpredictors  # noqa: F401 (a fixture)
from .scans import spec_for, write


def reference(arrays: dict, key: str, x: np.ndarray) -> np.ndarray:
    """The rule, written out from the Sensorium loaders, on the source's own statistics."""
    def stat(variable, name):
        return arrays[f"meta/statistics/{variable}/all/{name}.npy"]
    if key == "images":
        return (x - stat("images", "mean")) / stat("images", "std")
    if key == "responses":
        std = stat("responses", "std")
        threshold = 0.01 * std.mean()
        return x / np.where(std > threshold, std, threshold)
    if key == "behavior":
        return x / stat("behavior", "std")
    return (x - stat("pupil_center", "mean")) / stat("pupil_center", "std")


def test_small_stds_are_replaced_by_one_percent_of_the_mean():
    std = np.array([2.0, 0.0, 1e-6, 1.0], np.float32)
    threshold = 0.01 * std.mean()
    np.testing.assert_allclose(response_precision(std), [0.5, 1 / threshold, 1 / threshold, 1.0], rtol=1e-6)


@pytest.mark.parametrize("key", ["images", "responses", "behavior", "pupil_center"])
def test_normalised_arrays_match_the_written_out_rule(lab_db, sources, key):
    rows = [(spec.key, t) for spec in THREE_SPECS for t in (0, 7, spec.n_trials - 1)]
    with scandb.connect(lab_db) as db:
        got = db.fetch(rows, key, normalize=True, per_scan=True)
    for scan, arrays in got.items():
        trials = [t for s, t in rows if s == scan]
        raw = np.stack([sources[scan][f"data/{key}/{t}.npy"] for t in trials]).astype(np.float64)
        raw = raw.reshape(arrays[key].shape)
        assert arrays[key].dtype == np.float32
        np.testing.assert_allclose(arrays[key], reference(sources[scan], key, raw), rtol=2e-6, atol=1e-6)


def test_normalised_responses_of_a_neuron_subset_use_that_subsets_stds(lab_db, sources):
    scan = THREE_SPECS[0].key
    picked = [5, 1]
    with scandb.connect(lab_db) as db:
        got = db.responses([(scan, 3)], neurons={scan: picked}, normalize=True)
    full = reference(sources[scan], "responses", sources[scan]["data/responses/3.npy"].astype(np.float64))
    np.testing.assert_allclose(got[0], full[picked], rtol=2e-6)


def test_normalised_arrays_match_neuralpredictors(tmp_path, neuralpredictors):
    NeuroNormalizer, FileTreeDataset = neuralpredictors
    spec = spec_for("common", n_trials=30, n_neurons=20)
    folder = write(spec, tmp_path, folder=True)
    with Database(tmp_path / "n.duckdb", read_only=False) as db:
        db.ensure_schema()
        ingest(db, folder)
    keys = ("images", "responses", "behavior", "pupil_center")
    dataset = FileTreeDataset(str(folder), *keys)
    normalizer = NeuroNormalizer(dataset)
    trials = [0, 11, 29]
    with scandb.connect(tmp_path / "n.duckdb") as db:
        ours = db.fetch([(spec.key, t) for t in trials], *keys, normalize=True)
    for row, trial in enumerate(trials):
        theirs = normalizer(dataset[trial])
        for key in keys:
            np.testing.assert_allclose(ours[key][row], np.asarray(getattr(theirs, key), np.float64).reshape(
                ours[key][row].shape), rtol=2e-6, atol=1e-6, err_msg=key)
    assert generate(spec).arrays["data/responses/0.npy"].shape == (20,)
