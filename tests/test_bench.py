"""The benchmark harness runs end to end on toy scans (the full run stays out of CI)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

from bench import run  # noqa: E402


def test_tiny_benchmark_writes_the_report_and_plot(tmp_path: Path):
    report = run.main(["--tiny", "--scans", "2", "--out", str(tmp_path), "--repeat", "1", "--no-profile"])

    text = report.read_text()
    assert report.with_suffix(".png").stat().st_size > 0
    assert "| ingest one zip (1st scan, empty db)" in text
    assert "## Scaling: 1 to 2 scans in one database" in text
    assert "python -m bench.run --tiny" in text
