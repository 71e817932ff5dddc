"""Every benchmark in one command; writes BENCHMARKS.md and a plot.

    .venv/bin/python -m bench.run --scans 7 --out bench/data

Generates (or reuses) full-size scans, then on the same files: extracts each zip (the
baseline), ingests it with the scandb CLI (wall time, CPU, peak memory), fetches arrays
through ``scandb.connect`` and the per-file loader neuralpredictors uses, and times the
cross-scan questions in the DuckDB shell. ``--tiny`` runs the same code on toy scans
(the test suite does, so this keeps working); its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from . import baselines, measure, profiles, report, shell
from .generate import scan_specs, write_scans

BATCH = 128


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=int, default=7, help="how many scans (1-7)")
    parser.add_argument("--out", type=Path, default=Path("bench/data"), help="scans and scratch files")
    parser.add_argument("--report", type=Path, default=None,
                        help="where BENCHMARKS.md goes (default: the repository root; --tiny: OUT)")
    parser.add_argument("--tiny", action="store_true", help="toy scans, for the tests")
    parser.add_argument("--repeat", type=int, default=3, help="timings are the best of this many")
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy / cProfile runs")
    args = parser.parse_args(argv)
    report_path = args.report or (args.out / "BENCHMARKS.md" if args.tiny else Path("BENCHMARKS.md"))
    results = run(args.scans, args.out, args.tiny, args.repeat, profile=not args.no_profile)
    results["command"] = "python -m bench.run " + " ".join(argv if argv is not None else sys.argv[1:])
    (args.out / "results.json").write_text(json.dumps(results, indent=1, default=float))
    report.write(results, report_path, report_path.with_suffix(".png"))
    print(f"wrote {report_path} and {report_path.with_suffix('.png')}")
    return report_path


def run(n_scans: int, out: Path, tiny: bool, repeat: int, profile: bool) -> dict:
    started = time.perf_counter()
    zips = write_scans(out / "zips", n_scans, tiny)
    specs = scan_specs(n_scans, tiny)
    work = out / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    results: dict = {"machine": measure.machine(), "load_before": measure.load_average(), "tiny": tiny,
                     "scans": [{"key": s.key, "trials": s.n_trials, "neurons": s.n_neurons,
                                "zip_mb": z.stat().st_size / 1e6} for s, z in zip(specs, zips)]}
    rng = np.random.default_rng(0)
    batch_rows = np.sort(rng.choice(specs[0].n_trials, min(BATCH, specs[0].n_trials), replace=False))
    results["baselines"], train_matrix = _baselines(zips[0], work, batch_rows, repeat)
    results["scaling"] = _ingest_all(zips, specs, work, batch_rows, train_matrix, repeat)
    db = work / "bench.duckdb"
    results["fetch_profile"] = _fetch_profile(db, specs[0].key, batch_rows) if profile else {}
    results["shell"] = _shell(db, work, specs[0].key, repeat)
    results["readme_sql"] = _readme_sql(db, repeat)
    results["ingest_profile"] = (profiles.profile_ingest(
        [sys.executable, "-m", "scandb", "ingest", str(zips[0]), "--db", str(work / "profile.duckdb")],
        work / "ingest-profile") or []) if profile else []
    results["largest_db_gb"] = sum(measure.tree_size(p)[0] for p in (db, work / "bench.images")) / 1e9
    results["load_after"] = measure.load_average()
    results["minutes"] = (time.perf_counter() - started) / 60
    for leftover in ("profile.duckdb", "profile.images", "scratch.duckdb"):
        path = work / leftover
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    return results


def _baselines(zip_path: Path, work: Path, batch_rows: np.ndarray, repeat: int) -> tuple[dict, np.ndarray]:
    """Per-file loading and the single-file limit, on the first scan's extracted folder."""
    root = baselines.extract(zip_path, work / "extracted")
    train = baselines.tier_rows(root, "train")
    matrix = baselines.FileTreeLoop(root, "responses").stack(train)["responses"]
    per_file_train = measure.best_of(lambda: baselines.FileTreeLoop(root, "responses").stack(train), repeat)
    loop = baselines.FileTreeLoop(root, *baselines.DATA_KEYS)
    per_file_batch = measure.best_of(lambda: loop.stack(batch_rows), repeat)
    single = work / "train_responses.npy"
    np.save(single, matrix)
    one_load = measure.best_of(lambda: np.load(single), repeat)
    shutil.rmtree(work / "extracted")
    single.unlink()
    return {"train_shape": list(matrix.shape), "per_file_train": per_file_train,
            "per_file_batch": per_file_batch, "single_npy_train": one_load}, matrix


