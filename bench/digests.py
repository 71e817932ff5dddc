"""What recording and checking per-scan digests costs, against ingest and unzip in the same run.

    .venv/bin/python -m bench.digests --out bench/data

Generates (or reuses) the first full-size benchmark scan, extracts it with ``unzip`` (the
baseline), ingests it in this process with the time spent in ``record_digests`` (inside
the ingest transaction) measured apart, then times each digest part and a whole
``verify``. ``--tiny`` runs the same code on a toy scan; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np

from scandb.catalog import registry
from scandb.catalog.database import Database
from scandb.ingest import writer
from scandb.maintenance import consistency, digests
from scandb.maintenance.verify import verify

from . import baselines, measure
from .generate import scan_specs, write_scans


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/data"), help="scans and scratch files")
    parser.add_argument("--tiny", action="store_true", help="a toy scan, for the tests")
    args = parser.parse_args(argv)
    results = run(args.out, args.tiny)
    (args.out / "digests.json").write_text(json.dumps(results, indent=1))
    print(text(results))
    return results


def run(out: Path, tiny: bool) -> dict:
    zip_path = write_scans(out / "zips", 1, tiny)[0]
    spec = scan_specs(1, tiny)[0]
    work = out / "digests-work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    results = {"scan": f"{spec.n_trials} trials x {spec.n_neurons} neurons", "load_before": measure.load_average()}

    started = time.perf_counter()
    baselines.extract(zip_path, work / "unzipped")
    results["unzip"] = time.perf_counter() - started
    shutil.rmtree(work / "unzipped")

    recording = []
    record = writer.record_digests

    def timed_record(db, scan_key, matrix_rows=None):
        started = time.perf_counter()
        record(db, scan_key, matrix_rows)
        recording.append(time.perf_counter() - started)

    writer.record_digests = timed_record
    try:
        with Database(work / "lab.duckdb", read_only=False) as db:
            db.ensure_schema()
            started = time.perf_counter()
            writer.ingest(db, zip_path)
            results["ingest"] = time.perf_counter() - started
    finally:
        writer.record_digests = record
    results["record_digests"] = recording[0]

    with Database(work / "lab.duckdb") as db:
        results["parts"] = _part_times(db, spec.key)
        started = time.perf_counter()
        report = verify(db)
        results["verify"] = time.perf_counter() - started
        results["verify_ok"] = report.ok
        results["n_image_files"] = report.n_images
    results["load_after"] = measure.load_average()
    shutil.rmtree(work)
    return results


def _part_times(db: Database, scan_key: str) -> dict[str, float]:
    """Seconds to recompute each digest of the scan (best of 3); ``responses`` hashes the
    response lists too, which the recorded ``responses except values`` leaves to the
    matrix comparison."""
    times = {}
    method = digests.table_method(db.conn)

    def hash_rows(table: str, rows: str, columns: list[str]) -> None:
        hashed = ", ".join(digests.quote_identifier(c) for c in columns)
        db.conn.execute(f"SELECT count(*), sum(hash({hashed})) FROM {table} WHERE {rows}", [scan_key]).fetchall()

    for entry in registry.digested():
        table, rows = entry.name, entry.rows
        columns = digests.table_columns(db.conn, table)
        times[table] = measure.best_of(lambda: hash_rows(table, rows, columns))[0]
        if table == "responses":
            without = [c for c in columns if c != "response"]
            times[digests.RESPONSE_IDS_PART] = measure.best_of(lambda: hash_rows(table, rows, without))[0]
    times[digests.MATRIX_PART] = measure.best_of(
        lambda: digests.matrix_digest(db.conn, scan_key, db.store))[0]
    times["all parts as recorded"] = measure.best_of(
        lambda: digests.scan_digests(db.conn, scan_key, db.store, method))[0]
    matrix_path = db.store.path(db.conn.execute(
        "SELECT path FROM response_matrices WHERE scan_key = ?", [scan_key]).fetchone()[0])
    matrix = np.load(matrix_path, mmap_mode="r")
    times["responses = matrix (verify)"] = measure.best_of(
        lambda: consistency.trials_differing(db, scan_key, matrix))[0]
    return times


def text(r: dict) -> str:
    lines = [f"scan: {r['scan']}; load average before {r['load_before']}, after {r['load_after']}",
             f"unzip {r['unzip']:.2f} s; ingest {r['ingest']:.2f} s ({r['ingest'] / r['unzip']:.2f}x unzip)",
             f"record_digests inside the ingest: {r['record_digests']:.2f} s "
             f"({100 * r['record_digests'] / r['ingest']:.1f}% of the ingest)",
             f"verify (digests, {r['n_image_files']:,} image files rehashed, consistency): {r['verify']:.2f} s "
             f"({r['verify'] / r['unzip']:.2f}x unzip), ok={r['verify_ok']}",
             "digest recomputation per part, best of 3:"]
    lines += [f"  {part:<28} {seconds:7.3f} s" for part, seconds in r["parts"].items()]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
