"""The catalog's costs as a lab's lake grows: a PostgreSQL catalog with its data path on an
S3 bucket (moto's server), small scans ingested one by one, measured at 1, 10, 50 and 100.

    .venv/bin/python -m bench.lake_scale [--scans 100 --at 1,10,50,100 --trials 10 --neurons 8]

Per point: attaching the lake (``scandb.connect`` and its first query), one more ingest,
the README's cross-scan query (every response to one image, per scan), ``db.scans()``, the
catalog database's size (``pg_database_size``), its rows of ``ducklake_data_file`` and
``ducklake_snapshot``, and the bucket's objects. The scans are small on purpose: the point
is the catalog, not the arrays. The servers are the tests' (tests/postgres.py, tests/s3.py).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

CROSS_SCAN = """SELECT t.scan_key, count(*) AS trials FROM trials t
WHERE t.image_id = (SELECT min(image_id) FROM trials) GROUP BY ALL ORDER BY ALL"""


def catalog_numbers(conninfo: str) -> dict:
    import psycopg

    with psycopg.connect(conninfo) as conn:
        size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        files = conn.execute("SELECT count(*) FROM ducklake_data_file").fetchone()[0]
        snapshots = conn.execute("SELECT count(*) FROM ducklake_snapshot").fetchone()[0]
    return {"catalog_mb": size / 1e6, "data_files": files, "snapshots": snapshots}


def objects(server, bucket: str) -> int:
    pages = server.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return sum(len(page.get("Contents", [])) for page in pages)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scans", type=int, default=100)
    parser.add_argument("--at", default="1,10,50,100")
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--neurons", type=int, default=8)
    args = parser.parse_args(argv)
    points = sorted({int(n) for n in args.at.split(",") if int(n) <= args.scans})

    import scandb
    from scandb.synthetic import ScanSpec, generate, write_zip
    from tests.postgres import PostgresServer
    from tests.s3 import KEY_ID, REGION, SECRET, MotoServer

    work = Path(tempfile.mkdtemp(prefix="lake-scale-"))
    pg, s3 = PostgresServer(), MotoServer()
    try:
        os.environ.update(AWS_ACCESS_KEY_ID=KEY_ID, AWS_SECRET_ACCESS_KEY=SECRET, AWS_REGION=REGION,
                          AWS_ENDPOINT_URL=s3.endpoint, SCANDB_CACHE=str(work / "cache"))
        bucket = s3.bucket()
        conninfo = pg.database()
        url, data = f"ducklake:postgres:{conninfo}", f"s3://{bucket}/lab"
        print(f"{'scans':>5} {'attach s':>8} {'ingest s':>8} {'query s':>8} {'scans() s':>9} "
              f"{'catalog MB':>10} {'files':>6} {'snaps':>6} {'objects':>7}", flush=True)
        for n in range(1, args.scans + 1):
            spec = ScanSpec(animal_id=50000 + n, seed=n, n_trials=args.trials, n_neurons=args.neurons)
            scan = write_zip(generate(spec), work / f"{spec.name}.zip")
            start = time.perf_counter()
            with scandb.connect(url, read_only=False, data_path=data if n == 1 else None) as db:
                db.ingest([scan])
            ingest_s = time.perf_counter() - start
            scan.unlink()
            if n not in points:
                continue
            start = time.perf_counter()
            with scandb.connect(url) as db:
                db.sql("SELECT 1").fetchall()
                attach_s = time.perf_counter() - start
                start = time.perf_counter()
                db.sql(CROSS_SCAN).fetchall()
                query_s = time.perf_counter() - start
                start = time.perf_counter()
                assert len(db.scans()) == n
                scans_s = time.perf_counter() - start
            found = catalog_numbers(conninfo)
            print(f"{n:>5} {attach_s:>8.2f} {ingest_s:>8.2f} {query_s:>8.2f} {scans_s:>9.2f} "
                  f"{found['catalog_mb']:>10.1f} {found['data_files']:>6} {found['snapshots']:>6} "
                  f"{objects(s3, bucket):>7}", flush=True)
    finally:
        s3.stop()
        pg.stop()
        import shutil
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
