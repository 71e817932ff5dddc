"""A lake on an S3 bucket against the same lake on a local folder, same run: ingest, fetches
cold and warm, a ScanDataset epoch cold and warm.

    .venv/bin/python -m bench.bucket [--trials 2000 --neurons 8000 --repeat 3 --delay-ms 20 --workers 2]

One scan is written once under ``--out`` (kept for later runs). Three targets, each a lake
with a SQLite catalog (``ducklake:sqlite:FILE``), in one process, taking turns (in
alternating order, round by round):

- folder: its data path a local folder;
- bucket: its data path on moto's S3 server (started as the tests start it, tests/s3.py);
- bucket + delay: the same server behind ``delay_proxy.ProxyProcess``, which waits
  ``--delay-ms`` before forwarding every request: scandb's objects, and DuckLake's Parquet
  files too (DuckDB's httpfs uses the same endpoint), so every SQL query pays it.

Each round ingests the scan into a new lake of each target (timed; ``SCANDB_CACHE`` a new
folder), then reads the first round's lakes, each phase with a new connection and a new,
empty cache:

- the train tier's responses (``db.fetch(sql, "responses")``): the first fetch (cold), then
  ``--warm`` more after a warm-up (warm, median);
- a batch of 128 random trials, all four keys: cold; then, once every image of the scan is
  cached, ``--warm`` other random batches (warm, median);
- ``ScanDataset`` over the train tier in a DataLoader (batch 128, shuffled, ``--workers``
  workers): making the dataset plus epoch 1 (cold), epoch 2 (warm).

Every array read from a bucket is checked against the folder's in the same round: sha256
of each fetch, and a CRC-32 of each epoch's batches in order (the loaders share a seed).
Ratios are of medians over ``--repeat`` rounds, to the folder's.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .lake import BATCH, ingest_seconds, write_scans

KEYS = ("images", "responses", "behavior", "pupil_center")
FOLDER, BUCKET, DELAYED = "folder", "bucket", "bucket + delay"
MEASURES = ("ingest", "train matrix, cold", "train matrix, warm", "batch of 128, cold", "batch of 128, warm",
            "epoch 1, cold (incl. making the dataset)", "epoch 2, warm")
GOALS = {"ingest": 1.5, "train matrix, warm": 1.2, "batch of 128, warm": 1.2, "epoch 2, warm": 1.2}
"""The issue's targets, as the largest ratio to the folder."""


@dataclass
class Target:
    name: str
    work: Path
    bucket: str | None
    """The ``s3://bucket`` its lakes' data live in; None: a local folder."""
    env: dict[str, str | None] = field(default_factory=dict)
    """The environment of its turn (``AWS_*``; None unsets)."""

    def lake(self, round_: int) -> tuple[str, str]:
        """This round's lake: the catalog's attach string and the data path."""
        folder = self.work / f"{self.name.replace(' ', '').replace('+', '-')}-{round_}"
        folder.mkdir(parents=True, exist_ok=True)
        data = f"{self.bucket}/r{round_}" if self.bucket else str(folder / "data")
        return f"ducklake:sqlite:{folder / 'catalog.sqlite'}", data


@contextmanager
def environment(values: dict[str, str | None]):
    """``values`` in ``os.environ`` (None: unset) for the block, then as they were."""
    before = {name: os.environ.get(name) for name in values}
    try:
        _set(values)
        yield
    finally:
        _set(before)


def _set(values: dict[str, str | None]) -> None:
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@contextmanager
def empty_cache(work: Path):
    """A new, empty ``SCANDB_CACHE`` for the block (removed after): what cold means."""
    folder = Path(tempfile.mkdtemp(prefix="cache-", dir=work))
    try:
        with environment({"SCANDB_CACHE": str(folder)}):
            yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class Record:
    """Timings by measure (a list each) and the requests the proxy forwarded meanwhile."""

    def __init__(self, requests: Callable[[], int]):
        self.times: dict[str, list[float]] = defaultdict(list)
        self.requests: dict[str, int] = defaultdict(int)
        self.digests: dict[str, str | int] = {}
        self._requests = requests

    @contextmanager
    def measure(self, name: str):
        before, started = self._requests(), time.perf_counter()
        yield
        self.times[name].append(time.perf_counter() - started)
        self.requests[name] += self._requests() - before


def digest(arrays: dict[str, np.ndarray]) -> str:
    found = hashlib.sha256()
    for key in sorted(arrays):
        array = np.ascontiguousarray(arrays[key])
        found.update(f"{key} {array.dtype} {array.shape}".encode())
        found.update(array.data)
    return found.hexdigest()


