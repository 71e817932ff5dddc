"""Ingest refuses a different file for a scan already present (without --replace) in one
line that names the members that differ, or says what is known when only data/ differs."""

from __future__ import annotations

import numpy as np
import pytest

from scandb.catalog.database import Database
from scandb.errors import BadScanError
from scandb.ingest import ingest
from scandb.synthetic import ScanSpec, generate, write_zip

SPEC = ScanSpec(animal_id=1021, seed=4)
STATISTIC = "meta/statistics/responses/all/mean.npy"


def refusal(tmp_path, changed) -> str:
    db_path = tmp_path / "lab.duckdb"
    with Database(db_path, read_only=False) as db:
        db.ensure_schema()
        ingest(db, write_zip(generate(SPEC), tmp_path / "first.zip"))
        with pytest.raises(BadScanError) as caught:
            ingest(db, write_zip(changed, tmp_path / "second.zip"))
    return str(caught.value)


def test_the_refusal_names_the_added_and_changed_members(tmp_path):
    changed = generate(SPEC)
    changed.arrays[STATISTIC] = changed.arrays[STATISTIC] * 2
    changed.arrays["meta/trials/note.npy"] = np.arange(SPEC.n_trials)
    message = refusal(tmp_path, changed)
    assert "\n" not in message
    assert "added meta/trials/note.npy" in message
    assert f"changed {STATISTIC}" in message
    assert "removed" not in message and "--replace" in message


def test_a_difference_only_in_data_says_so(tmp_path):
    changed = generate(SPEC)
    changed.arrays["data/responses/0.npy"] = changed.arrays["data/responses/0.npy"] + 1
    message = refusal(tmp_path, changed)
    assert "meta files and trial and neuron counts are the same, so data/ members differ" in message
