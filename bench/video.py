"""Full-size dynamic (video) scan: ingest against unzip, windows against per-file loading, sizes, SQL.

    .venv/bin/python -m bench.video                       # 700 trials x 8,000 neurons x 315 frames
    .venv/bin/python -m bench.video --trials 60 --neurons 500   # a quick check of the script

The scan is generated once under ``bench/data/video/`` (streamed trial by trial into the
zip, deflate level 1 to keep generation short, NaN after each trial's end as in the 2023
release) and reused. Then, in one run so both sides see the same machine load:

1. ``unzip`` into a fresh folder, then ``scandb ingest`` into a fresh database: wall, CPU,
   peak memory of the ingest's process tree (PSS);
2. a batch of 32 random 50-frame windows (videos, responses, behavior, pupil_center),
   through ``ScanDB.fetch(frames=...)`` and through ``ScanDataset(frames=50)`` against
   per-file loading as neuralpredictors' ``MovieFileTreeDataset`` does it (``np.load`` of
   each trial's four files, then the slice), alternating, best and median of ``--rounds``:
   warm (files in the page cache), then cold (every side's files evicted with
   ``posix_fadvise(DONTNEED)`` before each batch); and the bytes each side must read;
3. database + store size against the zip; the README's video SQL, timed.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

from scandb.source.npyfile import dumps
from scandb.synthetic import AREAS, LAYERS, VideoSpec, dynamic_tiers

from .ingest_ratio import timed

DATA = Path("bench/data/video")
WINDOW, BATCH = 50, 32


def write_streamed(spec: VideoSpec, path: Path) -> Path:
    """The scan as a zip, one trial at a time (a full-size scan does not fit in memory twice)."""
    if path.exists():
        return path
    rng = np.random.default_rng(spec.seed)
    n, neurons, frames = spec.n_trials, spec.n_neurons, spec.n_frames
    h, w = spec.video_shape
    tiers = dynamic_tiers(spec)
    oracle = np.flatnonzero(tiers == "oracle")
    video_ids = np.arange(1000, 1000 + n)
    video_ids[oracle] = oracle % spec.n_oracle_videos
    longest = min(frames, 300)  # most 2023 trials last 300 frames, padded to T
    lengths = np.minimum(rng.integers(spec.min_length, frames + 1, n), longest)
    lengths[oracle] = longest
    sums = {k: 0.0 for k in ("videos", "responses", "behavior", "pupil_center")}
    squares = dict(sums)
    counts = dict(sums)
    partial = path.with_suffix(".partial")
    prefix = spec.name + "/"
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for i in range(n):
            length = int(lengths[i])
            video_rng = np.random.default_rng(int(video_ids[i]) + 17)
            arrays = {"videos": np.full((h, w, frames), np.nan, np.float32),
                      "responses": np.full((neurons, frames), np.nan, np.float32),
                      "behavior": np.full((2, frames), np.nan, np.float32),
                      "pupil_center": np.full((2, frames), np.nan, np.float32)}
            arrays["videos"][:, :, :length] = video_rng.integers(0, 256, (h, w, length), dtype=np.uint8)
            active = rng.random((neurons, length), dtype=np.float32) > 0.5
            arrays["responses"][:, :length] = rng.exponential(1.0, (neurons, length)).astype(np.float32) * active
            if "test" in tiers[i]:
                arrays["responses"][:, :length] = 0
            arrays["behavior"][:, :length] = rng.normal(1, 0.3, (2, length))
            arrays["pupil_center"][:, :length] = rng.normal(0, 1, (2, length))
            for key, array in arrays.items():
                zf.writestr(f"{prefix}data/{key}/{i}.npy", dumps(array))
                valid = array[..., :length].astype(np.float64)
                sums[key] = sums[key] + np.pad(valid, [(0, 0)] * (valid.ndim - 1) + [(0, frames - length)])
                squares[key] = squares[key] + np.pad(valid ** 2, [(0, 0)] * (valid.ndim - 1) + [(0, frames - length)])
                counts[key] = counts[key] + (np.arange(frames) < length)
        for key in sums:
            mean = sums[key] / counts[key]
            std = np.sqrt(np.maximum(squares[key] / counts[key] - mean ** 2, 0))
            for stat, value in (("mean", mean), ("std", std), ("min", mean - 3 * std), ("max", mean + 3 * std),
                                ("median", mean)):
                zf.writestr(f"{prefix}meta/statistics/{key}/all/{stat}.npy", dumps(value.astype(np.float32)))
        meta = {"trials/tiers": tiers, "trials/frame_image_id": video_ids.astype(np.int64),
                "trials/trial_idx": rng.permutation(n).astype(np.int64),
                "neurons/unit_ids": np.arange(1, neurons + 1, dtype=np.int64),
                "neurons/area": np.array([AREAS[i % 4] for i in range(neurons)]),
                "neurons/layer": np.array([LAYERS[i % 3] for i in range(neurons)])}
        for name, array in meta.items():
            zf.writestr(f"{prefix}meta/{name}.npy", dumps(array))
    partial.replace(path)
    return path


def windows(rng: np.random.Generator, lengths: np.ndarray, train: np.ndarray) -> list[tuple[int, int]]:
    trials = rng.choice(train, BATCH, replace=len(train) < BATCH)
    return [(int(t), int(rng.integers(0, lengths[t] - WINDOW + 1))) for t in trials]


def scandb_batch(db, key: str, batch: list[tuple[int, int]]) -> None:
    """One fetch for the batch: a window per row."""
    db.fetch([(key, trial) for trial, _ in batch], frames=[(start, start + WINDOW) for _, start in batch])


def per_file_batch(folder: Path, batch: list[tuple[int, int]]) -> None:
    for trial, start in batch:
        for name in ("videos", "responses", "behavior", "pupil_center"):
            np.load(folder / "data" / name / f"{trial}.npy")[..., start:start + WINDOW].copy()


def evict(*folders: Path) -> None:
    """Drop the page cache of every file under these folders (pages a process still maps stay)."""
    for folder in folders:
        for path in (folder.rglob("*") if folder.is_dir() else [folder]):
            if path.is_file():
                fd = os.open(path, os.O_RDONLY)
                try:
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                finally:
                    os.close(fd)


def dataset_batch(dataset, rows: list[int], seed: int) -> None:
    """One batch as a training loop reads it: ``ScanDataset.__getitems__`` (no database; the
    random windows drawn from torch's generator, seeded so a warm repeat reads the same)."""
    import torch
    torch.manual_seed(seed)
    dataset.__getitems__(rows)


def batch_bytes(folder: Path, batch: list[tuple[int, int]], neurons: int, video_frame_bytes: int) -> dict:
    """Bytes each side must read for a batch: every file of each trial for per-file loading,
    the window's frames for scandb (responses and the video's time-major copy; behavior and
    pupil position are held in memory)."""
    per_file = sum((folder / "data" / name / f"{trial}.npy").stat().st_size
                   for trial, _ in batch for name in ("videos", "responses", "behavior", "pupil_center"))
    scandb_side = len(batch) * WINDOW * (neurons * 4 + video_frame_bytes)
    return {"per_file_mb": round(per_file / 1e6, 1), "scandb_mb": round(scandb_side / 1e6, 1),
            "ratio": round(per_file / scandb_side, 1)}


def spread(times: list[float]) -> dict:
    return {"best": round(min(times), 4), "median": round(statistics.median(times), 4)}


def compare_windows(db_path: Path, key: str, folder: Path, rounds: int, cold: bool) -> dict:
    """scandb against per-file loading, alternating, ``rounds`` batches each: ``db.fetch``
    (one API call: it opens the database file, reads, closes it) and ``ScanDataset`` (what a
    training loop calls: store files only). Warm: each batch is read once untimed, then
    timed. Cold: before each timed batch the files of every side are evicted from the page
    cache (``db.fetch`` first reads one window of a trial outside the batch on a fresh
    connection: statistics, SQL, the matrix's header)."""
    import scandb
    from scandb.torchdata import ScanDataset
    rng = np.random.default_rng(1 if cold else 0)
    times: dict[str, list[float]] = {"db_fetch": [], "dataset": [], "per_file": []}
    with scandb.connect(db_path) as db:
        info = db.sql("SELECT n_frames, tier FROM trials ORDER BY trial_id").fetchnumpy()
    lengths, train = info["n_frames"], np.flatnonzero(info["tier"] == "train")
    dataset = ScanDataset(db_path, f"SELECT scan_key, trial_id FROM trials WHERE tier = 'train' "
                                   f"AND n_frames >= {WINDOW} ORDER BY trial_id", frames=WINDOW,
                           normalize=False)  # the per-file side reads the arrays as stored
    store = db_path.with_suffix(".images")
    db = scandb.connect(db_path)
    scandb_batch(db, key, windows(rng, lengths, train))  # first use: statistics, memory maps
    dataset_batch(dataset, list(range(BATCH)), 0)
    for round_ in range(rounds):
        batch = windows(rng, lengths, train)
        if cold:
            db.close(); del db; gc.collect()
            db = scandb.connect(db_path)
            outside = next(int(t) for t in train if int(t) not in {b for b, _ in batch})
            scandb_batch(db, key, [(outside, 0)])
            evict(store, folder)
        else:
            scandb_batch(db, key, batch)  # warm: this batch's pages read once before timing
        t = time.perf_counter(); scandb_batch(db, key, batch); times["db_fetch"].append(time.perf_counter() - t)
        rows = rng.choice(len(dataset), BATCH, replace=False).tolist()
        if cold:
            evict(store, folder)
        else:
            dataset_batch(dataset, rows, round_)
        t = time.perf_counter(); dataset_batch(dataset, rows, round_); times["dataset"].append(time.perf_counter() - t)
        batch = windows(rng, lengths, train)
        if cold:
            evict(store, folder)
        else:
            per_file_batch(folder, batch)
        t = time.perf_counter(); per_file_batch(folder, batch); times["per_file"].append(time.perf_counter() - t)
    db.close()
    out = {side: spread(values) for side, values in times.items()}
    for side in ("db_fetch", "dataset"):
        out[f"{side}_speedup"] = {stat: round(out["per_file"][stat] / out[side][stat], 1) for stat in ("best", "median")}
    return out


def size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=700, help="trials of the generated scan")
    parser.add_argument("--neurons", type=int, default=8000, help="neurons of the generated scan")
    parser.add_argument("--frames", type=int, default=315, help="padded frames T of every trial")
    parser.add_argument("--rounds", type=int, default=5, help="batches timed per side and cache state")
    parser.add_argument("--keep", action="store_true",
                        help="keep the unzipped scan and the database under bench/data/video/ for --reuse")
    parser.add_argument("--reuse", action="store_true",
                        help="skip unzip and ingest when a kept unzipped scan and database exist (windows, sizes, SQL only)")
    args = parser.parse_args(argv)
    import scandb
    spec = VideoSpec(animal_id=29515, session=10, scan_idx=1, n_trials=args.trials, n_neurons=args.neurons,
                     n_frames=args.frames, min_length=min(args.frames, 300) * 2 // 3)
    folder_of_size = DATA / f"{spec.n_trials}x{spec.n_neurons}x{spec.n_frames}"
    folder_of_size.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    zipped = write_streamed(spec, folder_of_size / f"{spec.name}.zip")
    out: dict = {"scan": f"{spec.n_trials} trials x {spec.n_neurons} neurons x {spec.n_frames} frames",
                 "generate_s": round(time.perf_counter() - started, 1), "zip_bytes": size(zipped)}
    work = folder_of_size / "work"
    if not (args.reuse and (work / "lab.duckdb").exists() and (work / "unzipped").exists()):
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        unzip = timed(["unzip", "-q", str(zipped), "-d", str(work / "unzipped")])
        ingest = timed([sys.executable, "-m", "scandb", "ingest", str(zipped), "--db", str(work / "lab.duckdb")])
        out["unzip"], out["ingest"] = unzip, ingest
        out["ingest_over_unzip"] = round(ingest["wall"] / unzip["wall"], 2)
    out["db_plus_store_bytes"] = size(work / "lab.duckdb") + size(work / "lab.images")
    out["db_plus_store_over_zip"] = round(out["db_plus_store_bytes"] / out["zip_bytes"], 2)
    folder = work / "unzipped" / spec.name
    h, w = spec.video_shape
    out["batch_32_windows_bytes"] = batch_bytes(folder, windows(np.random.default_rng(2), np.full(spec.n_trials, WINDOW),
                                                                np.arange(spec.n_trials)), spec.n_neurons, h * w * 4)
    out["batch_32_windows_s"] = {
        "warm": compare_windows(work / "lab.duckdb", spec.key, folder, args.rounds, cold=False),
        "cold": compare_windows(work / "lab.duckdb", spec.key, folder, args.rounds, cold=True)}
    with scandb.connect(work / "lab.duckdb") as db:
        queries = {
            "mean per frame of each area, one oracle video, all mice": """
                SELECT scan_key, area, frame, sum(s.response_sum[frame]) / sum(s.n_neurons) AS mean_response
                FROM trials t JOIN area_frame_responses s USING (scan_key, trial_id),
                     range(1, t.n_frames + 1) f(frame)
                WHERE t.tier = 'oracle' AND t.image_id = 0 GROUP BY ALL ORDER BY ALL""",
            "mean activity per trial, by tier": """
                SELECT t.tier, avg(a.total / (a.neurons * t.n_frames)) AS mean_activity
                FROM trials t JOIN (SELECT scan_key, trial_id, sum(list_sum(response_sum)) AS total,
                                           sum(n_neurons) AS neurons
                                    FROM area_frame_responses GROUP BY ALL) a USING (scan_key, trial_id)
                GROUP BY t.tier ORDER BY t.tier""",
            "valid lengths per tier": """
                SELECT tier, count(*), min(n_frames), avg(n_frames), max(n_frames) FROM trials
                WHERE n_frames IS NOT NULL GROUP BY tier ORDER BY tier""",
        }
        out["sql_s"] = {}
        for name, sql in queries.items():
            t = time.perf_counter(); db.sql(sql).fetchall(); out["sql_s"][name] = round(time.perf_counter() - t, 3)
    if not args.keep:
        shutil.rmtree(work / "unzipped")
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
