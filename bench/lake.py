"""A lake against the file, same run: ingest, fetch latency, and a reader's batch latency
while two ingests run.

    .venv/bin/python -m bench.lake [--trials 6000 --neurons 8000 --repeat 9 --catalogs sqlite,postgres]

Three scans are written once under ``--out`` (kept for later runs). Each target (the file,
a lake with a SQLite catalog, one with a PostgreSQL catalog: a private server started as
the tests start it) gets the first scan ingested (timed), then:

- fetch: the first scan's whole train tier (responses) and a batch of 128 random trials
  (all four keys), best and median of ``--repeat`` after a warm-up and ``QUIET_S``, the
  targets taking turns call by call; ratio to the file;
- under load (lakes only: on a file an ingest cannot run beside a reader at all): batches
  of 128 read back to back by this process, idle and then while two other processes ingest
  the other two scans; p50/p99 and the ratio loaded/idle.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .measure import timings

BATCH = 128
IMAGE_SHAPE = (1, 144, 256)
"""The scans' images: the size of Sensorium 2022's (the harness's own test makes them smaller)."""
INGEST_NICE = 10
"""The ingests under load run at ``scandb ingest``'s default priority, as a lab's would."""

QUIET_S = 0.5
"""Fetches are timed this long after the warm-up: a reader's state between commits (a
SQLite catalog is asked again only once its files changed since a quiet moment,
catalog/newest.py; the load phase below includes the calls right after commits)."""


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def write_scans(out: Path, trials: int, neurons: int, count: int = 3) -> list[Path]:
    """``count`` (up to 3) synthetic scans of this size as zips under ``out``, made once."""
    from scandb.synthetic import ScanSpec, write_zip

    from .generate import generate_scan

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, animal in enumerate((61001, 62002, 63003)[:count]):
        spec = ScanSpec(animal_id=animal, seed=i, n_trials=trials, n_neurons=neurons, image_shape=IMAGE_SHAPE)
        path = out / f"{spec.name}.zip"
        if not path.exists():
            write_zip(generate_scan(spec), path.with_suffix(".part"))
            path.with_suffix(".part").rename(path)
        paths.append(path)
    return paths


def ingest_seconds(target: str, scan: Path, data_path: Path | None) -> float:
    import scandb

    started = time.perf_counter()
    with scandb.connect(target, read_only=False, data_path=data_path) as db:
        db.ingest(scan)
    return time.perf_counter() - started


def fetch_rounds(targets: dict[str, str], scan_key: str, repeat: int) -> dict[str, dict[str, list[float]]]:
    """Each call timed ``repeat`` times on every target, the targets taking turns (in
    alternating order) so that all of them see the same machine, page cache and heap."""
    import scandb

    dbs = {name: scandb.connect(target) for name, target in targets.items()}
    try:
        any_db = next(iter(dbs.values()))
        n_trials = any_db.conn.execute("SELECT n_trials FROM scans WHERE scan_key = ?", [scan_key]).fetchone()[0]
        train = f"SELECT scan_key, trial_id FROM trials WHERE scan_key = '{scan_key}' AND tier = 'train' ORDER BY 2"
        rng = np.random.default_rng(0)
        calls = {"train matrix": lambda db, rows: db.fetch(train, "responses"),
                 "batch of 128": lambda db, rows: db.fetch(rows, scan=scan_key)}
        out = {name: {call: [] for call in calls} for name in dbs}
        for call, run in calls.items():
            for db in dbs.values():  # warm-up
                run(db, np.arange(BATCH))
            time.sleep(QUIET_S)
            for i in range(repeat):
                rows = np.sort(rng.choice(n_trials, BATCH, replace=False))
                order = list(dbs.items()) if i % 2 == 0 else list(dbs.items())[::-1]
                for name, db in order:
                    started = time.perf_counter()
                    run(db, rows)
                    out[name][call].append(time.perf_counter() - started)
        return out
    finally:
        for db in dbs.values():
            db.close()


def batches_while(target: str, scan_key: str, running) -> list[float]:
    """Latencies of back-to-back batches of 128 while ``running()`` is true (at least 20)."""
    import scandb

    out = []
    with scandb.connect(target) as db:
        n_trials = db.conn.execute("SELECT n_trials FROM scans WHERE scan_key = ?", [scan_key]).fetchone()[0]
        rng = np.random.default_rng(1)
        db.fetch(np.arange(BATCH), scan=scan_key)
        while running() or len(out) < 20:
            rows = np.sort(rng.choice(n_trials, BATCH, replace=False))
            started = time.perf_counter()
            db.fetch(rows, scan=scan_key)
            out.append(time.perf_counter() - started)
    return out


def open_timings(target: str, repeat: int) -> list[float]:
    """Opening the database and one small query: what each short-lived command pays."""
    import scandb

    def once():
        with scandb.connect(target) as db:
            db.run("SELECT count(*) FROM scans")
    return timings(once, repeat)


def under_load(target: str, scan_key: str, others: list[Path], idle_seconds: float) -> dict[str, list[float]]:
    deadline = time.monotonic() + idle_seconds
    idle = batches_while(target, scan_key, lambda: time.monotonic() < deadline)
    started = time.perf_counter()
    ingests = [subprocess.Popen([sys.executable, "-m", "scandb", "ingest", str(p), "--db", target,
                                 "--nice", str(INGEST_NICE)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for p in others]
    loaded = batches_while(target, scan_key, lambda: any(p.poll() is None for p in ingests))
    retries = 0
    for p in ingests:
        p.wait()
        err = p.stderr.read()
        if p.returncode != 0:
            raise SystemExit(f"ingest beside the reader failed: {err}")
        retries += err.count("retrying")
    wall = time.perf_counter() - started
    burners = [subprocess.Popen([sys.executable, "-c", BURN]) for _ in others]
    try:
        deadline = time.monotonic() + wall
        burning = batches_while(target, scan_key, lambda: time.monotonic() < deadline)
    finally:
        for p in burners:
            p.kill()
            p.wait()
    return {"idle": idle, "two ingests": loaded, "two CPU burners": burning, "wall": wall, "retries": retries}


BURN = "while True: pass"
"""The control: two processes that only use CPU, for as long as the two ingests ran. On a
machine with two cores the reader's latency under them is what CPU sharing alone costs."""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6000)
    parser.add_argument("--neurons", type=int, default=8000)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--catalogs", default="sqlite,postgres")
    parser.add_argument("--out", type=Path, default=Path("bench/data/lake"))
    args = parser.parse_args(argv)

    from scandb.source.scan import open_scan

    scans = write_scans(args.out / f"{args.trials}x{args.neurons}", args.trials, args.neurons)
    with open_scan(scans[0]) as opened:
        first_key = opened.key
    catalogs = [c for c in args.catalogs.split(",") if c]
    server = None
    work = Path(tempfile.mkdtemp(prefix="lake-bench-", dir=args.out))
    try:
        targets = {"file": (str(work / "file.duckdb"), None)}
        if "sqlite" in catalogs:
            targets["lake, SQLite catalog"] = (f"ducklake:sqlite:{work / 'catalog.sqlite'}", work / "sqlite-data")
        if "postgres" in catalogs:
            from tests.postgres import PostgresServer

            server = PostgresServer()
            targets["lake, PostgreSQL catalog"] = (f"ducklake:postgres:{server.database()}", work / "pg-data")
        ingest, load, opening = {}, {}, {}
        for name, (target, data_path) in targets.items():
            ingest[name] = ingest_seconds(target, scans[0], data_path)
        fetch = fetch_rounds({name: target for name, (target, _) in targets.items()}, first_key, args.repeat)
        for name, (target, _) in targets.items():
            opening[name] = open_timings(target, args.repeat)
        for name, (target, _) in targets.items():
            if name != "file":
                load[name] = under_load(target, first_key, scans[1:], args.idle_seconds)
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)

    print(f"{args.trials} x {args.neurons} scans; best and median of {args.repeat} after a warm-up")
    print("ingest of one scan:")
    for name, seconds in ingest.items():
        print(f"  {name:26s} {seconds:7.2f} s  {seconds / ingest['file']:5.2f}x file")
    for call in ("train matrix", "batch of 128"):
        print(f"fetch, {call}:")
        for name, calls in fetch.items():
            best, median = min(calls[call]), statistics.median(calls[call])
            print(f"  {name:26s} best {best * 1e3:8.2f} ms  median {median * 1e3:8.2f} ms  "
                  f"{best / min(fetch['file'][call]):5.2f}x file (best)  "
                  f"{median / statistics.median(fetch['file'][call]):5.2f}x file (median)")
    print("open + one small query (a short command's cost):")
    for name, seconds in opening.items():
        print(f"  {name:26s} best {min(seconds) * 1e3:8.1f} ms  median {statistics.median(seconds) * 1e3:8.1f} ms")
    print("a reader's batches of 128: idle, while two other processes ingest, while two processes only burn CPU:")
    for name, runs in load.items():
        idle = runs["idle"]
        print(f"  {name}:")
        for state in ("idle", "two ingests", "two CPU burners"):
            got = runs[state]
            print(f"    {state:16s} p50 {percentile(got, 50) * 1e3:7.2f} ms  p99 {percentile(got, 99) * 1e3:7.2f} ms "
                  f"({len(got):4d} batches)  {percentile(got, 50) / percentile(idle, 50):5.2f}x / "
                  f"{percentile(got, 99) / percentile(idle, 99):5.2f}x idle")
        print(f"    the two ingests took {runs['wall']:.1f} s together ({runs['retries']} retried); "
              f"one alone took {ingest[name]:.1f} s")


if __name__ == "__main__":
    main()
