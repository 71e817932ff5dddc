"""Start-up time of the command line: ``python -m bench.startup [--source DIR]``.

Times ``scandb --help``, ``scandb sql`` and ``scandb scans`` on a small database against
two baselines run in the same loop (an empty Python and ``python -c "import duckdb"``), and
lists what the heavy libraries cost each command with ``python -X importtime``. ``--compare
DIR`` also times the scandb found in another source tree (e.g. an older commit unpacked with
``git archive``) in the same interleaved loop, so before and after share one machine state.
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


def commands(db: Path, work: Path, compare: Path | None) -> dict[str, tuple[list[str], Path]]:
    """Each timed command and the folder it runs in (``python -m`` finds scandb there first)."""
    scandb = [sys.executable, "-m", "scandb"]
    trees = [("", work)] + ([(f" [{compare.name}]", compare.resolve())] if compare else [])
    timed = {"python (empty)": ([sys.executable, "-c", "pass"], work),
             "python -c 'import duckdb'": ([sys.executable, "-c", "import duckdb"], work)}
    for label, cwd in trees:
        timed[f"scandb --help{label}"] = ([*scandb, "--help"], cwd)
        timed[f"scandb sql 'SELECT count(*) FROM trials'{label}"] = (
            [*scandb, "sql", "--db", str(db), "SELECT count(*) FROM trials"], cwd)
        timed[f"scandb scans{label}"] = ([*scandb, "scans", "--db", str(db)], cwd)
    return timed


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
    parser.add_argument("--compare", type=Path, default=None,
                        help="another source tree (holding scandb/) to time in the same loop")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        db = make_database(work)
        timed = commands(db, work, args.compare)
        runs = {name: [] for name in timed}
        for _ in range(args.repeat):  # interleaved, so load on the machine moves every row alike
            for name, (command, cwd) in timed.items():
                runs[name] += wall_times(command, cwd, 1)
        costs = {name: import_costs(command, cwd) for name, (command, cwd) in timed.items()}
    base = statistics.median(runs["python (empty)"])
    print(f"scandb start-up, median of {args.repeat} runs, load average {os.getloadavg()[0]:.2f}"
          + (f"; [{args.compare.name}] is {args.compare}" if args.compare else ""))
    print()
    print("| command | wall (ms) | x empty python | imports (ms) |")
    print("|---|---:|---:|---|")
    for name, times in runs.items():
        wall = statistics.median(times)
        imported = ", ".join(f"{lib} {ms:.0f}" for lib, ms in costs[name].items() if ms >= 1) or "-"
        print(f"| {name} | {wall * 1000:.0f} | {wall / base:.1f} | {imported} |")


if __name__ == "__main__":
    main()
