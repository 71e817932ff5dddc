"""A failed npz export leaves no folder behind, and its advice names options that exist:
export has no per_scan, so the message says what to do instead, in CLI wording on the CLI."""

from __future__ import annotations

import pytest

import scandb
from scandb.catalog.database import Database
from scandb.errors import UsageError
from scandb.ingest import ingest
from scandb.synthetic import ScanSpec, generate, write_zip

from .hostile import run_cli

SMALL = ScanSpec(animal_id=1011, seed=1, n_neurons=30)
LARGE = ScanSpec(animal_id=1012, seed=2, n_neurons=40)
ALL = "SELECT scan_key, trial_id FROM trials ORDER BY ALL"


@pytest.fixture(scope="module")
def two_sizes(tmp_path_factory):
    directory = tmp_path_factory.mktemp("sizes")
    with Database(directory / "lab.duckdb", read_only=False) as db:
        db.ensure_schema()
        for spec in (SMALL, LARGE):
            ingest(db, write_zip(generate(spec), directory / f"{spec.name}.zip"))
    return directory / "lab.duckdb"


def test_an_npz_export_of_differently_sized_scans_fails_in_one_line_and_leaves_no_folder(two_sizes, tmp_path):
    out = tmp_path / "out"
    with scandb.connect(two_sizes) as db, pytest.raises(UsageError) as caught:
        db.export(ALL, out, format="npz")
    message = str(caught.value)
    assert "different neuron counts" in message and "\n" not in message
    assert "per_scan" not in message and "neurons=" in message and "format='scan'" in message
    assert not out.exists()


def test_the_cli_says_it_in_its_own_options_and_leaves_no_folder(two_sizes, tmp_path):
    out = tmp_path / "out"
    result = run_cli("export", ALL, str(out), "--format", "npz", "--db", str(two_sizes))
    assert result.returncode == 2, result.stderr
    assert "per_scan" not in result.stderr and "neurons=" not in result.stderr
    assert "--neurons" in result.stderr and "--format scan" in result.stderr
    assert not out.exists()


def test_an_npz_export_into_an_existing_folder_that_fails_keeps_the_folder(two_sizes, tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    with scandb.connect(two_sizes) as db, pytest.raises(UsageError):
        db.export(ALL, tmp_path, format="npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
