"""A database file: one DuckDB file on one machine, its store beside it (``lab.images/``).

DuckDB lets one process write a file, and only while no other has it open, so a file is
ATTACHed for the length of a call and DETACHed after, waiting (``wait``) while another
process holds it. The file is ATTACHed to one in-memory DuckDB session kept until
``close()``: variables, temporary tables and settings outlast the file's release, as in
one DuckDB shell. A removed or replaced scan's files are listed in ``released_files``
until ``gc`` forgets them.
"""

from __future__ import annotations

import logging
import re
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb

from ..errors import DamageError, DatabaseError
from . import OFFLINE
from .kind import Catalog, Retention
from .transaction import explain

log = logging.getLogger("scandb")

LOCK_MESSAGE = re.compile(r"Conflicting lock is held in (?P<program>.*?) \(PID (?P<pid>\d+)\)")


def image_dir_for(db_path: Path) -> Path:
    """The image store beside a database: ``scandb.duckdb`` -> ``scandb.images/``."""
    return db_path.with_name(db_path.stem + ".images") if db_path.suffix else db_path.with_name(db_path.name + ".images")


DUCKDB_MAGIC = b"DUCK"
"""Bytes 8-11 of every DuckDB database file."""


POLL_S = 0.05
"""How often a process waiting for the file tries again: well inside ``HANDOVER_S``, the pause a
multi-scan ingest makes between scans, so a waiting process gets in there."""


HANDOVER_S = 0.15
"""How long a multi-scan ingest leaves the file free between scans (see ``Database.hand_over``)."""


def _attach(session: duckdb.DuckDBPyConnection, path: Path, read_only: bool, wait: float) -> None:
    """ATTACH the file to ``session`` as ``scandb`` and USE it, trying again while another
    process holds the file, until ``wait`` seconds have passed (saying so once)."""
    refuse_foreign_file(path)
    deadline = time.monotonic() + wait
    said_waiting = False
    while True:
        try:
            session.execute(attach_statement(path, read_only))
            session.execute("USE scandb")
            return
        except duckdb.IOException as exc:
            message = str(exc)
            lock = LOCK_MESSAGE.search(message)
            if lock and time.monotonic() < deadline:
                if not said_waiting:
                    log.info("%s: in use by %s (PID %s); waiting up to %g s", path, lock["program"], lock["pid"],
                             wait)
                    said_waiting = True
                time.sleep(POLL_S)
                continue
            if lock:
                raise _in_use(path, lock, wait) from None
            if "No such file" in message or "does not exist" in message:
                raise _missing(path) from None
            raise explain(exc, str(path), opening="reading" if read_only else "writing") from None
        except duckdb.Error as exc:
            raise explain(exc, str(path), opening="reading" if read_only else "writing") from None


def _missing(path: Path) -> DatabaseError:
    return DatabaseError(f"{path}: no database there (create one with scandb.connect(path, read_only=False))",
                         cli_message=f"{path}: no database there (create one with 'scandb ingest')")


def _in_use(path: Path, lock: re.Match, waited: float) -> DatabaseError:
    message = (f"{path}: in use by another process ({lock['program']}, PID {lock['pid']}); DuckDB lets "
               f"one process write a file, and only while no other has it open: wait for it to finish")
    if waited:
        return DatabaseError(f"{message} (waited {waited:g} s)")
    return DatabaseError(f"{message} or pass wait=SECONDS", cli_message=f"{message} or pass --wait SECONDS")


def refuse_foreign_file(path: Path) -> None:
    """A file that is not a DuckDB database (SQLite, CSV, anything) is refused by its header,
    before DuckDB guesses a format and looks for an extension to read it."""
    try:
        with open(path, "rb") as f:
            header = f.read(12)
    except FileNotFoundError:
        return
    except OSError:
        return  # DuckDB's own open reports it (permissions, a folder)
    if header and not header.strip(b"\0"):
        raise DamageError(f"{path}: the database file is damaged (its header is zeros); restore it from a backup")
    if header and header[8:12] != DUCKDB_MAGIC:
        kind = "a SQLite database" if header.startswith(b"SQLite forma") else "not a DuckDB file"
        raise DatabaseError(f"{path}: not a scandb database ({kind})")


ROW_GROUP_SIZE = 2048
"""Rows per DuckDB row group when writing (default 122,880). A scan adds ~6,000 rows, so
with the default every ingest appends to, and its checkpoint rewrites, one row group
holding every earlier scan's responses, so commits grow slower with every scan
(BENCHMARKS.md, Numbers behind the code: row groups). With
2,048 rows a commit writes only new row groups and large inserts go to disk as they fill."""


def attach_statement(path: Path, read_only: bool = False) -> str:
    """The ATTACH of every scandb connection to a file, under a fixed alias (a file's stem may
    be a reserved name such as ``main`` or ``memory``); a writer's, the DuckDB shell's
    ``scandb shell --write`` included, sets small row groups (an ATTACH option, not stored
    in the file, so every writer sets it)."""
    literal = "'" + str(path).replace("'", "''") + "'"
    return f"ATTACH {literal} AS scandb ({'READ_ONLY' if read_only else f'ROW_GROUP_SIZE {ROW_GROUP_SIZE}'})"



