"""Exporting experanto sessions: the whole folder (or tar) as it was ingested, bit for bit, which
ingests again as the same session; partial selections, neuron subsets, other formats and
mixed selections refused in one line, leaving the output folder as it was."""

from __future__ import annotations

import tarfile

import pytest

import scandb
from scandb.errors import UsageError
from tests.experanto_sessions import make_session

from .scans import make_scan
from .hostile import run_cli

VARIANTS = ["videos", "tiers_and_spikes", "data_key"]
"""data.mem sequences, spikes and interval files, .npy sequences and the combined meta cache."""


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("sources")
    found = {}
    for i, variant in enumerate(VARIANTS):
        (root / variant).mkdir()
        found[variant] = make_session(root / variant, variant, animal_id=31000 + i, seed=i)
    found["scan"] = make_scan(root, "common", animal_id=23001, seed=5, n_trials=12, n_neurons=6)
    return found


@pytest.fixture(scope="module")
def filled(tmp_path_factory, sources):
    path = tmp_path_factory.mktemp("db") / "lab.duckdb"
    with scandb.connect(path, read_only=False) as db:
        results = db.ingest([sources[v] for v in VARIANTS] + [sources["scan"]])
        keys = {v: r.scan_key for v, r in zip(VARIANTS + ["scan"], results)}
    return path, keys


def files_of(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def whole(key: str) -> str:
    return f"SELECT scan_key, trial_id FROM trials WHERE scan_key = '{key}' ORDER BY trial_id"


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_session_exports_as_its_folder_bit_for_bit(filled, sources, variant, tmp_path):
    path, keys = filled
    with scandb.connect(path) as db:
        result = db.export(whole(keys[variant]), tmp_path / "out")
    assert result.paths == [tmp_path / "out" / sources[variant].name]
    assert files_of(result.paths[0]) == files_of(sources[variant])


def test_an_exported_tar_holds_the_same_files_and_ingests_as_the_same_session(filled, sources, tmp_path):
    path, keys = filled
    run = run_cli("export", whole(keys["videos"]), str(tmp_path / "out"), "--zip", "--db", str(path))
    assert run.code == 0, run
    tar_path = tmp_path / "out" / f"{sources['videos'].name}.tar"
    assert f"trials of 1 session(s) as session tar: {tar_path}" in run.out
    with tarfile.open(tar_path) as tar:
        tar.extractall(tmp_path / "unpacked", filter="data")
    assert files_of(tmp_path / "unpacked" / sources["videos"].name) == files_of(sources["videos"])
    with scandb.connect(path) as db:
        digest = db.sql("SELECT source_sha256 FROM scans WHERE scan_key = ?", params=[keys["videos"]]).fetchone()[0]
    fresh = tmp_path / "fresh.duckdb"
    with scandb.connect(fresh, read_only=False) as db:
        assert db.ingest(tar_path)[0].status == "ingested"
        assert db.sql("SELECT source_sha256 FROM scans").fetchone()[0] == digest
    with scandb.connect(path, read_only=False) as db:
        assert db.ingest(tar_path)[0].status == "unchanged"


@pytest.mark.parametrize("query, neurons, fmt, says", [
    ("SELECT scan_key, trial_id FROM trials WHERE scan_key = '{key}' AND trial_id < 3", None, "scan",
     "the selection has 3 of its"),
    ("SELECT scan_key, trial_id FROM trials WHERE scan_key = '{key}'", "SELECT scan_key, neuron_idx FROM neurons "
     "WHERE scan_key = '{key}' AND neuron_idx < 2", "scan", "leave out --neurons"),
    ("SELECT scan_key, trial_id FROM trials WHERE scan_key = '{key}'", None, "parquet",
     "exports as its folder (format 'scan'"),
    ("SELECT scan_key, trial_id FROM trials WHERE scan_key = '{key}' OR scan_key = '{scan}'", None, "scan",
     "mixes experanto sessions"),
])
def test_what_a_session_export_cannot_do_is_one_line_and_writes_nothing(filled, tmp_path, query, neurons, fmt,
                                                                         says):
    path, keys = filled
    key = keys["videos"]
    out = tmp_path / "out"
    args = ["export", query.format(key=key, scan=keys["scan"]), str(out), "--format", fmt, "--db", str(path)]
    if neurons:
        args += ["--neurons", neurons.format(key=key)]
    run = run_cli(*args)
    assert run.code == 2, run
    assert says in run.error, run
    assert not out.exists() or list(out.iterdir()) == []


def test_an_existing_target_is_refused_before_anything_is_written(filled, sources, tmp_path):
    path, keys = filled
    (tmp_path / "out" / sources["videos"].name).mkdir(parents=True)
    with scandb.connect(path) as db, pytest.raises(UsageError, match="already exists"):
        db.export(whole(keys["videos"]), tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == [tmp_path / "out" / sources["videos"].name]
