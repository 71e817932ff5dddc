"""What the query layer adds to a batch: scandb fetches against the per-file loop, same run.

    .venv/bin/python -m bench.query_overhead [--trials 2000 --neurons 4000 --repeat 7]

Writes one scan (unzipped too), ingests it, then times a random batch of 128 trials (all
four keys) through ``ScanDB.fetch`` with each kind of selection, through
``ScanDataset.__getitems__``, and through the loop neuralpredictors' ``FileTreeDataset``
runs (``bench.baselines.FileTreeLoop``), the baseline of every ratio printed. Also the
first scan's train responses through ``db.responses``, against one ``np.load`` of the
source matrix. Times are the best of ``--repeat`` calls after a warm-up.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from . import baselines, measure

BATCH = 128


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--neurons", type=int, default=4000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)

    import pyarrow as pa

    import scandb
    from scandb.synthetic import ScanSpec, write_folder

    from .generate import generate_scan

    with tempfile.TemporaryDirectory() as tmp:
        spec = ScanSpec(n_trials=args.trials, n_neurons=args.neurons, image_shape=(1, 144, 256))
        folder = write_folder(generate_scan(spec), Path(tmp) / spec.name)
        with scandb.connect(Path(tmp) / "q.duckdb", read_only=False) as db:
            db.ingest(folder)
        rows = np.sort(np.random.default_rng(0).choice(spec.n_trials, BATCH, replace=False))
        pairs = [(spec.key, int(i)) for i in rows]
        table = pa.table({"scan_key": [spec.key] * BATCH, "trial_id": rows})
        loop = baselines.FileTreeLoop(folder, *baselines.DATA_KEYS)
        train = baselines.tier_rows(folder, "train")
        matrix = np.stack([np.load(folder / f"data/responses/{i}.npy") for i in range(spec.n_trials)])
        np.save(Path(tmp) / "matrix.npy", matrix)

        with scandb.connect(Path(tmp) / "q.duckdb") as db:
            timed = {
                "per-file loop (baseline)": lambda: loop.stack(rows),
                "fetch(pairs)": lambda: db.fetch(pairs),
                "fetch(Arrow table)": lambda: db.fetch(table),
                "fetch(trial ids, scan=)": lambda: db.fetch(rows, scan=spec.key),
            }
            try:
                from scandb.torchdata import ScanDataset
                dataset = ScanDataset(Path(tmp) / "q.duckdb", pairs, normalize=False, image_dtype=None)
                timed["ScanDataset.__getitems__"] = lambda: dataset.__getitems__(range(BATCH))
            except ImportError:
                pass
            results = {}
            for name, call in timed.items():
                call()
                results[name] = measure.best_of(call, args.repeat)[0]
            base = results["per-file loop (baseline)"]
            print(f"batch of {BATCH} of {spec.n_trials} x {spec.n_neurons}, best of {args.repeat}:")
            for name, seconds in results.items():
                print(f"  {name:28s} {seconds * 1e3:8.2f} ms   {seconds / base:5.2f}x baseline")
            select = f"SELECT scan_key, trial_id FROM trials WHERE scan_key = '{spec.key}' AND tier = 'train'"
            got = db.responses(select)
            np.testing.assert_array_equal(got, matrix[train])
            one_load = measure.best_of(lambda: np.load(Path(tmp) / "matrix.npy")[train], args.repeat)[0]
            responses = measure.best_of(lambda: db.responses(select), args.repeat)[0]
            print(f"train responses ({len(train)} x {spec.n_neurons}): np.load + index {one_load * 1e3:.1f} ms, "
                  f"db.responses {responses * 1e3:.1f} ms ({responses / one_load:.2f}x)")


if __name__ == "__main__":
    main()
