"""The one transaction context and the one translation of DuckDB errors into scandb's.

Every write (ingest, remove, migrate) runs inside ``transaction(conn)``; every DuckDB error
a user may see passes through ``explain`` once, classified by its exception class (and, for
operating-system causes DuckDB reports only inside its text, by that cause).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import duckdb

from ..errors import DamageError, DatabaseError, ScandbError, UsageError, first_line
from ..store.bucket import refused_in_duckdb

DENIED = ("Read-only file system", "Permission denied", "Operation not permitted")
"""Operating-system causes of a file that may not be written."""

WRITE_FAILURES = ("No space left on device", "Disk quota exceeded", "File too large", *DENIED)
"""Operating-system causes DuckDB reports inside its own error text."""

DAMAGE = ("Corrupt database file", "Could not read enough bytes", "not a valid DuckDB database file",
          "database file is corrupt")
"""DuckDB's words for a database file whose bytes are not what it wrote (truncated, overwritten)."""

QUERY_ERRORS = (duckdb.ParserException, duckdb.BinderException, duckdb.CatalogException,
                duckdb.ConversionException, duckdb.InvalidInputException, duckdb.OutOfRangeException,
                duckdb.NotImplementedException, duckdb.TypeMismatchException)
"""Errors in what was asked (a typo, a wrong type), not in the database."""

EXPIRED_SNAPSHOT = re.compile(r"No snapshot found at version (\d+)")
"""DuckLake's words when a connection pinned to a snapshot queries after ``gc`` expired it."""


@contextmanager
def transaction(conn: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """BEGIN ... COMMIT; any exception rolls back and propagates unchanged."""
    conn.execute("BEGIN TRANSACTION")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise


def insert_arrow(conn: duckdb.DuckDBPyConnection, table: str, data, select: str = "*") -> None:
    """Insert an Arrow table's rows by column name (``select``: e.g. a cast of a JSON column)."""
    conn.register("_batch", data)
    try:
        conn.execute(f"INSERT INTO {table} BY NAME SELECT {select} FROM _batch")
    finally:
        conn.unregister("_batch")


def rollback(conn: duckdb.DuckDBPyConnection) -> None:
    """Roll back; a connection DuckDB invalidated (e.g. disk full) has nothing left to undo."""
    try:
        conn.execute("ROLLBACK")
    except duckdb.Error:
        pass


def write_failure(message: str) -> str | None:
    """The operating-system cause of a failed write, when DuckDB's text names one."""
    return next((cause for cause in WRITE_FAILURES if cause in message), None)


def damage(message: str) -> str | None:
    """DuckDB's words for a damaged database file, when its text has them."""
    return next((cause for cause in DAMAGE if cause in message), None)


def explain(exc: BaseException, doing: str, *, users_sql: bool = False, rolled_back: bool = False,
            opening: str | None = None) -> ScandbError:
    """One line for a failure while ``doing`` something (e.g. "query", "removing 1-2-3").

    With ``users_sql`` (the SQL came from the user), errors in the request become a
    ``UsageError`` that keeps DuckDB's hints such as "Candidate bindings"; a damaged file
    is a ``DamageError``; everything else is a ``DatabaseError``. With ``opening``
    ("reading" or "writing"), ``doing`` is the database's name and the failure opened it.
    """
    if isinstance(exc, ScandbError):
        return exc
    refused = refused_in_duckdb(str(exc))  # a lake's Parquet files on a bucket, credentials refused
    if refused is not None:
        return refused
    text = first_line(str(exc))
    if damage(str(exc)):
        where = doing if opening else f"{doing} failed"
        return DamageError(f"{where}: the database file is damaged ({text}); restore it from a backup")
    if opening:
        denied = next((c for c in DENIED if c in text), None)
        if denied and opening == "writing":
            return DatabaseError(f"{doing}: cannot open for writing ({denied}): make the file and its folder "
                                 "writable")
        return DatabaseError(f"{doing}: cannot open database ({text})")
    expired = EXPIRED_SNAPSHOT.search(str(exc))
    if expired:
        return DatabaseError(f"{doing} failed: snapshot {expired[1]} no longer exists ('scandb gc' expired it after "
                             "this connection opened it); connect again, at a newer snapshot ('scandb snapshots' "
                             "lists them)")
    if users_sql and isinstance(exc, QUERY_ERRORS):
        return UsageError(f"{doing} failed: {' '.join(str(exc).split())}")
    failed = "failed and was rolled back" if rolled_back else "failed"
    cause = write_failure(text)
    if cause:
        return DatabaseError(f"{doing} {failed}: cannot write ({cause})")
    return DatabaseError(f"{doing} {failed} ({type(exc).__name__}: {text or 'no message'})")
