"""A lake: DuckLake tables in a catalog database (SQLite or PostgreSQL) and Parquet files in
a data path every machine reads, the store's folder in it (``DATA_PATH/scandb.images/``).

Readers never block writers, so a lake stays attached for the life of a ``Database``.
Writers take the lake's writer lock and claim the write inside their transaction, so two
writes conflict and one is retried (``lake.py``). Every commit is a snapshot, labelled with
what it did; a removed or replaced scan's files stay while an unexpired snapshot
references them, and ``gc`` expires snapshots a newer one replaced long enough ago.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path

import duckdb

from ..errors import DatabaseError
from . import OFFLINE
from . import lake as lakes
from . import snapshots
from ..store.folder import key_of
from .kind import Catalog, Retention
from .newest import NewestSnapshot

DAY_S = 86_400.0


class LakeCatalog(Catalog):
    has_snapshots = True
    enforces_keys = False
    shared_store = True
    garbage_age = lakes.IN_FLIGHT_S

    def __init__(self, lake: lakes.Lake):
        self.lake = lake
        self.name = lake.name
        self.root = Path()
        """The data path, known once the lake is opened (it is stored in the lake)."""
        self._newest = NewestSnapshot(lake, OFFLINE)

    @property
    def store_folder(self) -> Path | str:
        return lakes.store_folder(self.root)

    def open(self, read_only: bool, wait: float, snapshot: int | None) -> duckdb.DuckDBPyConnection:
        conn = lakes.open_lake(self.lake, OFFLINE, read_only=read_only, snapshot=snapshot)
        self.root = self.lake.data_path or lakes.data_path(conn)
        return conn

    def release(self, conn: duckdb.DuckDBPyConnection) -> None:
        conn.close()

    def close(self) -> None:
        self._newest.close()

    def stamp(self, conn_now, snapshot: int | None) -> tuple:
        """The newest snapshot, read from the catalog database directly (catalog/newest.py);
        a lake read at a snapshot never changes."""
        if snapshot is not None:
            return (snapshot,)
        newest = self._newest.newest()
        return (newest if newest is not None else lakes.current_snapshot(conn_now()),)

    @contextmanager
    def writer_lock(self):
        with lakes.writer_lock(self.root, self.name):
            yield

    def claim_writes(self, conn: duckdb.DuckDBPyConnection) -> None:
        lakes.claim_writes(conn)

    def retrying(self, action, doing: str):
        return lakes.retry_conflicts(action, doing)

    def label(self, conn: duckdb.DuckDBPyConnection, message: str) -> None:
        snapshots.label_commit(conn, message)

    def referenced(self, conn, table: str, column: str, store: str, retention: Retention | None = None) -> set[str]:
        """In any snapshot from the retention's oldest (default: the oldest unexpired) to the
        newest; keys of snapshots older than revision 0011 begin with the store folder's name."""
        oldest = retention.oldest_snapshot if retention is not None else None
        if oldest is None:
            oldest = snapshots.oldest_snapshot(conn)
        return {key_of(key) if key else key for key in snapshots.referenced_since(conn, table, column, oldest)}

    def release_files_of(self, conn, scan_key: str, why: str) -> int:
        return 0  # the snapshots before this one keep referencing them

    def release_keys(self, conn, store: str, keys: list[str], why: str) -> int:
        return 0  # the snapshots before this one keep referencing them

    def retain(self, conn, older_than_days: float, dry_run: bool) -> Retention:
        """Expire the snapshots a newer one replaced more than ``older_than_days`` ago."""
        history = snapshots.snapshots(conn)
        expired = snapshots.expiring(history, time.time() - older_than_days * DAY_S)
        kept = history[len(expired):]
        if not dry_run:
            ids = [s.id for s in expired]
            self.retrying(lambda: snapshots.expire(conn, ids), f"{self.name}: expiring snapshots")
        return Retention(oldest_snapshot=kept[0].id, expired=expired, kept=[s.id for s in kept])

    def shell_arguments(self, binary: str, *, write: bool) -> list[str]:
        """Its extensions loaded by path, the lake attached as ``scandb`` (read-only unless
        ``write``) and used. The shell must be the DuckDB release the extension wheels were
        built for (duckdb-cli 1.5.5 with the 1.5.5 wheels)."""
        from ..store.bucket import check_access
        from .file_catalog import SHELL_OFFLINE

        if self.lake.exists() is False:
            raise DatabaseError(f"{self.name}: no lake there (create one with 'scandb ingest')")
        stored = None
        if not lakes.on_bucket(self.lake.data_path):  # a bucket's data path needs httpfs and a secret
            conn = lakes.open_lake(self.lake, OFFLINE, read_only=True)
            try:
                stored = lakes.data_path(conn)
            finally:
                conn.close()
        bucket = next((p for p in (self.lake.data_path, stored) if lakes.on_bucket(p)), None)
        if bucket is not None:  # a refused key is one line here, not DuckDB's at the first query
            check_access(str(bucket))
        statements = lakes.open_statements(self.lake, read_only=not write, stored=stored)
        return [binary, *SHELL_OFFLINE, "-cmd", "; ".join(statements)]

    def current_snapshot(self, conn: duckdb.DuckDBPyConnection) -> int | None:
        return snapshots.current(conn)
