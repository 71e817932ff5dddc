"""What differs between a database file and a lake, behind one interface.

``Database`` holds one ``Catalog`` and asks it, never which kind it has: how to open and
release the DuckDB connection, what changes when another process writes (``stamp``), how
writers keep out of each other's way (``writer_lock``, ``claim_writes``, ``retrying``), how
a commit is labelled, and retention: which store files rows still reference, which a
removal releases, and what ``gc`` expires before collecting. ``file_catalog.py`` and
``lake_catalog.py`` are the two; the garbage collector and orphan collection are one
algorithm each over this interface (``maintenance/gc.py``, ``maintenance/orphans.py``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb


@dataclass
class Retention:
    """What ``gc`` keeps: store files rows reference at or after ``oldest_snapshot`` (a lake),
    or released at or after ``released_after`` (a file), plus every file rows reference now."""
    oldest_snapshot: int | None = None
    released_after: datetime | None = None
    expired: list = field(default_factory=list)
    """Snapshots expired (or, in a dry run, that would be)."""
    kept: list[int] = field(default_factory=list)
    """Snapshot ids left."""


class Catalog(ABC):
    name: str
    """How messages name the database."""

    has_snapshots: bool
    """Whether every commit is a snapshot that can be read later (a lake)."""

    shared_store: bool
    """Whether other processes may write the store while this one does: a file a failed
    write created may then be one another writer also created and will commit (files are
    named by content), so it is left to the garbage collector."""

    garbage_age: float
    """Seconds an unreferenced store file must have existed before it is garbage: 0 with
    one writer at a time; more where another process's ingest may be writing files its
    rows will reference when it commits."""

    enforces_keys: bool
    """Whether the engine accepts PRIMARY KEY and UNIQUE (DuckLake refuses them)."""

    root: Path
    """The folder the store's folder is in (a file's folder; a lake's data path, known
    once it is opened)."""

    @property
    @abstractmethod
    def store_folder(self) -> Path:
        """The store's folder: keys in rows are relative to it."""

    # -- the connection -------------------------------------------------------------------

    @abstractmethod
    def open(self, read_only: bool, wait: float, snapshot: int | None) -> duckdb.DuckDBPyConnection:
        """A connection with the database as its current catalog."""

    @abstractmethod
    def release(self, conn: duckdb.DuckDBPyConnection) -> None:
        """Let other processes have the database (the connection is not used again)."""

    def close(self) -> None:
        """Free what the catalog keeps between connections."""

    def hand_over(self, held: bool) -> None:
        """Between two writes of one command, with the connection released."""

    @abstractmethod
    def stamp(self, conn_now, snapshot: int | None) -> tuple:
        """What changes when any process writes (``conn_now()`` gives a connection if needed)."""

    # -- writing --------------------------------------------------------------------------

    @contextmanager
    def writer_lock(self) -> Iterator[None]:
        """One write at a time, where the engine does not ensure it."""
        yield

    def claim_writes(self, conn: duckdb.DuckDBPyConnection) -> None:
        """Inside a write transaction: make it conflict with any other process's write."""

    def retrying(self, action, doing: str):
        """``action()``, run again when another process's commit made it fail."""
        return action()

    def label(self, conn: duckdb.DuckDBPyConnection, message: str) -> None:
        """Inside a write transaction: say what the commit does, where commits are kept."""

    # -- retention ------------------------------------------------------------------------

    @abstractmethod
    def referenced(self, conn: duckdb.DuckDBPyConnection, table: str, column: str, store: str,
                   retention: Retention | None = None) -> set[str]:
        """The values of ``table.column`` (keys of ``store``) that still name a file: now, and
        in what ``retention`` keeps (default: everything kept)."""

    @abstractmethod
    def release_files_of(self, conn: duckdb.DuckDBPyConnection, scan_key: str, why: str) -> int:
        """Inside the transaction deleting a scan's rows: keep the files only it used for
        readers that started before; returns how many were released."""

    @abstractmethod
    def release_keys(self, conn: duckdb.DuckDBPyConnection, store: str, keys: list[str], why: str) -> int:
        """Inside the transaction deleting the rows naming these files of ``store`` (a
        model's predictions): keep them for readers that started before; returns how many."""

    @abstractmethod
    def retain(self, conn: duckdb.DuckDBPyConnection, older_than_days: float, dry_run: bool) -> Retention:
        """``gc``'s first step: forget what no reader started in the last ``older_than_days``
        can need (unless ``dry_run``), and say what is kept."""

    @abstractmethod
    def shell_arguments(self, binary: str, *, write: bool) -> list[str]:
        """The DuckDB shell's argv that opens the database as scandb does (checked first)."""

    def current_snapshot(self, conn: duckdb.DuckDBPyConnection) -> int | None:
        """The snapshot a connection reads (None without snapshots)."""
        return None
