"""The report of a competition scan (withheld test responses) says on the page why it has no
repeat-reliability figure instead of drawing an empty one."""

from __future__ import annotations

import pytest

import scandb

from .test_dynamic_scans import ingest_paths, zero_filled_static


def test_a_withheld_test_tier_gives_a_sentence_in_place_of_the_oracle_figure(tmp_path):
    pytest.importorskip("matplotlib")
    spec, _, path = zero_filled_static(tmp_path)
    db_path = tmp_path / "lab.duckdb"
    ingest_paths(db_path, path)
    with scandb.connect(db_path) as db:
        result = db.report(spec.key, tmp_path / "report")
    assert "oracle_per_area" not in result.figures
    assert not (tmp_path / "report" / "oracle_per_area.png").exists()
    page = (tmp_path / "report" / "report.html").read_text()
    assert "No repeat reliability: the responses of the test tier" in page and "withheld" in page
    assert "trials_per_tier" in result.figures
