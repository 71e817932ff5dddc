"""The newest snapshot of a lake, read from its catalog database directly.

Every call of a ``ScanDB`` first asks whether another process committed since the last
call, because the per-scan readers it keeps may then be stale. Asked through DuckLake
(``current_snapshot()``) that is a catalog transaction of its own: most of a 128-trial
fetch from kept readers, and the slowest part of a fetch while other processes ingest.
Asked of the catalog database itself it is one indexed read, a small fraction of that for
PostgreSQL (psycopg) and more for a SQLite catalog (DuckDB's sqlite_scanner, which opens the
file for each query). A SQLite catalog is therefore asked only when its files' stat changed
since it was last asked, and a stat is cheaper still (BENCHMARKS.md, Numbers behind the
code: newest snapshot).
"""

from __future__ import annotations

import os
import time

import duckdb

from ..errors import DatabaseError, first_line
from .lake import CATALOGS, Lake, extension_statements, quote

NEWEST = "SELECT max(snapshot_id) FROM ducklake_snapshot"

QUIET_S = 0.1
"""How long a SQLite catalog's files must have been unchanged for their stat to stand for
their content. A commit within the same tick of the file system's clock as the last change
(at most 10 ms on Linux) could leave size and mtime as they were; one after a quiet tenth
of a second cannot."""

COARSE_QUIET_S = 2.1
"""The same on a file system that keeps whole seconds (or two) of mtime."""


def _quiet(files: tuple) -> bool:
    """Whether the files' newest change is older than the file system's clock can blur."""
    mtimes = [f[2] for f in files if f is not None]
    coarse = all(m % 1_000_000_000 == 0 for m in mtimes)
    return time.time_ns() - max(mtimes) > (COARSE_QUIET_S if coarse else QUIET_S) * 1e9


class NewestSnapshot:
    """``newest()``: the id of the lake's newest snapshot, or None when this machine has no
    direct route to its catalog (PostgreSQL without psycopg): then ask DuckLake."""

    def __init__(self, lake: Lake, config: dict):
        self.lake = lake
        self.config = config
        """DuckDB's settings for the SQLite catalog's reader (scandb's: no extension downloads)."""
        self._conn = None
        self._errors: tuple[type[BaseException], ...] = ()
        self._unavailable = False
        self._known: int | None = None
        self._quiet_files: tuple | None = None
        """A SQLite catalog's files as they were at the last question, when they had been
        unchanged for ``QUIET_S`` already: while they stay so, nothing was committed."""

    def newest(self) -> int | None:
        files = self._catalog_files()
        if files is not None and files == self._quiet_files:
            return self._known
        self._known = self._ask()
        self._quiet_files = files if files is not None and _quiet(files) else None
        return self._known

    def _catalog_files(self) -> tuple | None:
        """(inode, size, mtime) of a SQLite catalog and of its write-ahead log: every commit
        writes one of them. None for PostgreSQL, or when they cannot be read."""
        if self.lake.catalog != "sqlite":
            return None
        found = []
        for path in (self.lake.location, self.lake.location + "-wal"):
            try:
                stat = os.stat(path)
            except FileNotFoundError:
                found.append(None)
                continue
            except OSError:
                return None
            found.append((stat.st_ino, stat.st_size, stat.st_mtime_ns))
        return tuple(found) if found[0] is not None else None

    def _ask(self) -> int | None:
        if self._unavailable:
            return None
        if self._conn is None:
            self._conn = self._connect()
            if self._conn is None:
                self._unavailable = True
                return None
        try:
            return self._read()
        except self._errors:
            self.close()  # e.g. the PostgreSQL server restarted: connect once more
        self._conn = self._connect()
        try:
            return self._read()
        except self._errors as exc:
            self.close()
            raise DatabaseError(f"{self.lake.name}: cannot read the catalog ({first_line(str(exc))})") from None

    def _read(self) -> int | None:
        if self.lake.catalog == "sqlite":  # max() inside SQLite, on its key, not over every row scanned out
            newest = self._conn.execute(f"SELECT * FROM sqlite_query('catalog', {quote(NEWEST)})").fetchall()[0][0]
        else:
            newest = self._conn.execute(NEWEST).fetchall()[0][0]
        return None if newest is None else int(newest)

    def _connect(self):
        if self.lake.catalog == "sqlite":
            return self._sqlite_reader()
        try:
            import psycopg
        except ImportError:
            return None
        self._errors = (psycopg.Error,)
        try:
            return psycopg.connect(self.lake.location, autocommit=True)
        except psycopg.Error as exc:
            raise DatabaseError(f"{self.lake.name}: cannot reach the catalog ({first_line(str(exc))})") from None

    def _sqlite_reader(self) -> duckdb.DuckDBPyConnection:
        """A DuckDB of its own with the SQLite catalog attached read-only, on one thread (a
        query on it never waits for a pool thread to be scheduled).

        Not Python's sqlite3: a second copy of SQLite in the process does not see the first
        one's POSIX locks, so DuckLake closing its catalog drops them, another process then
        deletes the write-ahead log as if nobody had the catalog open, and the second copy
        reads a stale catalog from the deleted log (measured; sqlite.org/howtocorrupt.html
        2.2.1). DuckDB's sqlite_scanner is the copy DuckLake itself uses.
        """
        self._errors = (duckdb.Error,)
        conn = duckdb.connect(config={**self.config, "threads": 1})
        try:
            for statement in extension_statements(CATALOGS[self.lake.catalog]):
                conn.execute(statement)
            conn.execute(f"ATTACH {quote(self.lake.location)} AS catalog (TYPE sqlite, READ_ONLY)")
        except duckdb.Error as exc:
            conn.close()
            raise DatabaseError(f"{self.lake.name}: cannot read the catalog ({first_line(str(exc))})") from None
        return conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

