"""Full-size experanto sessions: ingest, db.sample and the README's cross-session SQL, timed.

    .venv/bin/python -m bench.sessions                      # full size: 4-9 minutes, 15 GB of scratch
    .venv/bin/python -m bench.sessions --size tiny          # seconds (the test suite runs it)

One session at full size (``--size full``, the default): 8,000 neurons, responses at 30 Hz for
30 minutes (1.7 GB float32), eye tracker at 20 Hz, treadmill at 100 Hz, 166 stimulus trials
of 10 s videos at 30 Hz (72 x 128 uint8; train, validation and 5 test videos shown 4 times).
It is written once as an uncompressed tar by scandb's own generator with
``SessionSpec(stream=True)``: the responses and videos are made block by block as the tar is
written, so generating stays at a few hundred MB. Measured in one run, each figure against a
baseline timed in the same run:

a. ``scandb ingest`` of the tar into a fresh database (empty, made by ``scandb migrate`` just
   before, untimed: creating the schema is once per database, ~1.5 s) against ``tar -xf`` of
   the same tar into a fresh folder, alternating, ``--rounds`` times. Before each the tar's pages are dropped from
   the page cache (``sync`` then ``posix_fadvise(DONTNEED)``), so both read it from disk;
   both write into the page cache (neither waits for its writes to reach the disk, except
   DuckDB's own fsync at commit). Each runs in a child process started by ``bench.measure``,
   whose ``wait4`` rusage gives its CPU and peak RSS (file pages it maps count).
b. ``db.sample(key, times)`` of ``--samples`` random sorted times inside every modality's valid
   range (the default config: screen rescaled to 144 x 256, responses, eye tracker, treadmill,
   normalised) against ``bench.experanto_loader.per_query`` on the extracted folder: experanto's
   interpolators called once per time (memmaps, ``np.load`` of the trial's video, cv2 rescale).
   Both read warm files (the folder and the store were written moments before); best of
   ``--repeat``; the arrays are compared for equality first.
c. The README's experanto-session SQL (section "experanto sessions", every statement, in the
   DuckDB shell, read-only) on a database holding ``--sessions`` sessions (default 7). The
   other sessions are derived from the first tar without generating again: each copy gets
   its own ``meta.json`` key (animal id + k) and top folder, and its responses rows rotated by
   k x 1,009 rows (a cheap two-piece copy), so each is a distinct session with its own content
   digest, trial means and stored array; the videos are the same (the image store keeps one
   copy, as for a stimulus set shown to several mice). Each derived tar is ingested (timed,
   the database growing) and deleted.
d. The epoch over the train chunks: ``bench.experanto_loader.epoch`` (ChunkDataset's items,
   per item) is timed over the first ``--epoch-items`` chunks and its per-item time projected
   over all train chunks; ``scandb_epoch`` below is where the ScanDataset epoch over the
   session's train chunks plugs in (compared item by item when it returns items).

Results go to ``OUT/sessions.json``; ``--keep`` keeps the databases and extracted folder.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np

from . import experanto_loader, measure, shell

README = Path(__file__).resolve().parents[1] / "README.md"
ROLL_ROWS = 1009
"""Rows the responses of derived session k are rotated by, times k."""

SIZES = {
    "full": dict(n_neurons=8000, responses_rate=30.0, eye_tracker_rate=20.0, treadmill_rate=100.0, n_train=136,
                 n_validation=10, n_test_stimuli=5, n_repeats=4, video_frames=300, frame_shape=(72, 128),
                 lead_seconds=(("responses", 0.6), ("eye_tracker", 10.0), ("treadmill", 9.0))),
    "small": dict(n_neurons=1000, responses_rate=30.0, eye_tracker_rate=20.0, treadmill_rate=100.0, n_train=16,
                  n_validation=2, n_test_stimuli=2, n_repeats=2, video_frames=300, frame_shape=(72, 128)),
    "tiny": dict(n_neurons=40, responses_rate=30.0, eye_tracker_rate=20.0, treadmill_rate=100.0, n_train=4,
                 n_validation=1, n_test_stimuli=1, n_repeats=2, video_frames=90, frame_shape=(18, 32)),
}


def scandb_epoch(db_path: Path, scan_key: str, starts: np.ndarray):
    """The ``SessionDataset`` items of the session's train chunks at ``starts`` (dicts of
    arrays, as ``experanto_loader.chunk_item`` gives them), read one at a time in this
    process as the reference reads them; made (its starts found from SQL) before the clock starts."""
    from scandb.torchdata import SessionDataset

    dataset = SessionDataset(db_path, scan_key, "train")
    index = np.searchsorted(dataset.starts, starts)
    if len(starts) and not np.array_equal(dataset.starts[np.minimum(index, len(dataset.starts) - 1)], starts):
        raise RuntimeError("SessionDataset's train chunk starts are not the reference's")
    return ({k: v.numpy() for k, v in dataset[int(i)].items() if k != "timestamps"} for i in index)


def session_spec(size: str):
    from scandb.synthetic.experanto import SessionSpec

    return SessionSpec(stream=True, **SIZES[size])


def write_base(out: Path, size: str) -> Path:
    """The first session's tar, generated once per size (reused when it exists)."""
    from scandb.synthetic.experanto import generate_session, write_session_tar

    spec = session_spec(size)
    tag = hashlib.sha1(repr(spec).encode()).hexdigest()[:10]
    path = out / f"session-{size}-{tag}.tar"
    if not path.exists():
        started = time.perf_counter()
        out.mkdir(parents=True, exist_ok=True)
        write_session_tar(generate_session(spec), out / "writing.tar").rename(path)
        print(f"generated {path.name} ({path.stat().st_size / 1e9:.2f} GB) in {time.perf_counter() - started:.0f} s",
              flush=True)
    return path


