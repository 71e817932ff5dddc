"""A query string as the DuckDB shell takes it: statements split by DuckDB's own parser, and
which of them print a result (the shell prints nothing for SET and the like)."""

from __future__ import annotations

import duckdb

from ..catalog.transaction import explain
from ..errors import UsageError

PRINTED_STATEMENTS = ("SELECT", "EXPLAIN", "CALL", "PRAGMA")
"""Statement types whose result is shown."""


def split(query: str) -> list:
    """The statements of ``query``; none at all is a usage error, as is one DuckDB cannot parse."""
    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error as exc:
        raise explain(exc, "query", users_sql=True) from None
    if not statements:
        raise UsageError("no SQL statement given; for example: db.run_each(\"SELECT * FROM scans\")",
                         cli_message="no SQL statement given; for example: scandb sql \"SELECT * FROM scans\"")
    return statements


def prints(statement) -> bool:
    """Whether the shell shows this statement's result."""
    return statement.type.name in PRINTED_STATEMENTS
