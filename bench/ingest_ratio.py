"""Ingest against unzip on one zip, alternating, so both sides see the same machine load.

    .venv/bin/python -m bench.ingest_ratio bench/data/zips/static26872-*.zip --rounds 3

Each round extracts the zip with ``unzip`` then ingests it into a fresh database with
reader processes (``--workers 2``, the default for a full-size scan) and in-process
(``--workers 0``); the ratios of each round and their median are printed, with the
CPU each used (cores busy = CPU / wall) and the peak memory of the ingest's process tree
summed over the parent and its workers (proportional set size), sampled every 20 ms.
``--previous`` adds an ingest by an earlier source tree to every round.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from . import measure

INGEST = """
import sys
from pathlib import Path
from scandb.catalog.database import Database
from scandb.ingest import ingest
with Database(Path(sys.argv[2]), read_only=False) as db:
    db.ensure_schema()
    workers = int(sys.argv[3])
    ingest(db, Path(sys.argv[1]), **({"workers": workers} if workers >= 0 else {}))
"""


def tree_pss_mb(pid: int) -> float:
    """Memory of a process and its children (the ingest's workers), as proportional set
    size: a forked worker shares its parent's pages, which plain RSS would count twice."""
    total = 0
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return 0.0
    for p in [str(pid), *children]:
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def timed(argv: list[str], env: dict | None = None, cwd: Path | None = None) -> dict:
    """Wall, CPU (with children) and the peak summed PSS of a process tree."""
    before = os.times()
    started = time.perf_counter()
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=cwd)
    peak = 0.0
    while child.poll() is None:
        peak = max(peak, tree_pss_mb(child.pid))
        time.sleep(0.02)
    wall = time.perf_counter() - started
    after = os.times()
    if child.returncode:
        raise RuntimeError(child.stderr.read().decode()[-500:])
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return {"wall": wall, "cpu": cpu, "cores": cpu / wall, "peak_tree_mb": peak}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("zip", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path("bench/data/ratio"))
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 0], help="reader processes to compare")
    parser.add_argument("--previous", type=Path, default=None,
                        help="also ingest with the scandb source tree in this folder (e.g. `git archive` of an "
                             "earlier commit), for a before/after in the same run")
    args = parser.parse_args(argv)
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    rounds = []
    for n in range(args.rounds):
        row = {"load": measure.load_average()}
        os.sync()
        row["unzip"] = timed(["unzip", "-q", str(args.zip), "-d", str(args.work / "extracted")])
        shutil.rmtree(args.work / "extracted")
        for workers in args.workers:
            os.sync()
            db = args.work / f"w{workers}.duckdb"
            row[f"ingest_w{workers}"] = timed([sys.executable, "-c", INGEST, str(args.zip), str(db), str(workers)])
            db.unlink()
            shutil.rmtree(db.with_suffix(".images"))
        if args.previous:
            os.sync()
            db = args.work / "previous.duckdb"
            env = {**os.environ, "PYTHONPATH": str(args.previous.resolve())}
            # ``python -c`` puts the working directory first on sys.path: run in the earlier
            # tree, or this tree's scandb is imported instead of it
            row["ingest_previous"] = timed([sys.executable, "-c", INGEST, str(args.zip.resolve()), str(db.resolve()), "-1"],
                                           env, cwd=args.previous.resolve())
            db.unlink()
            shutil.rmtree(db.with_suffix(".images"))
        rounds.append(row)
        print(f"round {n + 1}: unzip {row['unzip']['wall']:.2f} s; " + "; ".join(
            f"{k} {v['wall']:.2f} s = {v['wall'] / row['unzip']['wall']:.2f}x unzip, {v['cores']:.2f} cores, "
            f"{v['peak_tree_mb']:.0f} MB" for k, v in row.items() if k.startswith("ingest")), flush=True)
    summary = {f"median ratio {k}": statistics.median(r[k]["wall"] / r["unzip"]["wall"] for r in rounds)
               for k in rounds[0] if k.startswith("ingest")}
    print(json.dumps(summary))
    (args.work / "rounds.json").write_text(json.dumps({"rounds": rounds, "summary": summary}, indent=1))
    return summary


if __name__ == "__main__":
    main()