class _Rotated(io.RawIOBase):
    """A tar member's bytes rotated by ``shift`` bytes: [shift:] then [:shift]."""

    def __init__(self, fd: int, offset: int, size: int, shift: int):
        self.fd, self.offset, self.size, self.shift, self.done = fd, offset, size, shift, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.done >= self.size:
            return 0
        source = (self.shift + self.done) % self.size
        n = min(len(buffer), self.size - source, self.size - self.done)
        data = os.pread(self.fd, n, self.offset + source)
        buffer[:len(data)] = data
        self.done += len(data)
        return len(data)


def derive(base: Path, k: int, dest: Path) -> Path:
    """Session k from the base tar: its own key and folder name, its responses rotated."""
    with tarfile.open(base) as source:
        members = source.getmembers()
        by_name = {m.name.split("/", 1)[1] if "/" in m.name else "": m for m in members}
        meta = json.loads(source.extractfile(by_name["meta.json"]).read())
        responses = __import__("yaml").safe_load(source.extractfile(by_name["responses/meta.yml"]).read())
    animal = meta["scan_key"]["animal_id"]
    meta["scan_key"]["animal_id"] = animal + k
    top = members[0].name.split("/", 1)[0]
    new_top = top.replace(f"dynamic{animal}-", f"dynamic{animal + k}-")
    row_bytes = responses["n_signals"] * np.dtype(responses["dtype"]).itemsize
    shift = (k * ROLL_ROWS % responses["n_timestamps"]) * row_bytes
    fd = os.open(base, os.O_RDONLY)
    try:
        with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT, copybufsize=8 << 20) as tar:
            for member in members:
                rel = member.name.split("/", 1)[1] if "/" in member.name else ""
                info = tarfile.TarInfo(new_top + member.name[len(top):])
                info.type, info.mode, info.mtime, info.size = member.type, member.mode, member.mtime, member.size
                if member.isdir():
                    tar.addfile(info)
                elif rel == "meta.json":
                    data = json.dumps(meta).encode()
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
                else:
                    raw = _Rotated(fd, member.offset_data, member.size, shift if rel == "responses/data.mem" else 0)
                    tar.addfile(info, io.BufferedReader(raw, 8 << 20))
    finally:
        os.close(fd)
    return dest


def evict(path: Path) -> None:
    """Drop a file's pages from the page cache (after writing back any dirty ones)."""
    os.sync()
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def _ingest_argv(tar: Path, db: Path) -> list[str]:
    return [sys.executable, "-m", "scandb", "ingest", str(tar), "--db", str(db)]


