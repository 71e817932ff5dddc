"""Epoch 1 and epoch 2 of a PyTorch DataLoader: scandb's ScanDataset against the real
neuralpredictors FileTreeDataset with its defaults (it caches every array it loads).

Each configuration runs in its own process (a fresh page of memory, a fresh cache), bounded
by a timeout; a loader that fails or hangs is reported with its error. After every epoch the
resident memory of the main process and of every worker is read from
/proc/<pid>/smaps_rollup: PSS (shared pages split between the processes that map them; the
sum over processes is the memory the run costs) and USS (pages only that process holds).
The cached loader's per-worker caches grow for several epochs (each persistent worker
caches the items it happened to load), so ``--epochs`` beyond 2 shows where they settle.

    python -m bench.loaders --out bench/data              # full-size scan, 0/2/4 workers
    python -m bench.loaders --out bench/data --epochs 12  # and memory once the caches fill
    python -m bench.loaders --out bench/data --tiny       # toy sizes (what the tests run)
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

BATCH = 128
LOADERS = ("scandb", "filetree", "filetree-tuple-collate", "scandb-cache-images")
"""scandb: ScanDataset(normalize=False, image_dtype=None), the same arrays FileTreeDataset
yields; scandb-cache-images: the same with cache_images=True (opt-in: each process keeps the
images it read); filetree: FileTreeDataset(root, *keys) with its defaults (use_cache=True), as a new
user runs it; filetree-tuple-collate: the same dataset with a collate_fn that turns its
DataPoint namedtuples into plain tuples, the workaround that lets it run with workers."""
KEYS = ("images", "responses", "behavior", "pupil_center")


def prepare(out: Path, tiny: bool) -> tuple[Path, Path, str]:
    """The first benchmark scan as a database and as an extracted file tree (made once)."""
    from bench import baselines
    from bench.generate import scan_specs, write_scans

    import scandb

    zip_path = write_scans(out / "zips", 1, tiny)[0]
    spec = scan_specs(1, tiny)[0]
    work = out / ("loaders-tiny" if tiny else "loaders")
    db_path, tree = work / "lab.duckdb", work / "tree"
    if not db_path.exists():
        work.mkdir(parents=True, exist_ok=True)
        with scandb.connect(db_path, read_only=False) as db:
            db.ingest(zip_path)
    if not (tree / ".complete").exists():
        root = baselines.extract(zip_path, tree)
        (tree / ".complete").write_text(str(root))
    return db_path, Path((tree / ".complete").read_text()), spec.key


def memory(pid: int) -> dict[str, int]:
    """PSS, USS and RSS of one process in bytes, from /proc/<pid>/smaps_rollup; PSS also
    split into anonymous memory (owned by the process: caches, copies) and file-backed pages
    (memory-mapped files: page cache the kernel can drop and reread)."""
    fields = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[-1] == "kB":
                fields[parts[0].rstrip(":")] = int(parts[1]) * 1024
    return {"pss": fields.get("Pss", 0), "rss": fields.get("Rss", 0),
            "uss": fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0),
            "pss_anon": fields.get("Pss_Anon", 0), "pss_file": fields.get("Pss_File", 0)}


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    return found


def tuple_collate(batch):
    """Plain tuples instead of FileTreeDataset's DataPoint, whose class workers cannot pickle."""
    from torch.utils.data import default_collate

    return tuple(default_collate([tuple(item) for item in batch]))


def child(loader: str, workers: int, db_path: Path, tree: Path, scan: str, threads: int, n_epochs: int = 2) -> dict:
    """``n_epochs`` epochs over the train tier in this process; timings and memory as a dict
    (``processes``: each process after the last epoch; ``totals``: summed after each epoch).

    ``threads`` > 0 sets torch's intra-op threads of the main process (DataLoader workers
    use one thread each whatever it is): on a busy machine the default threads of
    ``torch.stack`` in the collate spin and dominate an epoch, for both loaders alike.
    """
    import collections
    import collections.abc

    for name in ("Iterable", "Mapping", "MutableMapping", "Sequence", "Callable"):
        if not hasattr(collections, name):
            setattr(collections, name, getattr(collections.abc, name))
    import numpy as np
    import torch.utils.data

    if threads > 0:
        torch.set_num_threads(threads)
    baseline = memory(os.getpid())
    if loader.startswith("scandb"):
        from scandb.torchdata import ScanDataset

        dataset = ScanDataset(db_path, f"SELECT scan_key, trial_id FROM trials WHERE scan_key = '{scan}' "
                              "AND tier = 'train' ORDER BY trial_id", KEYS, normalize=False, image_dtype=None,
                              cache_images=loader == "scandb-cache-images")
        options = dict(shuffle=True)
    else:
        from neuralpredictors.data.datasets import FileTreeDataset

        dataset = FileTreeDataset(str(tree), *KEYS)
        train = np.flatnonzero(dataset.trial_info.tiers == "train")
        options = dict(sampler=torch.utils.data.SubsetRandomSampler(train))
        if loader == "filetree-tuple-collate":
            options["collate_fn"] = tuple_collate
    data = torch.utils.data.DataLoader(dataset, batch_size=BATCH, num_workers=workers,
                                       persistent_workers=workers > 0, **options)
    epochs, totals, n_items = [], [], 0
    for _ in range(n_epochs):
        started = time.perf_counter()
        n_items = 0
        for batch in data:
            n_items += len(batch[0])
        epochs.append(time.perf_counter() - started)
        processes = {"main": memory(os.getpid())}
        for i, pid in enumerate(sorted(children(os.getpid()))):
            processes[f"worker {i}"] = memory(pid)
        totals.append({field: sum(p[field] for p in processes.values()) for field in ("pss", "pss_anon", "pss_file")})
    return {"epochs": epochs, "items": n_items, "baseline": baseline, "processes": processes, "totals": totals}


