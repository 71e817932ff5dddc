"""Cross-scan SQL in the DuckDB shell: the shipped schema's answer to each question, and
the alternatives it was chosen over, timed in the real shell on the benchmark database."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path


TIMER = re.compile(r"Run Time \(s\): real ([0-9.]+)")


@dataclass(frozen=True)
class ShellQuery:
    name: str
    question: str
    sql: str
    scans: str
    """'all' or '1' (options too slow to run on every scan are timed on the first one)."""


SLOW_LIMIT = 120.0
"""Seconds after which an option is reported as "> limit" (the shipped view can take many minutes)."""


def shell_time(duckdb_cli: str, db: Path, sql: str, repeat: int = 3,
               timeout: float = SLOW_LIMIT, setup: str = "") -> tuple[float, float]:
    """(fastest, first) 'real' time the shell's .timer reports; output is discarded (.mode trash).

    ``setup`` (e.g. ``SET VARIABLE``) runs first, untimed. An option still running after
    ``timeout`` seconds is stopped and reported as infinite.
    """
    script = setup + ".timer on\n.mode trash\n" + (sql.strip().rstrip(";") + ";\n") * repeat
    try:
        done = subprocess.run([duckdb_cli, "-readonly", str(db)], input=script, capture_output=True, text=True,
                              timeout=timeout * repeat)
    except subprocess.TimeoutExpired:
        return float("inf"), float("inf")
    times = [float(t) for t in TIMER.findall(done.stdout)]
    if len(times) != repeat or done.returncode:
        raise RuntimeError(f"duckdb shell failed on {sql[:80]!r}: {done.stderr.strip()[:300]}")
    return min(times), times[0]


README_TARGET = 10.0
"""Seconds within which every SQL statement of the README should answer on full-size scans."""
SQL_BLOCK = re.compile(r"^```sql\n(.*?)^```", re.S | re.M)


def readme_queries(readme: Path) -> list[tuple[str, str, str]]:
    """(comment, setup, statement) for every statement of every ```sql block of the README,
    the comment being the ``--`` lines just above it and the setup the block's earlier
    ``SET VARIABLE`` statements (timed statements may use them); read at run time, so the
    benchmark times whatever the README says today."""
    found = []
    for block in SQL_BLOCK.findall(readme.read_text()):
        comment, setup, statement = "", "", []
        for line in block.splitlines():
            if line.startswith("--") and not statement:
                comment = line.lstrip("- ").strip()
                continue
            statement.append(line)
            if line.rstrip().endswith(";"):
                text = "\n".join(statement).strip()
                if text.upper().startswith("SET VARIABLE"):
                    setup += text + "\n"
                else:
                    found.append((comment, setup, text))
                statement = []
        if "\n".join(statement).strip():
            found.append((comment, setup, "\n".join(statement).strip()))
    return found


AREA_INDEX = """(SELECT scan_key, area, list(neuron_idx + 1 ORDER BY neuron_idx) AS idx
                 FROM neurons GROUP BY scan_key, area)"""


def queries(first_scan: str, image_id: int) -> list[ShellQuery]:
    q_mean = "mean response per (scan, area, tier)"
    q_image = f"every response to image {image_id}, all scans"
    return [
        ShellQuery("area_responses sums (shipped, built at ingest)", q_mean, """
            SELECT a.scan_key, a.area, t.tier, sum(a.response_sum) / sum(a.n_neurons) AS mean
            FROM area_responses a JOIN trials t USING (scan_key, trial_id)
            GROUP BY ALL""", "all"),
        ShellQuery("list_select with per-area index lists over responses", q_mean, f"""
            SELECT r.scan_key, a.area, t.tier,
                   sum(list_sum(list_select(r.response, a.idx))) / sum(len(a.idx)) AS mean
            FROM responses r JOIN trials t USING (scan_key, trial_id) JOIN {AREA_INDEX} a USING (scan_key)
            GROUP BY ALL""", "all"),
        ShellQuery("view responses_long (unnest + join)", q_mean, f"""
            SELECT scan_key, area, tier, avg(response) AS mean FROM responses_long
            WHERE scan_key = '{first_scan}' GROUP BY ALL""", "1"),
        ShellQuery("responses filtered by image_id (shipped: rows sorted by image)", q_image, f"""
            SELECT scan_key, trial_id, response FROM responses WHERE image_id = {image_id}""", "all"),
        ShellQuery("join trials -> responses on trial_id", q_image, f"""
            SELECT r.scan_key, r.trial_id, r.response
            FROM trials t JOIN responses r USING (scan_key, trial_id) WHERE t.image_id = {image_id}""", "all"),
        ShellQuery("view responses_long, one row per neuron", q_image, f"""
            SELECT scan_key, trial_id, neuron_idx, area, response FROM responses_long
            WHERE image_id = {image_id}""", "all"),
    ]