def ingest_against_tar(tar: Path, work: Path, rounds: int) -> dict:
    """(a): rounds of tar -xf then scandb ingest, each from a cold tar; keeps the last outputs."""
    extracted, db = work / "extracted", work / "sessions.duckdb"
    out = []
    for n in range(rounds):
        for path in (extracted, db, db.with_suffix(".images"), db.with_suffix(".duckdb.wal")):
            _remove(path)
        extracted.mkdir(parents=True)
        row = {"load": measure.load_average()}
        evict(tar)
        run = measure.run_process(["tar", "-xf", str(tar), "-C", str(extracted)])
        row["tar"] = {"wall": run.wall, "cpu": run.cpu, "peak_rss_mb": run.peak_rss_mb}
        created = measure.run_process([sys.executable, "-m", "scandb", "migrate", "--db", str(db)])
        row["create_db_s"] = created.wall  # an empty database with the schema, untimed in the ratio
        evict(tar)
        run = measure.run_process(_ingest_argv(tar, db))
        if run.returncode:
            raise RuntimeError(f"ingest failed: {run.output[-800:]}")
        row["ingest"] = {"wall": run.wall, "cpu": run.cpu, "peak_rss_mb": run.peak_rss_mb}
        row["ratio"] = run.wall / row["tar"]["wall"]
        # warm (the ingest just read the tar); hashlib's sha256, as the ingest's (coreutils'
        # sha256sum is 5x slower here: no SHA extensions)
        digest = measure.run_process([sys.executable, "-c", "import hashlib, sys; hashlib.file_digest("
                                      "open(sys.argv[1], 'rb'), 'sha256')", str(tar)])
        row["sha256_cpu_s"] = digest.cpu
        # an ingest writes what tar writes and hashes every byte (content identity): on the
        # machine's cores at best in parallel, that alone is this fraction of tar's time
        row["floor_ratio"] = (row["tar"]["cpu"] + digest.cpu) / max(os.cpu_count() or 1, 1) / row["tar"]["wall"]
        out.append(row)
        print(f"round {n + 1}: tar -xf {row['tar']['wall']:.2f} s, ingest {run.wall:.2f} s "
              f"({row['ratio']:.2f}x, {run.cpu:.1f} CPU s, peak RSS {run.peak_rss_mb:.0f} MB); sha256 of the tar "
              f"{digest.cpu:.2f} CPU s, floor {row['floor_ratio']:.2f}x; load {row['load']}", flush=True)
    root = next(p for p in extracted.iterdir() if p.is_dir())
    return {"rounds": out, "extracted": str(root), "db": str(db),
            "tar_gb": tar.stat().st_size / 1e9, "db_gb": sum(measure.tree_size(p)[0] for p in
                                                              (db, db.with_suffix(".images"))) / 1e9}


def query_times(root: Path, n: int, seed: int = 0) -> np.ndarray:
    """``n`` random sorted (distinct) times inside every default modality's valid range."""
    session = experanto_loader.Session(root)
    lo = max(d.valid_interval[0] for d in session.devices.values())
    hi = min(d.valid_interval[1] for d in session.devices.values())
    return np.unique(np.random.default_rng(seed).uniform(lo, hi, n))


def sample_against_reference(db_path: Path, key: str, root: Path, n: int, repeat: int) -> dict:
    """(b): db.sample of n times against the per-query reference; same arrays checked first."""
    import scandb

    times = query_times(root, n)
    names = tuple(experanto_loader.DEFAULT_CONFIG)
    with scandb.connect(db_path) as db:
        started = time.perf_counter()
        ours = db.sample(key, times)
        first = time.perf_counter() - started
        started = time.perf_counter()
        theirs = experanto_loader.per_query(root, times, names)
        reference_first = time.perf_counter() - started
        same = {name: bool(ours[name].shape == theirs[name].shape and ours[name].dtype == theirs[name].dtype
                           and np.array_equal(ours[name], theirs[name], equal_nan=True)) for name in names}
        shapes = {name: list(ours[name].shape) for name in names}
        del ours, theirs
        best = min([first] + measure.timings(lambda: db.sample(key, times), max(repeat - 1, 0))) \
            if repeat > 1 else first
    reference = [reference_first] + [measure.best_of(lambda: experanto_loader.per_query(root, times, names), 1)[0]
                                      for _ in range(max(repeat - 1, 0))]
    result = {"n": len(times), "shapes": shapes, "same": same, "sample_first": first, "sample_best": best,
              "reference_first": reference_first, "reference_best": min(reference)}
    result["speedup"] = result["reference_best"] / best
    print(f"db.sample of {len(times)} times: {best:.2f} s; per-query reference {min(reference):.2f} s: "
          f"{result['speedup']:.1f}x faster; same arrays: {same}", flush=True)
    return result


def _digest(item: dict) -> dict[str, str]:
    return {k: hashlib.sha256(np.ascontiguousarray(v).view(np.uint8).data).hexdigest() + str(v.dtype) + str(v.shape)
            for k, v in item.items()}


