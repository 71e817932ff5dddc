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


def test_the_train_fetch_benchmark_checks_what_it_times(tmp_path: Path):
    from bench import train_fetch

    from .scans import make_scan

    result = train_fetch.main([str(make_scan(tmp_path, n_trials=40, n_neurons=12)), str(tmp_path / "work"),
                               "--repeat", "2"])
    assert result["shape"][1] == 12 and 0 < result["shape"][0] < 40  # the train tier only, every neuron
    assert result["fetch_best_s"] > 0 and result["np_load_best_s"] > 0


def test_rewriting_the_report_keeps_the_sections_written_by_hand():
    from bench.report import KEPT, with_kept

    previous = f"# Benchmarks\n\nold numbers\n\n{KEPT}\n\n## DataLoader epochs\n\nmeasured by hand\n"
    rewritten = with_kept("# Benchmarks\n\nnew numbers\n", previous)
    assert rewritten == f"# Benchmarks\n\nnew numbers\n\n{KEPT}\n\n## DataLoader epochs\n\nmeasured by hand\n"
    assert with_kept("# Benchmarks\n", None) == "# Benchmarks\n"


def test_the_scoring_benchmark_checks_its_scores_and_runs_the_readme_queries(tmp_path: Path):
    from bench import scoring

    result = scoring.main([str(tmp_path / "work"), "--data", str(tmp_path / "data"), "--scans", "2", "--models",
                           "2", "--repeat", "1", "--tiny"])
    assert result["scoring"]["shape"][0] > 0 and result["scoring"]["add_predictions_best_s"] > 0
    board = result["leaderboard"]
    assert board["neuron_scores_rows"] > 0 and len(board["query_best_s"]) == 4


def test_the_sessions_benchmark_runs_at_a_tiny_size_and_checks_what_it_times(tmp_path: Path):
    from bench import sessions

    result = sessions.main(["--size", "tiny", "--out", str(tmp_path), "--rounds", "1", "--samples", "200",
                            "--repeat", "1", "--sessions", "2", "--epoch-items", "5"])
    assert result["ingest"]["rounds"][0]["ingest"]["wall"] > 0 and result["ingest"]["rounds"][0]["tar"]["wall"] > 0
    assert all(result["sample"]["same"].values()) and result["sample"]["n"] == 200
    assert result["epoch"]["train_chunks"] > 0 and result["epoch"]["item_shapes"]["screen"][:2] == [1, 60]
    assert result["epoch"]["same_items"] and result["epoch"]["speedup"] > 0
    sql = result["sql"]
    assert sql["sessions"] == 2 and sql["distinct_digests"] == 2
    assert [q["sql"] for q in sql["queries"]] == [statement for _, _, statement in sessions.session_queries()]
    assert all(q["best"] >= 0 for q in sql["queries"])
    assert not (tmp_path / "work").exists()  # databases and the extracted folder are removed


def test_the_bucket_benchmark_times_every_target_and_checks_the_bytes_it_read(tmp_path: Path, monkeypatch):
    from bench import bucket, lake

    monkeypatch.setattr(lake, "IMAGE_SHAPE", (1, 18, 32))  # that it runs matters here, not the sizes

    result = bucket.main(["--trials", "16", "--neurons", "8", "--repeat", "1", "--warm", "1", "--workers", "0",
                          "--out", str(tmp_path)])
    targets = result["targets"]
    assert list(targets) == [bucket.FOLDER, bucket.BUCKET, bucket.DELAYED]
    for name, measures in targets.items():
        assert list(measures) == list(bucket.MEASURES), name
        assert all(got["median"] > 0 and got["ratio"] > 0 for got in measures.values()), name
    assert result["checked"] == 2 * 5  # five digests per bucket target, each equal to the folder's
    delayed = targets[bucket.DELAYED]
    assert delayed["ingest"]["requests"] > 0 and delayed["batch of 128, cold"]["requests"] > 0
    assert delayed["batch of 128, cold"]["median"] >= 0.020  # at least one request's delay
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("bucket-bench-")]  # lakes and caches removed
