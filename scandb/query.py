"""The Python layer: connect, select trials, fetch aligned arrays."""

from __future__ import annotations


def format_table(columns: list[str], rows: list[tuple]) -> str:
    """A plain text table, as the DuckDB shell prints one."""
    cells = [[str(c) for c in columns]] + [["NULL" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines + [f"({len(rows)} row{'s' if len(rows) != 1 else ''})"])