class FileCatalog(Catalog):
    has_snapshots = False
    enforces_keys = True
    shared_store = False
    garbage_age = 0.0

    def __init__(self, path: Path):
        self.path = path
        self.name = str(path)
        self.root = path.parent
        self._session: duckdb.DuckDBPyConnection | None = None
        """The in-memory DuckDB session the file is attached to, kept while it is detached."""

    @property
    def store_folder(self) -> Path:
        return image_dir_for(self.path)

    def open(self, read_only: bool, wait: float, snapshot: int | None) -> duckdb.DuckDBPyConnection:
        if self._session is None:
            self._session = duckdb.connect(config=OFFLINE)
        try:
            _attach(self._session, self.path, read_only, wait)
        except BaseException:
            self._drop_session_if_broken()
            raise
        return self._session

    def release(self, conn: duckdb.DuckDBPyConnection) -> None:
        try:
            conn.execute("USE memory")
            conn.execute("DETACH scandb")
        except duckdb.Error:  # a transaction left open, or a session DuckDB invalidated: closing detaches too
            self._drop_session()

    def close(self) -> None:
        self._drop_session()

    def _drop_session_if_broken(self) -> None:
        """A failed ATTACH (a damaged file) may leave the session invalidated: start afresh then."""
        try:
            self._session.execute("SELECT 1")
        except duckdb.Error:
            self._drop_session()

    def _drop_session(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def hand_over(self, held: bool) -> None:
        """Pause long enough for a process waiting for the file to get it (it tries every
        ``POLL_S``), so readers get in between scans instead of waiting for the whole batch."""
        if not held:
            time.sleep(HANDOVER_S)

    def stamp(self, conn_now, snapshot: int | None) -> tuple:
        """The file's and its write-ahead log's size and modification time."""
        return _state(self.path), _state(self.path.with_name(self.path.name + ".wal"))

    def shell_arguments(self, binary: str, *, write: bool) -> list[str]:
        """Read-only by default; for writing, the file attached with scandb's row-group size
        (an ATTACH option the file does not remember: opened plainly, the shell writes
        122,880-row groups, and its next checkpoint merges and rewrites scandb's small ones,
        so one CREATE TABLE grows the file by far more than the table; BENCHMARKS.md, Numbers
        behind the code: row groups)."""
        if not self.path.exists():
            raise DatabaseError(f"{self.path}: no database there (create one with 'scandb ingest')")
        refuse_foreign_file(self.path)
        if not write:
            return [binary, "-readonly", *SHELL_OFFLINE, str(self.path)]
        return [binary, *SHELL_OFFLINE, "-cmd", attach_statement(self.path), "-cmd", "USE scandb"]

    def referenced(self, conn, table: str, column: str, store: str, retention: Retention | None = None) -> set[str]:
        since = retention.released_after if retention is not None else None
        rows = conn.execute(f"SELECT {column} FROM {table} UNION SELECT key FROM released_files WHERE store = ?"
                            + ("" if since is None else " AND released_at >= ?"),
                            [store] + ([since] if since is not None else [])).fetchall()
        return {row[0] for row in rows}

    def release_files_of(self, conn, scan_key: str, why: str) -> int:
        """List the files only this scan uses in ``released_files``, with the time."""
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        conn.execute("""
            INSERT INTO released_files
            SELECT 'images', image_hash, ?, ? FROM (
                SELECT DISTINCT image_hash FROM trials WHERE scan_key = ?
                EXCEPT SELECT image_hash FROM trials WHERE scan_key <> ?)
            UNION ALL
            SELECT 'matrices', path, ?, ? FROM response_matrices WHERE scan_key = ?
            UNION ALL
            SELECT 'predictions', path, ?, ? FROM prediction_matrices WHERE scan_key = ?
            UNION ALL
            SELECT 'sessions', path, ?, ? FROM (
                SELECT DISTINCT path FROM modalities WHERE scan_key = ? AND path IS NOT NULL
                EXCEPT SELECT path FROM modalities WHERE scan_key <> ? AND path IS NOT NULL)
            UNION ALL
            SELECT 'meta', stored_as, ?, ? FROM (
                SELECT DISTINCT stored_as FROM scan_files WHERE scan_key = ? AND stored_as IS NOT NULL
                EXCEPT SELECT stored_as FROM scan_files WHERE scan_key <> ? AND stored_as IS NOT NULL)""",
                     [why, now, scan_key, scan_key, why, now, scan_key, why, now, scan_key,
                      why, now, scan_key, scan_key, why, now, scan_key, scan_key])
        return conn.execute("SELECT count(*) FROM released_files WHERE released_by = ? AND released_at = ?",
                            [why, now]).fetchone()[0]

    def release_keys(self, conn, store: str, keys: list[str], why: str) -> int:
        """List these files of ``store`` in ``released_files``, with the time."""
        if not keys:
            return 0
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        conn.executemany("INSERT INTO released_files VALUES (?, ?, ?, ?)", [[store, key, why, now] for key in keys])
        return len(keys)

    def retain(self, conn, older_than_days: float, dry_run: bool) -> Retention:
        """Forget the files released more than ``older_than_days`` ago."""
        from .transaction import transaction

        released_after = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(days=older_than_days)
        if not dry_run:
            try:
                with transaction(conn):
                    conn.execute("DELETE FROM released_files WHERE released_at < ?", [released_after])
            except duckdb.Error as exc:
                raise explain(exc, f"{self.name}: gc", rolled_back=True) from None
        return Retention(released_after=released_after)


SHELL_OFFLINE = ["-cmd", "SET autoinstall_known_extensions = false; SET autoload_known_extensions = false"]


def _state(path: Path) -> tuple[int, int] | None:
    try:
        found = path.stat()
    except OSError:
        return None
    return found.st_mtime_ns, found.st_size


def discard_new_database(path: Path) -> None:
    """Delete a database file this command created but put nothing in (a failed first
    ingest), with its write-ahead log and any empty image-store folders."""
    path = Path(path)
    for leftover in (path, path.with_name(path.name + ".wal")):
        leftover.unlink(missing_ok=True)
    store = image_dir_for(path)
    if store.is_dir():
        for folder in sorted((p for p in store.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            if not any(folder.iterdir()):
                folder.rmdir()
        if not any(store.iterdir()):
            store.rmdir()
