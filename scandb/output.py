"""Rendering results for the terminal: tables, CSV, JSON and scan summaries."""

from __future__ import annotations

import csv
import io
import json
from typing import TYPE_CHECKING

import numpy as np

from .errors import UsageError

if TYPE_CHECKING:
    from .query import ScanDB


def render(columns: list[str], rows: list[tuple], fmt: str) -> str:
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)
        return buf.getvalue().rstrip("\n")
    if fmt == "json":
        return json.dumps([dict(zip(columns, row)) for row in rows], default=str, indent=1)
    return format_table(columns, rows)


def format_table(columns: list[str], rows: list[tuple]) -> str:
    """A plain text table with a row count, as the DuckDB shell prints one."""
    cells = [[str(c) for c in columns]] + [["NULL" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines + [f"({len(rows)} row{'s' if len(rows) != 1 else ''})"])


def scan_summary(db: "ScanDB", scan: str) -> str:
    found = db.conn.execute("SELECT name, n_trials, n_neurons, image_shape, image_dtype, source_name, "
                            "ingested_at FROM scans WHERE scan_key = ?", [scan]).fetchone()
    if found is None:
        known = [r[0] for r in db.conn.execute("SELECT scan_key FROM scans ORDER BY 1").fetchall()]
        raise UsageError(f"no scan {scan!r} in the database (it holds: {', '.join(known) or 'nothing'})")
    name, n_trials, n_neurons, shape, dtype, source, when = found
    tiers = db.conn.execute("SELECT tier, count(*) FROM trials WHERE scan_key = ? GROUP BY tier ORDER BY tier",
                            [scan]).fetchall()
    areas = db.conn.execute("SELECT coalesce(area, '?'), coalesce(layer, '?'), count(*) FROM neurons "
                            "WHERE scan_key = ? GROUP BY ALL ORDER BY ALL", [scan]).fetchall()
    stats = db.conn.execute("SELECT variable, source, string_agg(stat, ', ' ORDER BY stat) FROM statistics "
                            "WHERE scan_key = ? GROUP BY ALL ORDER BY ALL", [scan]).fetchall()
    images = db.conn.execute("SELECT count(DISTINCT image_hash), count(DISTINCT image_id) FROM trials "
                             "WHERE scan_key = ?", [scan]).fetchone()
    lines = [f"scan {scan}: {name}",
             f"  source      {source}, ingested {when:%Y-%m-%d %H:%M}",
             f"  trials      {n_trials}: " + ", ".join(f"{t} {c}" for t, c in tiers),
             f"  neurons     {n_neurons}: " + ", ".join(f"{a} {l} {c}" for a, l, c in areas),
             f"  images      {tuple(shape)} {np.dtype(dtype).name}, {images[0]} distinct files, {images[1]} image ids",
             "  statistics  " + ("; ".join(f"{v}/{s}: {st}" for v, s, st in stats) or "none")]
    return "\n".join(lines)
