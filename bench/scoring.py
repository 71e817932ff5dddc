"""Scoring a model against computing the same metrics by hand; the leaderboard queries.

    .venv/bin/python -m bench.scoring WORK [--zip ZIP] [--scans 7] [--models 10] [--tiny]

1. ``add_predictions`` (a new model each turn) of the test tier of one scan (default: the first full-size benchmark
   scan, 6,000 trials x 8,000 neurons, 1,000 test trials; generated into
   ``bench/data/zips`` if missing), storage and scoring included, against neuralpredictors'
   ``np_functions`` (``corr``, ``fev``) over the same arrays already in memory, as
   sensorium's ``metrics.py`` calls them (single-trial correlation, correlation to average,
   FEV and FEVE). Timed in turns, best and median of ``--repeat``; the scores of both sides
   are compared first.
2. The README's three leaderboard queries and ``db.score_summary(by="area")`` over
   ``--scans`` scans with the full-size neuron counts and ``--models`` models predicting
   every trial (240 trials per scan: the queries read ``neuron_scores``, whose size is
   neurons x models x tiers, not the trials), best of 5 each.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import time
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parents[1] / "README.md"


def neuralpredictors_np():
    import collections
    import collections.abc

    for name in ("Iterable", "Mapping", "MutableMapping", "Sequence", "Callable"):
        if not hasattr(collections, name):  # neuralpredictors 0.3.0 on Python >= 3.10
            setattr(collections, name, getattr(collections.abc, name))
    from neuralpredictors.measures import np_functions

    return np_functions


def by_hand(f, responses: np.ndarray, predictions: np.ndarray, image_ids: np.ndarray) -> dict[str, np.ndarray]:
    """What sensorium's ``Metrics`` computes, over arrays in memory."""
    images = np.unique(image_ids)
    split = lambda x: [x[image_ids == i] for i in images]  # noqa: E731
    means = lambda x: np.vstack([g.mean(axis=0, keepdims=True) for g in split(x)])  # noqa: E731
    fev, feve = f.fev(split(responses), split(predictions), return_exp_var=True)
    return {"single_trial_correlation": f.corr(predictions, responses, axis=0),
            "correlation_to_average": f.corr(means(responses), means(predictions), axis=0), "fev": fev, "feve": feve}


def add_and_score(work: Path, zip_path: Path, repeat: int) -> dict:
    import scandb

    db_path = work / "scoring.duckdb"
    with scandb.connect(db_path, read_only=False) as db:
        db.ingest([zip_path])
        key = db.sql("SELECT scan_key FROM scans ORDER BY 1").fetchone()[0]
        sql = f"SELECT scan_key, trial_id FROM trials WHERE scan_key = '{key}' AND tier = 'test' ORDER BY trial_id"
        responses = db.responses(sql)
        image_ids = db.sql(sql.replace("scan_key, trial_id", "image_id")).to_arrow_table()["image_id"].to_numpy()
        rng = np.random.default_rng(0)
        predictions = (0.5 * responses + rng.normal(scale=0.5, size=responses.shape)).astype(np.float32)
        f = neuralpredictors_np()
        ours, theirs = [], []
        for name in list(db.models()["name"]):
            db.remove_predictions(name)  # an earlier run's
        db.gc(0)
        for turn in range(repeat):  # a new model each turn, as a lab adds them
            started = time.perf_counter()
            db.add_predictions(f"bench-{turn}", sql, predictions)
            ours.append(time.perf_counter() - started)
            started = time.perf_counter()
            by_hand(f, responses, predictions, image_ids)
            theirs.append(time.perf_counter() - started)
        got = db.scores("bench-0", scan=key)
        want = by_hand(f, responses, predictions, image_ids)
        for metric, values in want.items():  # the same float32 computation: the same bits
            np.testing.assert_array_equal(got[metric].to_numpy(dtype=np.float64, na_value=np.nan),
                                          values.astype(np.float64), err_msg=metric)
        for turn in range(repeat):
            db.remove_predictions(f"bench-{turn}")
        db.gc(0)
    return {"shape": list(responses.shape), "add_predictions_best_s": min(ours),
            "add_predictions_median_s": statistics.median(ours), "by_hand_best_s": min(theirs),
            "by_hand_median_s": statistics.median(theirs), "ratio_best": min(ours) / min(theirs),
            "ratio_median": statistics.median(ours) / statistics.median(theirs)}


