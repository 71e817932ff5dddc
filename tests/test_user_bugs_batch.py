"""The summary line of an ingest of several paths counts distinct scans and says how many
paths repeated one (the same zip twice, or a zip and its unzipped folder)."""

from __future__ import annotations

from .scans import make_scan
from .hostile import run_cli


def test_a_zip_its_folder_and_the_zip_again_are_one_scan(tmp_path):
    for folder_name in ("zips", "folders"):
        (tmp_path / folder_name).mkdir()
    zipped = make_scan(tmp_path / "zips")
    folder = make_scan(tmp_path / "folders", folder=True)
    other = make_scan(tmp_path / "zips", animal_id=31000)
    db = tmp_path / "lab.duckdb"
    result = run_cli("ingest", str(zipped), str(folder), str(zipped), str(other), "--db", str(db))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "2 scans: 2 ingested; 2 paths named a scan already given"
    again = run_cli("ingest", str(zipped), str(folder), "--db", str(db))
    assert again.stdout.splitlines()[-1] == "1 scan: 1 unchanged; 1 path named a scan already given"