def read_phases(url: str, scan_key: str, seed: int, warm: int, workers: int, work: Path, record: Record) -> None:
    """The three read phases on one lake, each from a new connection and an empty cache."""
    import scandb

    train = f"SELECT scan_key, trial_id FROM trials WHERE scan_key = '{scan_key}' AND tier = 'train' ORDER BY 2"
    with empty_cache(work), scandb.connect(url) as db:
        with record.measure("train matrix, cold"):
            got = db.fetch(train, "responses")
        record.digests["train matrix"] = digest(got)
        db.fetch(train, "responses")
        for _ in range(warm):
            with record.measure("train matrix, warm"):
                db.fetch(train, "responses")

    rng = np.random.default_rng(seed)
    with empty_cache(work), scandb.connect(url) as db:
        n_trials = db.sql(f"SELECT n_trials FROM scans WHERE scan_key = '{scan_key}'").fetchone()[0]
        with record.measure("batch of 128, cold"):
            got = db.fetch(random_rows(rng, n_trials), scan=scan_key)
        record.digests["batch of 128, cold"] = digest(got)
        db.fetch(np.arange(n_trials), "images", scan=scan_key)  # every object cached: what warm means
        warm_batches = hashlib.sha256()
        for _ in range(warm):
            with record.measure("batch of 128, warm"):
                got = db.fetch(random_rows(rng, n_trials), scan=scan_key)
            warm_batches.update(digest(got).encode())
        record.digests["batches of 128, warm"] = warm_batches.hexdigest()

    with empty_cache(work):
        epochs(url, train, seed, workers, record)


def random_rows(rng: np.random.Generator, n_trials: int) -> np.ndarray:
    return np.sort(rng.choice(n_trials, min(BATCH, n_trials), replace=False))


def epochs(url: str, train: str, seed: int, workers: int, record: Record) -> None:
    """Make a ``ScanDataset`` and run two epochs of it; the batches' CRC-32, in order."""
    import torch
    from isal.isal_zlib import crc32

    from scandb.torchdata import ScanDataset

    names = ("epoch 1, cold (incl. making the dataset)", "epoch 2, warm")
    with record.measure(names[0]):
        dataset = ScanDataset(url, train, KEYS, normalize=False, image_dtype=None)
        loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH, shuffle=True, num_workers=workers,
                                             persistent_workers=workers > 0,
                                             generator=torch.Generator().manual_seed(seed))
    for name in names:
        crc = items = 0
        with record.measure(name):
            for batch in loader:
                items += len(batch[0])
                for tensor in batch:
                    crc = crc32(np.ascontiguousarray(tensor.numpy()), crc)  # ~1 ms a batch
        record.digests[f"{name}: batches"] = f"{items} items, crc {crc:08x}"
    del loader  # its workers stop before their cache is removed


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--neurons", type=int, default=8000)
    parser.add_argument("--repeat", type=int, default=3, help="rounds (an ingest and every read phase each)")
    parser.add_argument("--warm", type=int, default=5, help="warm calls timed per round (their median)")
    parser.add_argument("--delay-ms", type=float, default=20.0, help="the proxy's wait before each request")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the epochs")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (bench.loaders' --threads)")
    parser.add_argument("--out", type=Path, default=Path("bench/data/bucket"))
    parser.add_argument("--ingest-only", action="store_true", help="time only the ingests (no read phase)")
    parser.add_argument("--request-log", type=Path, help="the delay proxy logs each request to this file")
    args = parser.parse_args(argv)

    import torch

    from scandb.source.scan import open_scan
    from tests.s3 import KEY_ID, REGION, SECRET, MotoServer

    from .delay_proxy import ProxyProcess

    torch.set_num_threads(args.threads)
    scan = write_scans(args.out / f"{args.trials}x{args.neurons}", args.trials, args.neurons, count=1)[0]
    with open_scan(scan) as opened:
        scan_key = opened.key
    work = Path(tempfile.mkdtemp(prefix="bucket-bench-", dir=args.out))
    server = MotoServer()
    proxy = ProxyProcess(server.endpoint, args.delay_ms / 1e3, str(args.request_log) if args.request_log else None)
    load = os.getloadavg()
    try:
        client = server.client()
        aws = {"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_REGION": REGION,
               "AWS_SESSION_TOKEN": None, "AWS_PROFILE": None}
        for name in ("bench-direct", "bench-delayed"):
            client.create_bucket(Bucket=name)
        targets = [Target(FOLDER, work, None),
                   Target(BUCKET, work, "s3://bench-direct", {**aws, "AWS_ENDPOINT_URL": server.endpoint}),
                   Target(DELAYED, work, "s3://bench-delayed", {**aws, "AWS_ENDPOINT_URL": proxy.endpoint})]
        records = {t.name: [] for t in targets}
        for round_ in range(args.repeat):
            for target in targets if round_ % 2 == 0 else targets[::-1]:
                with turn(target, proxy) as record:
                    url, data = target.lake(round_)
                    with empty_cache(work), record.measure("ingest"):
                        ingest_seconds(url, scan, data)
                records[target.name].append(record)
                if round_:
                    discard(target, round_, client)
        for round_ in range(0 if args.ingest_only else args.repeat):
            for target in targets if round_ % 2 else targets[::-1]:
                with turn(target, proxy, records[target.name][round_]) as record:
                    read_phases(target.lake(0)[0], scan_key, round_, args.warm, args.workers, work, record)
            check_bytes({name: rounds[round_] for name, rounds in records.items()})
    finally:
        proxy.stop()
        server.stop()
        shutil.rmtree(work, ignore_errors=True)

    result = summary(records)
    result.update(load=load, load_after=os.getloadavg(), size=(args.trials, args.neurons), repeat=args.repeat,
                  delay_ms=args.delay_ms, workers=args.workers)
    print(report(result))
    return result


