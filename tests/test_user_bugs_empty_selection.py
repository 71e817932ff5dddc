"""An empty selection in a database of scans with different neuron counts has the other
dimensions of the scan ``scan=`` names, whatever form the selection takes."""

from __future__ import annotations

import numpy as np
import pytest

import scandb
from scandb.catalog.database import Database
from scandb.ingest import ingest
from scandb.synthetic import ScanSpec, VideoSpec, generate, generate_dynamic, write_zip

SMALL = ScanSpec(animal_id=1001, seed=1, n_neurons=30)
LARGE = ScanSpec(animal_id=1002, seed=2, n_neurons=40)
VIDEO = VideoSpec(animal_id=29516, seed=3, n_neurons=25)
NOTHING = "SELECT scan_key, trial_id FROM trials WHERE false"


@pytest.fixture(scope="module")
def three_sizes(tmp_path_factory):
    directory = tmp_path_factory.mktemp("sizes")
    paths = [write_zip(generate(s), directory / f"{s.name}.zip") for s in (SMALL, LARGE)]
    paths.append(write_zip(generate_dynamic(VIDEO), directory / f"{VIDEO.name}.zip"))
    with Database(directory / "lab.duckdb", read_only=False) as db:
        db.ensure_schema()
        for path in paths:
            ingest(db, path)
    return directory / "lab.duckdb"


@pytest.mark.parametrize("selection", [[], np.array([], dtype=np.int64), range(0), NOTHING],
                         ids=["list", "array", "range", "sql"])
def test_an_empty_selection_has_the_named_scans_neuron_count(three_sizes, selection):
    with scandb.connect(three_sizes) as db:
        assert db.responses(selection, scan=SMALL.key).shape == (0, 30)
        assert db.responses(selection, scan=LARGE.key, normalize=True).shape == (0, 40)
        assert db.fetch(selection, scan=VIDEO.key, frames=(0, 10))["responses"].shape == (0, 25, 10)
        empty_trials = db.trials(scan=LARGE.key)[0:0]
        assert db.responses(empty_trials, scan=LARGE.key).shape == (0, 40)