def _timed_items(items) -> tuple[float, list[dict[str, str]]]:
    """Seconds spent producing the items (each consumed, then dropped, as a training loop
    does), and each item's arrays' sha256 by key (taken off the clock) to compare them."""
    (elapsed, digests), = _timed_alternately([items])
    return elapsed, digests


def _timed_alternately(sides: list) -> list[tuple[float, list[dict[str, str]]]]:
    """``_timed_items`` of several item iterators at once, one item of each in turn: every
    side is timed under the same conditions (the other jobs of a shared machine, the caches
    the off-clock digests leave behind, the modules imported), not each in a phase of its
    own. Each side's previous item is dropped when its next one is made, as in a loop."""
    iterators = [iter(items) for items in sides]
    elapsed, digests, held = [0.0] * len(sides), [[] for _ in sides], [None] * len(sides)
    live = list(range(len(sides)))
    while live:
        for n in list(live):
            started = time.perf_counter()
            held[n] = next(iterators[n], None)
            elapsed[n] += time.perf_counter() - started
            if held[n] is None:
                live.remove(n)
            else:
                digests[n].append(_digest(held[n]))
    return list(zip(elapsed, digests))


def item_floor(item: dict[str, np.ndarray], n: int) -> float:
    """Seconds per item to write an item's arrays once into freshly allocated memory (each
    dropped once made, as the items are): no loader makes an item faster than its bytes."""
    def make():
        made = {k: np.empty_like(v) for k, v in item.items()}
        for k, v in made.items():
            np.copyto(v, item[k])
        return made

    elapsed, _ = _timed_items(make() for _ in range(max(n, 1)))
    return elapsed / max(n, 1)


def epoch_against_reference(db_path: Path, key: str, root: Path, items: int) -> dict:
    """(d): the per-item reference over the first train chunks, and SessionDataset's items of
    the same chunks: one item of each side in turn in this process (the same conditions for
    both), each item's digests taken off the clock, items dropped once the next is made."""
    session = experanto_loader.Session(root)
    starts = experanto_loader.train_chunk_starts(session)
    chosen = starts[:items]
    candidate = scandb_epoch(db_path, key, chosen)  # the dataset is made (and torch imported) off the clock
    reference_items = (experanto_loader.chunk_item(session, float(s)) for s in chosen)
    if candidate is None:
        (elapsed, reference), = _timed_alternately([reference_items])
    else:
        (elapsed, reference), (scandb_elapsed, got) = _timed_alternately([reference_items, candidate])
    result = {"train_chunks": int(len(starts)), "items_timed": int(len(chosen)), "alternating": True,
              "reference_s_per_item": elapsed / max(len(chosen), 1),
              "reference_epoch_s_projected": elapsed / max(len(chosen), 1) * len(starts)}
    first = experanto_loader.chunk_item(session, float(chosen[0])) if len(chosen) else {}
    result["item_shapes"] = {k: list(v.shape) for k, v in first.items()}
    result["floor_s_per_item"] = item_floor(first, len(chosen))
    result["floor_speedup"] = result["reference_s_per_item"] / result["floor_s_per_item"]
    if candidate is not None:
        result["scandb_s_per_item"] = scandb_elapsed / max(len(chosen), 1)
        result["speedup"] = result["reference_s_per_item"] / result["scandb_s_per_item"]
        result["same_items"] = len(got) == len(reference) and all(
            all(a.get(k) == b[k] for k in b) for a, b in zip(got, reference))
    print(f"writing an item's arrays into fresh memory: {result['floor_s_per_item'] * 1e3:.2f} ms "
          f"(at most {result['floor_speedup']:.1f}x faster than the reference)", flush=True)
    print(f"epoch reference: {len(starts)} train chunks, {result['reference_s_per_item'] * 1e3:.1f} ms per item "
          f"(projected epoch {result['reference_epoch_s_projected']:.0f} s); SessionDataset: "
          f"{'%.1f ms per item, %.1fx faster' % (result['scandb_s_per_item'] * 1e3, result['speedup']) if 'speedup' in result else 'not plugged in'}",
          flush=True)
    return result


def session_queries() -> list[tuple[str, str, str]]:
    """(comment, setup, statement) of every SQL statement in the README's experanto section."""
    section = README.read_text().split("## experanto sessions", 1)[1].split("\n## ", 1)[0]
    scratch = Path(os.environ.get("TMPDIR", "/tmp")) / f"scandb-readme-sessions-{os.getpid()}.md"
    scratch.write_text(section)
    try:
        return shell.readme_queries(scratch)
    finally:
        scratch.unlink()


