"""Rendering query results for the terminal: tables, CSV, JSON."""

from __future__ import annotations

import csv
import io
import json


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


MAX_CELL = 80
"""Widest value a table shows, in characters; longer ones end in '…' (as the DuckDB shell
shortens them), so one neuron's 8,000-value response list stays one readable line."""


def shorten(text: str, width: int = MAX_CELL) -> str:
    """At most ``width`` characters: the start of the text, then '…' when cut. Text of several
    lines (an EXPLAIN plan) is meant to be read whole and is left as it is."""
    if len(text) <= width or "\n" in text:
        return text
    return text[:width - 1] + "…"


def format_table(columns: list[str], rows: list[tuple]) -> str:
    """A plain text table with a row count, as the DuckDB shell prints one."""
    cells = [[str(c) for c in columns]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines + [f"({len(rows)} row{'s' if len(rows) != 1 else ''})"])


def _cell(value) -> str:
    """A value as the DuckDB shell shows it: NULL, lists as [a, b] (numpy arrays too), long text shortened."""
    if value is None:
        return "NULL"
    if hasattr(value, "tolist"):  # numpy arrays and scalars from a DataFrame
        value = value.tolist()
    return shorten(str(value))
