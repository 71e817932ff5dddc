"""Cross-scan SQL in the DuckDB shell: the schema and SQL options, timed in the real shell.

Prototype tables (a per-trial, per-area summary and a long table) are built in a copy of
the benchmark database, never in the real one: they show what a schema change would buy.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb

from scandb.database import ROW_GROUP_SIZE

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
               timeout: float = SLOW_LIMIT) -> tuple[float, float]:
    """(fastest, first) 'real' time the shell's .timer reports; output is discarded (.mode trash).

    An option still running after ``timeout`` seconds is stopped and reported as infinite.
    """
    script = ".timer on\n.mode trash\n" + (sql.strip().rstrip(";") + ";\n") * repeat
    try:
        done = subprocess.run([duckdb_cli, "-readonly", str(db)], input=script, capture_output=True, text=True,
                              timeout=timeout * repeat)
    except subprocess.TimeoutExpired:
        return float("inf"), float("inf")
    times = [float(t) for t in TIMER.findall(done.stdout)]
    if len(times) != repeat or done.returncode:
        raise RuntimeError(f"duckdb shell failed on {sql[:80]!r}: {done.stderr.strip()[:300]}")
    return min(times), times[0]


AREA_INDEX = """(SELECT scan_key, area, list(neuron_idx + 1 ORDER BY neuron_idx) AS idx
                 FROM neurons GROUP BY scan_key, area)"""


def queries(first_scan: str, image_id: int) -> list[ShellQuery]:
    q_mean = "mean response per (scan, area, tier)"
    q_image = f"every response to image {image_id}, all scans"
    return [
        ShellQuery("unnest + join (current schema)", q_mean, f"""
            SELECT n.scan_key, n.area, t.tier, avg(u.value) AS mean
            FROM (SELECT scan_key, trial_id, unnest(response) AS value,
                         unnest(generate_series(0, len(response) - 1)) AS neuron_idx
                  FROM responses WHERE scan_key = '{first_scan}') u
            JOIN neurons n USING (scan_key, neuron_idx) JOIN trials t USING (scan_key, trial_id)
            GROUP BY ALL""", "1"),
        ShellQuery("shipped view responses_long (current schema)", q_mean, f"""
            SELECT scan_key, area, tier, avg(response) AS mean FROM responses_long
            WHERE scan_key = '{first_scan}' GROUP BY ALL""", "1"),
        ShellQuery("list_select with per-area index lists (current schema)", q_mean, f"""
            SELECT r.scan_key, a.area, t.tier,
                   sum(list_sum(list_select(r.response, a.idx))) / sum(len(a.idx)) AS mean
            FROM responses r JOIN trials t USING (scan_key, trial_id) JOIN {AREA_INDEX} a USING (scan_key)
            GROUP BY ALL""", "all"),
        ShellQuery("summary table response_area_sums (built at ingest)", q_mean, """
            SELECT s.scan_key, s.area, t.tier, sum(s.total) / sum(s.n_neurons) AS mean
            FROM response_area_sums s JOIN trials t USING (scan_key, trial_id)
            GROUP BY ALL""", "all"),
        ShellQuery("long table proto_long (scan, trial, neuron, value)", q_mean, """
            SELECT n.scan_key, n.area, t.tier, avg(l.value) AS mean
            FROM proto_long l JOIN neurons n USING (scan_key, neuron_idx) JOIN trials t USING (scan_key, trial_id)
            GROUP BY ALL""", "1"),
        ShellQuery("join trials -> responses lists (current schema)", q_image, f"""
            SELECT r.scan_key, r.trial_id, r.response
            FROM trials t JOIN responses r USING (scan_key, trial_id) WHERE t.image_id = {image_id}""", "all"),
        ShellQuery("shipped view responses_long (current schema)", q_image, f"""
            SELECT scan_key, trial_id, neuron_idx, area, response FROM responses_long
            WHERE image_id = {image_id}""", "all"),
        ShellQuery("same, one row per neuron with area (current schema)", q_image, f"""
            SELECT u.scan_key, u.trial_id, n.area, n.unit_id, u.value
            FROM (SELECT r.scan_key, r.trial_id, unnest(r.response) AS value,
                         unnest(generate_series(0, len(r.response) - 1)) AS neuron_idx
                  FROM trials t JOIN responses r USING (scan_key, trial_id) WHERE t.image_id = {image_id}) u
            JOIN neurons n USING (scan_key, neuron_idx)""", "all"),
        ShellQuery("responses_by_image (image_id in, rows sorted by it)", q_image, f"""
            SELECT scan_key, trial_id, response FROM responses_by_image WHERE image_id = {image_id}""", "all"),
        ShellQuery("long table, filtered by image", q_image, f"""
            SELECT l.scan_key, l.trial_id, l.neuron_idx, l.value
            FROM trials t JOIN proto_long l USING (scan_key, trial_id) WHERE t.image_id = {image_id}""", "1"),
    ]


@dataclass(frozen=True)
class Prototype:
    table: str
    seconds: float
    mb: float
    scans: str


def build_prototypes(source_db: Path, scratch: Path, first_scan: str) -> list[Prototype]:
    """Copy the database and add the candidate tables; returns what each cost to build."""
    for suffix in ("", ".wal"):
        Path(str(scratch) + suffix).unlink(missing_ok=True)
    shutil.copyfile(source_db, scratch)
    built = []
    with duckdb.connect() as conn:
        # as scandb writes: with DuckDB's default row groups a checkpoint would merge and rewrite them all
        conn.execute(f"ATTACH '{scratch}' AS scratch (ROW_GROUP_SIZE {ROW_GROUP_SIZE})")
        conn.execute("USE scratch")
        before = scratch.stat().st_size
        started = time.perf_counter()
        conn.execute(f"""
            CREATE TABLE response_area_sums AS
            SELECT r.scan_key, r.trial_id, a.area, len(a.idx) AS n_neurons,
                   list_sum(list_select(r.response, a.idx)) AS total
            FROM responses r JOIN {AREA_INDEX} a USING (scan_key)""")
        conn.execute("CHECKPOINT")
        built.append(Prototype("response_area_sums", time.perf_counter() - started,
                               (scratch.stat().st_size - before) / 1e6, "all"))
        before = scratch.stat().st_size
        started = time.perf_counter()
        conn.execute(f"""
            CREATE TABLE proto_long AS
            SELECT scan_key, trial_id, unnest(generate_series(0, len(response) - 1))::INTEGER AS neuron_idx,
                   unnest(response) AS value
            FROM responses WHERE scan_key = '{first_scan}'""")
        conn.execute("CHECKPOINT")
        built.append(Prototype("proto_long", time.perf_counter() - started,
                               (scratch.stat().st_size - before) / 1e6, "1"))
        before = scratch.stat().st_size
        started = time.perf_counter()
        conn.execute("""
            CREATE TABLE responses_by_image AS
            SELECT r.scan_key, r.trial_id, t.image_id, t.tier, r.response
            FROM responses r JOIN trials t USING (scan_key, trial_id)
            ORDER BY r.scan_key, t.image_id, r.trial_id""")
        conn.execute("CHECKPOINT")
        built.append(Prototype("responses_by_image", time.perf_counter() - started,
                               (scratch.stat().st_size - before) / 1e6, "all"))
    return built