def cross_session_sql(base: Path, db: Path, work: Path, n_sessions: int, repeat: int) -> dict:
    """(c): derive and ingest sessions 2..n into the database of (a), then time the README SQL."""
    ingests = []
    for k in range(1, n_sessions):
        started = time.perf_counter()
        tar = derive(base, k, work / f"derived-{k}.tar")
        derive_s = time.perf_counter() - started
        run = measure.run_process(_ingest_argv(tar, db))
        if run.returncode:
            raise RuntimeError(f"ingest of derived session {k} failed: {run.output[-800:]}")
        ingests.append({"k": k, "derive_s": derive_s, "ingest_wall": run.wall, "peak_rss_mb": run.peak_rss_mb})
        print(f"session {k + 1}: derived in {derive_s:.1f} s, ingested in {run.wall:.1f} s "
              f"(peak RSS {run.peak_rss_mb:.0f} MB)", flush=True)
        tar.unlink()
    cli = shutil.which("duckdb", path=str(Path(sys.executable).parent)) or shutil.which("duckdb")
    import duckdb

    with duckdb.connect(str(db), read_only=True) as conn:
        count = conn.execute("SELECT count(*) FROM scans WHERE kind = 'experanto'").fetchone()[0]
        digests = conn.execute("SELECT count(DISTINCT content_sha256) FROM scans").fetchone()[0]
    queries = []
    for comment, setup, sql in session_queries():
        best, first = shell.shell_time(cli, db, sql, repeat=repeat, timeout=shell.SLOW_LIMIT, setup=setup)
        queries.append({"comment": comment, "sql": sql, "best": best, "first": first})
        print(f"README sql ({count} sessions): {' '.join(sql.split())[:70]}: first {first:.3f} s, best {best:.3f} s",
              flush=True)
    return {"sessions": count, "distinct_digests": digests, "ingests": ingests, "queries": queries,
            "db_gb": sum(measure.tree_size(p)[0] for p in (db, db.with_suffix(".images"))) / 1e9}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="full", help="session size (default: full)")
    parser.add_argument("--out", type=Path, default=Path("bench/data/sessions"),
                        help="the generated tar (reused), databases and scratch files")
    parser.add_argument("--rounds", type=int, default=2, help="ingest / tar -xf rounds")
    parser.add_argument("--samples", type=int, default=10_000, help="query times for db.sample")
    parser.add_argument("--repeat", type=int, default=2, help="timings are the best of this many")
    parser.add_argument("--sessions", type=int, default=7, help="sessions in the database for the SQL")
    parser.add_argument("--epoch-items", type=int, default=200, help="train chunks the epoch reference is timed on")
    parser.add_argument("--skip", nargs="*", default=[], choices=["sample", "epoch", "sql"], help="parts left out")
    parser.add_argument("--keep", action="store_true", help="keep the databases and the extracted folder")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    results: dict = {"command": "python -m bench.sessions " + " ".join(argv if argv is not None else sys.argv[1:]),
                     "machine": measure.machine(), "load_before": measure.load_average(), "size": args.size,
                     "spec": {k: v for k, v in SIZES[args.size].items()}}
    base = write_base(args.out, args.size)
    work = args.out / "work"
    _remove(work)
    work.mkdir(parents=True)
    try:
        results["ingest"] = ingest_against_tar(base, work, args.rounds)
        db, root = Path(results["ingest"]["db"]), Path(results["ingest"]["extracted"])
        key = session_spec(args.size).key
        if "sample" not in args.skip:
            results["sample"] = sample_against_reference(db, key, root, args.samples, args.repeat)
        if "epoch" not in args.skip:
            results["epoch"] = epoch_against_reference(db, key, root, args.epoch_items)
        if "sql" not in args.skip:
            results["sql"] = cross_session_sql(base, db, work, args.sessions, max(args.repeat, 2))
    finally:
        if not args.keep:
            _remove(work)
    results["load_after"] = measure.load_average()
    results["minutes"] = (time.perf_counter() - started) / 60
    (args.out / "sessions.json").write_text(json.dumps(results, indent=1, default=float))
    print(f"wrote {args.out / 'sessions.json'} ({results['minutes']:.1f} min)")
    return results


if __name__ == "__main__":
    main()