def run_one(loader: str, workers: int, db_path: Path, tree: Path, scan: str, timeout: float,
            threads: int = 0, epochs: int = 2) -> dict:
    """One configuration in a fresh process group, killed after ``timeout`` seconds."""
    command = [sys.executable, "-m", "bench.loaders", "--child", loader, str(workers), str(db_path), str(tree), scan,
               str(threads), str(epochs)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True, cwd=Path(__file__).resolve().parents[1])
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        cause = _error_line(stderr)
        return {"loader": loader, "workers": workers,
                "error": f"{cause + '; then ' if cause else ''}no batch for {timeout:.0f} s: killed"}
    if process.returncode != 0:
        return {"loader": loader, "workers": workers, "error": _error_line(stderr) or f"exit {process.returncode}"}
    return {"loader": loader, "workers": workers, **json.loads(stdout.strip().splitlines()[-1])}


def _error_line(stderr: str) -> str:
    """The most telling line of a traceback: the last line naming an error."""
    lines = [line.strip() for line in stderr.splitlines() if "Error" in line or "Exception" in line]
    return lines[-1][:300] if lines else ""


def table(results: list[dict]) -> str:
    """The results as a Markdown table, times in seconds and memory in MB."""
    rows = ["| loader | workers | epoch 1 | epoch 2 | total PSS after epoch 2 | after the last epoch | of it anonymous "
            "| of it file-backed | above imports | worker USS (each) | note |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in results:
        if "error" in r:
            rows.append(f"| {r['loader']} | {r['workers']} | failed | failed |  |  |  |  |  |  | {r['error']} |")
            continue
        procs = r["processes"]
        total = sum(p["pss"] for p in procs.values()) / 1e6
        workers = [p["uss"] / 1e6 for name, p in procs.items() if name != "main"]
        each = ", ".join(f"{w:.0f}" for w in workers) or "-"
        spread = _spread(r.get("all_epochs", [r["epochs"]]))
        after_two = r["totals"][1]["pss"] / 1e6
        rows.append(f"| {r['loader']} | {r['workers']} | {r['epochs'][0]:.2f} s{spread[0]} | "
                    f"{r['epochs'][1]:.2f} s{spread[1]} | {after_two:.0f} MB | "
                    f"{total:.0f} MB (epoch {len(r['epochs'])}) | {_sum(procs, 'pss_anon'):.0f} MB | "
                    f"{_sum(procs, 'pss_file'):.0f} MB | "
                    f"{total - r['baseline']['pss'] / 1e6:.0f} MB | {each} | {r['items']} items/epoch |")
    return "\n".join(rows)


def _median_run(runs: list[dict]) -> dict:
    """The run with the median epoch-1 time, carrying every run's epoch times."""
    if "error" in runs[-1]:
        return runs[-1]
    ordered = sorted(runs, key=lambda r: r["epochs"][0])
    return {**ordered[len(ordered) // 2], "all_epochs": [r["epochs"] for r in runs]}


def _spread(all_epochs: list[list[float]]) -> tuple[str, str]:
    """' (min-max)' of each epoch over the rounds, when there were several."""
    if len(all_epochs) < 2:
        return "", ""
    return tuple(f" ({min(e[i] for e in all_epochs):.2f}-{max(e[i] for e in all_epochs):.2f})" for i in range(2))


def _sum(processes: dict, field: str) -> float:
    return sum(p.get(field, 0) for p in processes.values()) / 1e6


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/data"), help="scans and scratch files")
    parser.add_argument("--tiny", action="store_true", help="toy sizes, for the tests")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2, 4])
    parser.add_argument("--loaders", nargs="+", choices=LOADERS, default=list(LOADERS[:3]),
                        help="loaders to compare (default: the first three)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds before a configuration is killed")
    parser.add_argument("--repeat", type=int, default=1, help="rounds; each figure is the median round's")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch intra-op threads in the main process (default: torch's own)")
    parser.add_argument("--epochs", type=int, default=2,
                        help="epochs per configuration (at least 2); memory is read after each")
    parser.add_argument("--child", nargs=7, metavar=("LOADER", "WORKERS", "DB", "TREE", "SCAN", "THREADS", "EPOCHS"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        loader, workers, db_path, tree, scan, threads, epochs = args.child
        print(json.dumps(child(loader, int(workers), Path(db_path), Path(tree), scan, int(threads), int(epochs))))
        return []
    if args.epochs < 2:
        parser.error("--epochs: at least 2 (epoch 2 is one of the targets)")
    db_path, tree, scan = prepare(args.out, args.tiny)
    configs = [(loader, workers) for workers in args.workers for loader in args.loaders
               if not (loader == "filetree-tuple-collate" and workers == 0)]  # no workers: the same run as filetree
    runs: dict[tuple[str, int], list[dict]] = {c: [] for c in configs}
    for _ in range(args.repeat):  # rounds interleave the loaders, so a busy moment hits both
        for loader, workers in configs:
            if runs[(loader, workers)] and "error" in runs[(loader, workers)][-1]:
                continue  # a configuration that failed once is reported as failed
            runs[(loader, workers)].append(run_one(loader, workers, db_path, tree, scan, args.timeout,
                                                   args.threads, args.epochs))
            print(json.dumps(runs[(loader, workers)][-1]), file=sys.stderr, flush=True)
    results = [_median_run(runs[c]) for c in configs]
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps({"load_average": os.getloadavg(), "threads": args.threads, "epochs": args.epochs,
                                         "runs": [r for c in configs for r in runs[c]], "results": results}, indent=1))
        print(targets(args.json))
    return results




def targets(path: Path) -> str:
    """The issue's three targets from a --json file, as ratios within each round (median, range)."""
    data = json.loads(path.read_text())
    runs: dict[tuple[str, int], list[dict]] = {}
    for r in data["runs"]:
        if "error" not in r:
            runs.setdefault((r["loader"], r["workers"]), []).append(r)
    rows = ["| measure | workers | scandb | cached loader | ratio per round (median, range) | target | met |",
            "|---|---:|---:|---:|---:|---|---|"]

    def row(label: str, workers: int, ours: list[float], theirs: list[float], target: str, good) -> None:
        ratios = sorted(t / o if "faster" in target else o / t for o, t in zip(ours, theirs))
        median = ratios[len(ratios) // 2]
        rows.append(f"| {label} | {workers} | {sorted(ours)[len(ours) // 2]:.2f} | {sorted(theirs)[len(theirs) // 2]:.2f} "
                    f"| {median:.2f}x ({ratios[0]:.2f}-{ratios[-1]:.2f}) | {target} | {'**yes**' if good(median) else '**no**'} |")

    for ours_name in ("scandb", "scandb-cache-images"):
        for workers in sorted({w for _, w in runs}):
            theirs_name = "filetree" if workers == 0 else "filetree-tuple-collate"
            ours, theirs = runs.get((ours_name, workers)), runs.get((theirs_name, workers))
            if ours and theirs:
                _target_rows(row, "" if ours_name == "scandb" else f" [{ours_name}]", workers, ours, theirs)
    return "\n".join(rows)


def _target_rows(row, note: str, workers: int, ours: list[dict], theirs: list[dict]) -> None:
    row(f"epoch 1 (s){note}", workers, [r["epochs"][0] for r in ours], [r["epochs"][0] for r in theirs],
        ">= 5x faster", lambda m: m >= 5)
    row(f"epoch 2 (s){note}", workers, [r["epochs"][1] for r in ours], [r["epochs"][1] for r in theirs],
        "<= 2x the cached loader's time", lambda m: m <= 2)
    if workers == 4:
        def total(r: dict, epoch: int) -> float:
            return r["totals"][epoch]["pss"] / 1e6

        row(f"total PSS after epoch 2 (MB){note}", workers, [total(r, 1) for r in ours], [total(r, 1) for r in theirs],
            "<= 1/3 of the cached loader's", lambda m: m <= 1 / 3)
        last = min(len(r["totals"]) for r in ours + theirs)
        if last > 2:
            row(f"total PSS after epoch {last} (MB){note}", workers, [total(r, last - 1) for r in ours],
                [total(r, last - 1) for r in theirs], "<= 1/3 of the cached loader's", lambda m: m <= 1 / 3)


if __name__ == "__main__":
    main()
