"""`scandb info` and `scandb report` take a scan by key, by its zip's name, or by its
folder's name; an unknown or ambiguous name is one line listing the candidates."""

from __future__ import annotations

import pytest

import scandb
from scandb.errors import UsageError

from .scans import make_scan, spec_for
from .hostile import run_cli


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    directory = tmp_path_factory.mktemp("names")
    path = make_scan(directory)
    db = directory / "lab.duckdb"
    assert run_cli("ingest", str(path), "--db", str(db)).returncode == 0
    return db, path


@pytest.mark.parametrize("form", ["key", "zip", "zip_path", "folder", "folder_slash"])
def test_info_takes_the_key_the_zip_or_the_folder_name(lab, form):
    db, path = lab
    spec = spec_for()
    name = {"key": spec.key, "zip": path.name, "zip_path": str(path), "folder": spec.name,
            "folder_slash": f"{spec.name}/"}[form]
    result = run_cli("info", name, "--db", str(db))
    assert result.returncode == 0, result.stderr
    with scandb.connect(db) as lab_db:
        assert result.stdout.strip() == lab_db.summary(spec.key).text().strip()


def test_an_unknown_name_is_one_line_listing_the_scans(lab):
    db, _ = lab
    result = run_cli("info", "static99999-1-1-GrayImageNet-x.zip", "--db", str(db))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and spec_for().key in result.stderr


def test_the_report_takes_the_zip_name(lab, tmp_path):
    pytest.importorskip("matplotlib")
    db, path = lab
    with scandb.connect(db) as lab_db:
        result = lab_db.report(path.name, tmp_path / "report")
    assert (tmp_path / "report" / "report.html").exists(), result
    with scandb.connect(db) as lab_db, pytest.raises(UsageError, match="no scan 'nothing-like-it'"):
        lab_db.report("nothing-like-it", tmp_path / "other")