def _ingest_all(zips: list[Path], specs, work: Path, batch_rows: np.ndarray, train_matrix: np.ndarray,
                repeat: int) -> list[dict]:
    """Extract then ingest each zip in turn into one database; fetch after every scan."""
    db = work / "bench.duckdb"
    rows = []
    zip_total = 0
    for k, (zip_path, spec) in enumerate(zip(zips, specs), start=1):
        extract_times = []
        for _ in range(max(2, repeat)):  # one unzip alone swung 7-34 s on the shared machine
            os.sync()  # start clean: unzip's wall time swung 5-12 s with the previous step's dirty pages
            run = measure.run_process(["unzip", "-q", str(zip_path), "-d", str(work / "extracted")]
                                      if shutil.which("unzip") else
                                      [sys.executable, "-c", "import sys, zipfile; "
                                       "zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])",
                                       str(zip_path), str(work / "extracted")])
            shutil.rmtree(work / "extracted")
            extract_times.append(run.wall)
        os.sync()
        ingest = measure.run_process([sys.executable, "-m", "scandb", "ingest", str(zip_path), "--db", str(db)])
        if ingest.returncode:
            raise RuntimeError(f"ingest of {zip_path} failed: {ingest.output.strip()[-500:]}")
        zip_total += zip_path.stat().st_size
        db_size = measure.tree_size(db)
        store_size = measure.tree_size(work / "bench.images")
        row = {"scans": k, "key": spec.key, "extract": min(extract_times), "ingest": ingest.wall,
               "ingest_cpu": ingest.cpu, "ingest_cores": ingest.cores, "ingest_peak_mb": ingest.peak_rss_mb,
               "zip_mb": zip_total / 1e6, "db_mb": db_size[0] / 1e6, "store_mb": store_size[0] / 1e6,
               "db_disk_mb": db_size[1] / 1e6, "store_disk_mb": store_size[1] / 1e6}
        row.update(_fetch(db, specs[0].key, batch_rows, train_matrix, repeat))
        rows.append(row)
        print(f"[{k}/{len(zips)}] {spec.key}: extract {row['extract']:.2f} s, ingest {row['ingest']:.2f} s "
              f"({row['ingest_cores']:.2f} cores, {row['ingest_peak_mb']:.0f} MB), "
              f"train fetch {row.get('fetch_train', float('nan')):.3f} s", flush=True)
    return rows


def _fetch(db: Path, key: str, batch_rows: np.ndarray, train_matrix: np.ndarray, repeat: int) -> dict:
    """The first scan's train matrix and a random batch through the Python API, checked."""
    try:
        import scandb
        connect = scandb.connect
    except (ImportError, AttributeError):
        return {}
    with connect(db) as sdb:
        train_sql = (f"SELECT scan_key, trial_id FROM trials WHERE scan_key = '{key}' AND tier = 'train' "
                     "ORDER BY trial_id")
        got = sdb.responses(train_sql)
        if not np.array_equal(got, train_matrix):
            raise AssertionError("fetched train responses differ from the per-file loader's")
        pairs = [(key, int(i)) for i in batch_rows]
        batch = sdb.fetch(pairs, "images", "responses", "behavior", "pupil_center")
        if batch["responses"].shape != (len(pairs), train_matrix.shape[1]):
            raise AssertionError(f"batch responses have shape {batch['responses'].shape}")
        best_train, first_train = measure.best_of(lambda: sdb.responses(train_sql), repeat)
        best_batch, first_batch = measure.best_of(
            lambda: sdb.fetch(pairs, "images", "responses", "behavior", "pupil_center"), repeat)
        raw = measure.best_of(lambda: sdb.conn.execute(
            f"SELECT r.response FROM responses r JOIN trials t USING (scan_key, trial_id) "
            f"WHERE t.scan_key = '{key}' AND t.tier = 'train' ORDER BY t.trial_id").to_arrow_reader(2048).read_all(),
            repeat)
    return {"fetch_train": best_train, "fetch_train_first": first_train, "fetch_batch": best_batch,
            "fetch_batch_first": first_batch, "sql_arrow_train": raw[0]}


def _fetch_profile(db: Path, key: str, batch_rows: np.ndarray) -> dict[str, list[str]]:
    """cProfile of the two fetches (after a warm-up call), with every scan in the database."""
    try:
        import scandb
        connect = scandb.connect
    except (ImportError, AttributeError):
        return {}
    with connect(db) as sdb:
        sql = f"SELECT scan_key, trial_id FROM trials WHERE scan_key = '{key}' AND tier = 'train' ORDER BY trial_id"
        pairs = [(key, int(i)) for i in batch_rows]
        sdb.responses(sql)
        sdb.fetch(pairs)
        return {"db.responses(train tier of one scan)": profiles.profile_call(lambda: sdb.responses(sql)),
                "db.fetch(128 random trials, 4 keys)": profiles.profile_call(lambda: sdb.fetch(pairs))}


def _shell(db: Path, work: Path, first_scan: str, repeat: int) -> list[dict]:
    cli = shutil.which("duckdb", path=str(Path(sys.executable).parent)) or shutil.which("duckdb")
    if not cli:
        return []
    image_id = 0  # a test image: shown ~10 times in every scan
    rows = []
    for query in shell.queries(first_scan, image_id):
        slow = query.scans == "1"
        best, first = shell.shell_time(cli, db, query.sql, repeat=1 if slow else repeat)
        rows.append({"option": query.name, "question": query.question, "scans": query.scans,
                     "best": best, "first": first})
        print(f"shell: {query.question} / {query.name}: {best:.3f} s", flush=True)
    return rows


def _readme_sql(db: Path, repeat: int) -> list[dict]:
    """Every SQL statement of the README, timed in the DuckDB shell on the benchmark database."""
    cli = shutil.which("duckdb", path=str(Path(sys.executable).parent)) or shutil.which("duckdb")
    readme = Path(__file__).resolve().parents[1] / "README.md"
    if not cli or not readme.exists():
        return []
    rows = []
    for comment, setup, sql in shell.readme_queries(readme):
        best, first = shell.shell_time(cli, db, sql, repeat=min(repeat, 2), timeout=shell.SLOW_LIMIT, setup=setup)
        rows.append({"comment": comment, "sql": sql, "best": best, "first": first})
        print(f"README sql: {' '.join(sql.split())[:70]}: {best:.3f} s", flush=True)
    return rows


if __name__ == "__main__":
    main()
