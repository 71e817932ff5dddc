"""`scandb info` on a scan whose meta has no area or layer says so in words."""

from __future__ import annotations

import scandb
from scandb.catalog.database import Database
from scandb.ingest import ingest
from scandb.synthetic import ScanSpec, generate, write_zip

from .hostile import run_cli

SPEC = ScanSpec(animal_id=1031, seed=6, n_neurons=40)


def test_info_without_area_and_layer_says_there_are_none(tmp_path):
    scan = generate(SPEC)
    del scan.arrays["meta/neurons/area.npy"], scan.arrays["meta/neurons/layer.npy"]
    db = tmp_path / "lab.duckdb"
    with Database(db, read_only=False) as database:
        database.ensure_schema()
        ingest(database, write_zip(scan, tmp_path / f"{SPEC.name}.zip"))
    result = run_cli("info", SPEC.key, "--db", str(db))
    assert result.returncode == 0, result.stderr
    assert "neurons     40: no area/layer in the scan's meta: 40 neurons" in result.stdout
    assert "? ?" not in result.stdout
    with scandb.connect(db) as lab:
        assert lab.sql("SELECT count(*) FROM neurons WHERE area IS NULL").fetchone()[0] == 40