def leaderboard(work: Path, n_scans: int, n_models: int, tiny: bool) -> dict:
    import scandb
    from scandb.synthetic import generate, write_zip

    from .generate import TINY_IMAGE_SHAPE, scan_specs, sparse_responses

    db_path = work / f"leaderboard-{n_scans}x{n_models}{'-tiny' if tiny else ''}.duckdb"
    if not db_path.exists():
        specs = [s.with_(n_trials=240 if not tiny else 60, image_shape=TINY_IMAGE_SHAPE,
                         n_test_images=10 if not tiny else 2) for s in scan_specs(n_scans, tiny)]
        zips = [write_zip(generate(s, responses=sparse_responses), work / f"{s.name}.zip") for s in specs]
        with scandb.connect(db_path, read_only=False) as db:
            db.ingest(zips)
            for zip_path in zips:
                zip_path.unlink()
            rng = np.random.default_rng(1)
            scans = db.sql("SELECT scan_key, n_trials, n_neurons FROM scans ORDER BY 1").fetchall()
            for m in range(n_models):
                name = "cnn-v3" if m == 0 else "lnp-v1" if m == 1 else f"model-{m}"
                selection = [(key, t) for key, n_trials, _ in scans for t in range(n_trials)]
                given = {}
                for key, n_trials, _ in scans:
                    truth = db.responses(list(range(n_trials)), scan=key)
                    given[key] = (truth * rng.random() + rng.normal(size=truth.shape)).astype(np.float32)
                db.add_predictions(name, selection, given, config={"model": m})
    queries = re.findall(r"```sql\n(.*?)```", README.read_text().split("## Scoring models", 1)[1]
                         .split("\n## ", 1)[0], flags=re.S)
    names = ["per model and area", "ranked on the 500 most reliable", "where cnn-v3 beats lnp-v1"]
    timings = {}
    with scandb.connect(db_path) as db:
        n_rows = db.sql("SELECT count(*) FROM neuron_scores").fetchone()[0]
        for name, query in zip(names, queries):
            timings[name] = _best(lambda: db.sql(query).fetchall())
        timings["score_summary(by='area')"] = _best(lambda: db.score_summary(by="area"))
    return {"scans": n_scans, "models": n_models, "neuron_scores_rows": n_rows, "query_best_s": timings}


def _best(call, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return min(times)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", type=Path, help="folder for the databases")
    parser.add_argument("--zip", type=Path, default=None, help="the scan to score (default: the first benchmark scan)")
    parser.add_argument("--data", type=Path, default=Path("bench/data"), help="where bench.run keeps its zips")
    parser.add_argument("--scans", type=int, default=7)
    parser.add_argument("--models", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--tiny", action="store_true", help="toy sizes (for the tests)")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    zip_path = args.zip
    if zip_path is None:
        from .generate import write_scans

        zip_path = write_scans(args.data / "zips", 1, args.tiny)[0]
    scoring = add_and_score(args.work, zip_path, args.repeat)
    print(f"add_predictions of the test tier {tuple(scoring['shape'])}, stored and scored: best "
          f"{scoring['add_predictions_best_s']:.2f} s, median {scoring['add_predictions_median_s']:.2f} s; "
          f"neuralpredictors' np_functions over arrays in memory: best {scoring['by_hand_best_s']:.2f} s, median "
          f"{scoring['by_hand_median_s']:.2f} s; ratio {scoring['ratio_best']:.2f}x best, "
          f"{scoring['ratio_median']:.2f}x median")
    board = leaderboard(args.work, args.scans, args.models, args.tiny)
    print(f"leaderboard over {board['scans']} scans, {board['models']} models ({board['neuron_scores_rows']:,} "
          "neuron_scores rows), best of 5:")
    for name, seconds in board["query_best_s"].items():
        print(f"  {name}: {seconds * 1e3:.0f} ms")
    result = {"scoring": scoring, "leaderboard": board, "load_average": os.getloadavg()[0]}
    print(f"(load average {result['load_average']:.1f})")
    return result


if __name__ == "__main__":
    main()
