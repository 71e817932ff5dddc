"""What finding the files every kept snapshot references costs ``gc`` (and each write's
orphan collection) on a lake, against asking every snapshot in turn, same run.

    .venv/bin/python -m bench.snapshot_refs [--scans 4 --replaces 3 --trials 500 --repeat 5]

Builds a lake with a SQLite catalog, ingests ``--scans`` scans and replaces each one
``--replaces`` times (other content each time), then times the set of image hashes any
snapshot references two ways: scandb's (the rows at the oldest snapshot plus every row
inserted since, from DuckLake's change feed) and the baseline, one ``AT (VERSION => n)``
query per snapshot. Both must give the same set. Best of ``--repeat``, median printed too.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from .measure import timings_and_result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=int, default=4)
    parser.add_argument("--replaces", type=int, default=3)
    parser.add_argument("--trials", type=int, default=500)
    parser.add_argument("--neurons", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)

    import duckdb

    import scandb
    from scandb.catalog import snapshots
    from scandb.catalog.database import Database
    from scandb.synthetic import ScanSpec, generate, write_zip

    with tempfile.TemporaryDirectory() as tmp:
        lake = f"ducklake:sqlite:{tmp}/catalog.sqlite"
        started = time.perf_counter()
        with scandb.connect(lake, read_only=False, data_path=Path(tmp) / "data") as db:
            for version in range(args.replaces + 1):
                for animal in range(args.scans):
                    spec = ScanSpec(animal_id=70000 + animal, seed=100 * version + animal, n_trials=args.trials,
                                    n_neurons=args.neurons, image_shape=(1, 36, 64))
                    db.ingest(write_zip(generate(spec), Path(tmp) / f"{animal}-{version}.zip"), replace=version > 0)
        built = time.perf_counter() - started
        with Database(lake) as db:
            ids = snapshots.snapshot_ids(db.conn)

            def change_feed():
                return snapshots.referenced_since(db.conn, "images", "image_hash", ids[0])

            def every_snapshot():
                found = set()
                for n in ids:
                    try:
                        found |= {r[0] for r in db.conn.execute(
                            f"SELECT image_hash FROM images AT (VERSION => {n})").fetchall()}
                    except duckdb.CatalogException:
                        pass
                return found

            base, expected = timings_and_result(every_snapshot, args.repeat)
            ours, got = timings_and_result(change_feed, args.repeat)
        assert got == expected, "the two ways disagree"
        print(f"lake: {args.scans} scans x {args.replaces + 1} versions, {len(ids)} snapshots, "
              f"{len(expected)} image hashes referenced (built in {built:.0f} s)")
        for name, values in (("one query per snapshot (baseline)", base), ("change feed (scandb)", ours)):
            print(f"  {name:36s} best {min(values) * 1e3:7.1f} ms  median {statistics.median(values) * 1e3:7.1f} ms")
        print(f"  ratio (change feed / baseline, best): {min(ours) / min(base):.2f}")


if __name__ == "__main__":
    main()
