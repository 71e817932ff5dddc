"""The keyword filters of ``trials()``, ``neurons()`` and friends, as bound SQL.

A value that exists nowhere in the database (``tier="testing"``, an unknown scan key) is a
``UsageError`` naming the known values: it is a typo, not an empty answer. A combination of
known values that matches no row is an empty answer.
"""

from __future__ import annotations

from collections.abc import Iterable

import duckdb
import numpy as np

from ..errors import UsageError

SHOWN = 12
"""Known values named in an error, at most."""


def filters(conn: duckdb.DuckDBPyConnection, table: str, **arguments: tuple[str, object]
            ) -> tuple[list[str], list]:
    """``argument=(column, value)`` pairs as clauses and parameters, each value checked.

    Column and table names are scandb's own, never users'; values are bound.
    """
    clauses, values = [], []
    for argument, (column, value) in arguments.items():
        if value is None:
            continue
        items = _items(value)
        check_known(conn, table, column, items, argument)
        clauses.append(f"{column} IN ({', '.join('?' * len(items)) or 'NULL'})")
        values.extend(items)
    return clauses, values


def where(clauses: list[str]) -> str:
    return f"WHERE {' AND '.join(clauses)}" if clauses else ""


def check_known(conn: duckdb.DuckDBPyConnection, table: str, column: str, items: list, argument: str) -> None:
    """Raise when any of ``items`` appears in no row of ``table.column``."""
    if not items:
        return
    present = {r[0] for r in conn.execute(
        f"SELECT DISTINCT {column} FROM {table} WHERE {column} IN ({', '.join('?' * len(items))})",
        items).fetchall()}
    absent = [v for v in items if v not in present]
    if absent:
        shown = absent[0] if len(absent) == 1 else absent
        raise UsageError(f"{argument}={shown!r} exists nowhere in the database; "
                         f"known {argument} values: {known_values(conn, table, column)}")


def known_values(conn: duckdb.DuckDBPyConnection, table: str, column: str) -> str:
    """The column's distinct values, or their range when they are numbers."""
    kind = conn.execute(f"SELECT typeof(min({column})) FROM {table}").fetchone()[0]
    if kind in ("BIGINT", "INTEGER", "SMALLINT", "HUGEINT", "DOUBLE", "FLOAT"):
        low, high, count = conn.execute(f"SELECT min({column}), max({column}), count(DISTINCT {column}) "
                                        f"FROM {table}").fetchone()
        return f"{count} distinct, from {low} to {high}"
    rows = [r[0] for r in conn.execute(f"SELECT DISTINCT {column} FROM {table} WHERE {column} IS NOT NULL "
                                       f"ORDER BY 1 LIMIT {SHOWN + 1}").fetchall()]
    if not rows:
        return "none"
    more = conn.execute(f"SELECT count(DISTINCT {column}) FROM {table}").fetchone()[0] - SHOWN
    return ", ".join(map(str, rows[:SHOWN])) + (f" and {more} more" if more > 0 else "")


def _items(value) -> list:
    """A value or an iterable of values as plain Python scalars."""
    if isinstance(value, (str, bytes, int, float, np.generic)):
        value = [value]
    return [v.item() if isinstance(v, np.generic) else v for v in _iterable(value)]


def _iterable(value) -> Iterable:
    try:
        return list(value)
    except TypeError:
        raise UsageError(f"a filter takes a value or a list of values; got {type(value).__name__}") from None
