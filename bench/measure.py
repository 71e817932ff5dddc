"""Timing helpers: wall time, CPU time and peak memory of a child process, disk sizes, machine.

Benchmarks here report ratios against baselines timed in the same run, so a busy or
slow machine moves both sides; the load average is recorded beside every table.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


@dataclass(frozen=True)
class ProcessRun:
    wall: float
    cpu: float
    """user + system seconds of the child: ``cpu / wall`` is the cores it kept busy."""
    peak_rss_mb: float
    returncode: int
    output: str

    @property
    def cores(self) -> float:
        return self.cpu / self.wall if self.wall else 0.0


def run_process(argv: list[str], cwd: Path | None = None) -> ProcessRun:
    """Run a command to completion and return its wall time, CPU time and peak RSS.

    Linux keeps a process's peak RSS across fork and exec, so a command forked straight
    from this (large) harness would report the harness's memory: it is started by a small
    ``python -m bench.measure`` process instead, which reports its child's rusage.
    """
    done = subprocess.run([sys.executable, "-m", "bench.measure", *argv], cwd=cwd, capture_output=True)
    *output, summary = done.stdout.decode(errors="replace").rstrip("\n").split("\n")
    stats = json.loads(summary)
    return ProcessRun(stats["wall"], stats["cpu"], stats["peak_rss_mb"], stats["returncode"],
                      "\n".join(output) + done.stderr.decode(errors="replace"))


def _run_and_report(argv: list[str]) -> None:
    """The small parent of a measured command: prints its output, then one JSON line."""
    started = time.perf_counter()
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = child.stdout.read().decode(errors="replace")
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    sys.stdout.write(output if output.endswith("\n") or not output else output + "\n")
    print(json.dumps({"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "peak_rss_mb": usage.ru_maxrss / 1024,
                      "returncode": os.waitstatus_to_exitcode(status)}))


def timings(call: Callable[[], object], repeat: int) -> list[float]:
    """Wall time of ``repeat`` calls after one untimed warm-up call."""
    return timings_and_result(call, repeat)[0]


def timings_and_result(call: Callable[[], object], repeat: int) -> tuple[list[float], object]:
    """``timings``, and what the warm-up call returned (for checking two ways agree)."""
    result = call()
    out = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        out.append(time.perf_counter() - started)
    return out, result


def best_of(fn: Callable[[], object], repeat: int = 3) -> tuple[float, float]:
    """(fastest, first) wall time of ``repeat`` calls: the first pays cold caches."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times), times[0]


def tree_size(path: Path) -> tuple[int, int]:
    """(apparent bytes, bytes allocated on disk) of a file or folder."""
    paths = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()] if path.exists() else []
    apparent = allocated = 0
    for p in paths:
        st = p.stat()
        apparent += st.st_size
        allocated += st.st_blocks * 512
    return apparent, allocated


def load_average() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


def machine() -> dict[str, str]:
    """What the numbers were measured on."""
    import duckdb
    import numpy
    import pyarrow

    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        ram = float("nan")
    disk = shutil.disk_usage(Path.cwd())
    return {
        "CPU": f"{cpu}, {os.cpu_count()} cores",
        "RAM": f"{ram:.0f} GiB",
        "Disk free": f"{disk.free / 1e9:.0f} GB",
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "Libraries": f"duckdb {duckdb.__version__}, numpy {numpy.__version__}, pyarrow {pyarrow.__version__}",
        "unzip": shutil.which("unzip") or "absent (zipfile.extractall used)",
    }


if __name__ == "__main__":
    _run_and_report(sys.argv[1:])
