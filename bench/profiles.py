"""Where the time goes when a target is missed: py-spy for ingest (threads, native DuckDB
frames), cProfile for fetch. Summaries are plain text lines for BENCHMARKS.md."""

from __future__ import annotations

import cProfile
import io
import pstats
import shutil
import subprocess
from collections import Counter, defaultdict
from pathlib import Path
from typing import Callable

DUCKDB_PHASES = {
    "append to transaction storage (ColumnData::Append)": "ColumnData::Append",
    "compress + write row groups during insert (OptimisticDataWriter)": "OptimisticDataWriter",
    "  of which ALP float compression": "AlpCompression",
    "commit / checkpoint": "Commit",
    "Arrow scan of the registered batch": "ArrowScan",
}


def profile_ingest(argv: list[str], out: Path) -> list[str] | None:
    """Sample an ingest with py-spy (100 Hz, every thread, native frames); None without py-spy."""
    spy = shutil.which("py-spy") or str(Path(argv[0]).with_name("py-spy"))
    if not Path(spy).exists():
        return None
    raw = out.with_suffix(".txt")
    done = subprocess.run([spy, "record", "-r", "100", "--threads", "--native", "--format", "raw",
                           "-o", str(raw), "--", *argv], capture_output=True, text=True)
    if done.returncode or not raw.exists():
        return [f"py-spy failed: {done.stderr.strip()[:200]}"]
    return summarise_py_spy(raw)


def summarise_py_spy(raw: Path) -> list[str]:
    """Samples per thread, the main thread's DuckDB phases, and the readers' hottest frames."""
    threads: Counter = Counter()
    phases: Counter = Counter()
    frames_by_thread: dict[str, Counter] = defaultdict(Counter)
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        frames = stack.split(";")
        thread = "main" if "MainThread" in frames[0] else ("reader" if "scandb-read" in frames[0] else "other")
        threads[thread] += n
        names = [f.split(" (")[0] for f in frames]
        if thread == "main":
            for label, marker in DUCKDB_PHASES.items():
                if any(marker in name for name in names):
                    phases[label] += n
        python = [f for f in frames if "scandb/" in f or "zipfile" in f or "hashlib" in f]
        frames_by_thread[thread][(python[-1] if python else names[-1])[:90]] += n
    lines = [f"samples (100 Hz, wall): main thread {threads['main']}, reader threads {threads['reader']} "
             f"(two threads), other {threads['other']}"]
    main = max(threads["main"], 1)
    lines += [f"main thread, {label}: {n / main:.0%}" for label, n in
              sorted(phases.items(), key=lambda kv: -kv[1])]
    for thread in ("main", "reader"):
        top = frames_by_thread[thread].most_common(6)
        total = max(threads[thread], 1)
        lines += [f"{thread} top frame: {n / total:.0%} {frame}" for frame, n in top]
    return lines


def profile_call(fn: Callable[[], object], top: int = 8) -> list[str]:
    """cProfile of one call: the functions with the most own time."""
    profiler = cProfile.Profile()
    profiler.enable()
    fn()
    profiler.disable()
    buffer = io.StringIO()
    stats = pstats.Stats(profiler, stream=buffer)
    rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:top]
    total = sum(v[2] for v in stats.stats.values()) or 1.0
    lines = []
    for (filename, line, name), (_, calls, own, cumulative, _) in rows:
        where = f"{Path(filename).name}:{line}({name})" if filename != "~" else name
        lines.append(f"{own:6.3f} s own ({own / total:4.0%}), {cumulative:6.3f} s cum, {calls:6d} calls  {where[:90]}")
    return lines
