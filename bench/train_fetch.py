"""The train-tier fetch of one scan against one ``np.load`` of the same matrix, timed in turns.

    .venv/bin/python -m bench.train_fetch ZIP WORK [--repeat 21]

Ingests ZIP into WORK/lab.duckdb (once), fetches the train tier's responses through
``scandb.connect(db).responses(sql)``, saves them as one ``.npy``, then times the fetch
and the ``np.load`` alternately, ``--repeat`` times each; prints best and median of both
and their ratio. Alternating makes a busy machine slow both sides alike.

To compare versions, run it with another checkout first on the path (its own WORK, since
schema revisions differ), e.g. ``git worktree add /tmp/v02 <commit>`` and
``PYTHONPATH=/tmp/v02 .venv/bin/python -m bench.train_fetch ZIP /tmp/work-v02`` (a
checkout whose migrations live outside the package needs ``ln -s ../migrations
/tmp/v02/scandb/migrations``, since an editable install maps ``scandb.migrations`` to this
one's).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("zip", type=Path, help="a scan (e.g. bench/data/zips/<first>.zip from bench.run)")
    parser.add_argument("work", type=Path, help="folder for the database and the saved matrix")
    parser.add_argument("--repeat", type=int, default=21, help="timings of each side")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    db_path = args.work / "lab.duckdb"
    if not db_path.exists():
        subprocess.run([sys.executable, "-m", "scandb", "ingest", str(args.zip), "--db", str(db_path)], check=True,
                       capture_output=True)
    import scandb

    db = scandb.connect(db_path)
    key = db.sql("SELECT scan_key FROM scans ORDER BY 1").fetchone()[0]
    sql = f"SELECT scan_key, trial_id FROM trials WHERE scan_key = '{key}' AND tier = 'train' ORDER BY trial_id"
    fetched = db.responses(sql)
    single = args.work / "train.npy"
    np.save(single, fetched)
    if not np.array_equal(np.load(single), fetched):
        raise AssertionError("the saved matrix differs from the fetched one")
    ours, theirs = [], []
    for _ in range(args.repeat):
        started = time.perf_counter()
        db.responses(sql)
        ours.append(time.perf_counter() - started)
        started = time.perf_counter()
        np.load(single)
        theirs.append(time.perf_counter() - started)
    result = {"code": scandb.__file__, "shape": list(fetched.shape), "fetch_best_s": min(ours),
              "fetch_median_s": statistics.median(ours), "np_load_best_s": min(theirs),
              "np_load_median_s": statistics.median(theirs), "load_average": os.getloadavg()[0]}
    print(f"{result['code']}: train responses {fetched.shape}: fetch best {min(ours) * 1e3:.1f} ms, median "
          f"{statistics.median(ours) * 1e3:.1f} ms; one np.load best {min(theirs) * 1e3:.1f} ms, median "
          f"{statistics.median(theirs) * 1e3:.1f} ms; ratio {min(ours) / min(theirs):.2f}x best, "
          f"{statistics.median(ours) / statistics.median(theirs):.2f}x median (load {result['load_average']:.1f})")
    return result


if __name__ == "__main__":
    main()
