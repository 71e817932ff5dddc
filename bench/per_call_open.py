"""What opening the file per call costs a reader, against a connection held open, same run.

    .venv/bin/python -m bench.per_call_open [--trials 2000 --neurons 4000 --repeat 15]

``scandb.connect()`` opens the database file only while a call runs, so an idle reader
never blocks an ingest. This times, on one ingested scan, a batch of 128 trials (all four
keys) and a small SQL query through ``scandb.connect()`` against the same calls on a
``ScanDB`` whose file stays open (the baseline of each ratio). Times are the best of
``--repeat`` calls after a warm-up; the median is printed too.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import numpy as np

from .measure import timings

BATCH = 128


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--neurons", type=int, default=4000)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args(argv)

    import scandb
    from scandb.api import ScanDB
    from scandb.catalog.database import Database
    from scandb.synthetic import ScanSpec, write_folder

    from .generate import generate_scan

    with tempfile.TemporaryDirectory() as tmp:
        spec = ScanSpec(n_trials=args.trials, n_neurons=args.neurons, image_shape=(1, 144, 256))
        folder = write_folder(generate_scan(spec), Path(tmp) / spec.name)
        path = Path(tmp) / "q.duckdb"
        with scandb.connect(path, read_only=False) as db:
            db.ingest(folder)
        rows = np.sort(np.random.default_rng(0).choice(spec.n_trials, BATCH, replace=False))
        count = "SELECT tier, count(*) FROM trials GROUP BY tier"
        results = {}
        # one at a time: a connection held open while the other opens per call would let
        # DuckDB's instance cache serve the per-call opens (no file open at all)
        for name, make in (("opened per call", lambda: scandb.connect(path)),
                           ("held open (baseline)", lambda: ScanDB(Database(path, read_only=True)))):
            with make() as db:
                results[name] = {"fetch 128 trials": timings(lambda: db.fetch(rows, scan=spec.key), args.repeat),
                                 "small SQL query": timings(lambda: db.run(count), args.repeat)}
        results = {name: results[name] for name in ("held open (baseline)", "opened per call")}
    base = results["held open (baseline)"]
    print(f"{spec.n_trials} x {spec.n_neurons} scan, best and median of {args.repeat}:")
    for name, calls in results.items():
        for call, seconds in calls.items():
            best, median = min(seconds), statistics.median(seconds)
            ratio = best / min(base[call])
            print(f"  {name:22s} {call:18s} best {best * 1e3:7.2f} ms  median {median * 1e3:7.2f} ms  "
                  f"{ratio:5.2f}x baseline")


if __name__ == "__main__":
    main()