@contextmanager
def turn(target: Target, proxy, record: Record | None = None):
    """One target's turn: its environment, and a check that only the delayed target's
    requests went through the proxy."""
    record = record or Record(lambda: proxy.requests)
    before = proxy.requests
    with environment(target.env):
        yield record
    through = proxy.requests - before
    if (target.name == DELAYED) != (through > 0):
        raise AssertionError(f"{target.name}: {through} requests through the proxy")


def discard(target: Target, round_: int, client) -> None:
    """A later round's lake, once timed: moto keeps every object in memory."""
    url, data = target.lake(round_)
    shutil.rmtree(Path(url.removeprefix("ducklake:sqlite:")).parent, ignore_errors=True)
    if target.bucket:
        bucket, prefix = data.removeprefix("s3://").split("/", 1)
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
            keys = [{"Key": entry["Key"]} for entry in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=bucket, Delete={"Objects": keys})


def check_bytes(round_records: dict[str, Record]) -> None:
    """Every bucket target read what the folder read, array for array."""
    expected = round_records[FOLDER].digests
    for name, record in round_records.items():
        if record.digests != expected:
            differ = [k for k in expected if record.digests.get(k) != expected[k]]
            raise AssertionError(f"{name}: {', '.join(differ)} differ from the folder's")


def summary(records: dict[str, list[Record]]) -> dict:
    """Per target and measure: the per-round medians, their median, the ratio to the folder's
    and the proxy's requests (first round)."""
    out = {"targets": {}, "checked": sum(len(r.digests) for name, rounds in records.items() if name != FOLDER
                                         for r in rounds)}
    for name, rounds in records.items():
        per_round = {m: [statistics.median(r.times[m]) for r in rounds] for m in MEASURES if rounds[0].times[m]}
        out["targets"][name] = {m: {"rounds": v, "median": statistics.median(v),
                                    "requests": rounds[0].requests[m]} for m, v in per_round.items()}
    folder = out["targets"][FOLDER]
    for measures in out["targets"].values():
        for m, got in measures.items():
            got["ratio"] = got["median"] / folder[m]["median"]
    return out


def report(result: dict) -> str:
    trials, neurons = result["size"]
    lines = [f"{trials} x {neurons} scan; median of {result['repeat']} rounds (warm: each round's median); "
             f"delay {result['delay_ms']:g} ms; {result['workers']} DataLoader workers; load average "
             f"{' / '.join(f'{x:.1f}' for x in result['load'])} before, "
             f"{' / '.join(f'{x:.1f}' for x in result['load_after'])} after",
             f"| measure | {' | '.join(result['targets'])} | requests ({DELAYED}) | target |",
             "|---|" + "---:|" * (len(result["targets"]) + 2)]
    for m in [m for m in MEASURES if m in result["targets"][FOLDER]]:
        cells = []
        for name, measures in result["targets"].items():
            got = measures[m]
            spread = f" ({min(got['rounds']):.3f}-{max(got['rounds']):.3f})" if len(got["rounds"]) > 1 else ""
            ratio = "" if name == FOLDER else f" = {got['ratio']:.2f}x"
            cells.append(f"{got['median']:.3f} s{spread}{ratio}")
        goal = GOALS.get(m)
        verdict = "" if goal is None else f"<= {goal}x: " + ", ".join(
            f"{name} {'met' if measures[m]['ratio'] <= goal else 'not met'}"
            for name, measures in result["targets"].items() if name != FOLDER)
        lines.append(f"| {m} | {' | '.join(cells)} | {result['targets'][DELAYED][m]['requests']} | {verdict} |")
    lines.append(f"bytes checked: {result['checked']} digests, every bucket read equal to the folder's")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
