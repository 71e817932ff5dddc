"""Start-up time of the command line: ``python -m bench.startup [--source DIR]``.

Times ``scandb --help``, ``scandb sql`` and ``scandb scans`` on a small database against
two baselines run in the same loop (an empty Python and ``python -c "import duckdb"``), and
lists what the heavy libraries cost each command with ``python -X importtime``. ``--source``
runs the scandb found in another source tree (e.g. an older commit from ``git archive``),
so before and after are measured in one run on one machine.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEAVY = ("duckdb", "numpy", "pyarrow", "pandas", "sqlalchemy", "alembic", "duckdb_engine", "click")
IMPORT_LINE = re.compile(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)$")


def commands(db: Path) -> dict[str, list[str]]:
    scandb = [sys.executable, "-m", "scandb"]
    return {
        "python (empty)": [sys.executable, "-c", "pass"],
        "python -c 'import duckdb'": [sys.executable, "-c", "import duckdb"],
        "scandb --help": [*scandb, "--help"],
        "scandb sql 'SELECT count(*) FROM trials'": [*scandb, "sql", "--db", str(db), "SELECT count(*) FROM trials"],
        "scandb scans": [*scandb, "scans", "--db", str(db)],
    }


def wall_times(argv: list[str], cwd: Path, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(argv, cwd=cwd, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return times


def import_costs(argv: list[str], cwd: Path) -> dict[str, float]:
    """Milliseconds each heavy top-level library took to import (cumulative), 0 when not imported."""
    done = subprocess.run([argv[0], "-X", "importtime", *argv[1:]], cwd=cwd, check=True, capture_output=True,
                          text=True)
    costs = dict.fromkeys(HEAVY, 0.0)
    for line in done.stderr.splitlines():
        match = IMPORT_LINE.match(line)
        if match and match[3] in costs:
            costs[match[3]] = max(costs[match[3]], int(match[1]) / 1000)
    return costs


def make_database(work: Path) -> Path:
    """One small scan, ingested with the scandb under test's own tree (only its reads are timed)."""
    from scandb.synthetic import ScanSpec, generate, write_zip

    scan = write_zip(generate(ScanSpec(n_trials=200, n_neurons=100)), work / "scan.zip")
    db = work / "startup.duckdb"
    subprocess.run([sys.executable, "-m", "scandb", "ingest", "--db", str(db), str(scan)], check=True,
                   capture_output=True)
    return db


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15, help="runs of each command (median reported)")
    parser.add_argument("--source", type=Path, default=None,
                        help="source tree whose scandb package to time (default: the installed one)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        db = make_database(work)
        cwd = args.source.resolve() if args.source else work  # python -m finds scandb in cwd first
        runs = {name: [] for name in commands(db)}
        for _ in range(args.repeat):  # interleaved, so load on the machine moves every row alike
            for name, command in commands(db).items():
                runs[name] += wall_times(command, cwd, 1)
        costs = {name: import_costs(command, cwd) for name, command in commands(db).items()}
    base = statistics.median(runs["python (empty)"])
    print(f"scandb start-up, median of {args.repeat} runs, load average {os.getloadavg()[0]:.2f}"
          + (f", source {args.source}" if args.source else ""))
    print()
    print("| command | wall (ms) | x empty python | imports (ms) |")
    print("|---|---:|---:|---|")
    for name, times in runs.items():
        wall = statistics.median(times)
        imported = ", ".join(f"{lib} {ms:.0f}" for lib, ms in costs[name].items() if ms >= 1) or "-"
        print(f"| {name} | {wall * 1000:.0f} | {wall / base:.1f} | {imported} |")


if __name__ == "__main__":
    main()
