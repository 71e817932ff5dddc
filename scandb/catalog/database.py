"""Opening a scandb database: one DuckDB connection shared by SQLAlchemy, Alembic and
bulk Arrow calls (DuckDB refuses a second connection to one file with another
configuration), and the schema revision checks that guard it.

SQLAlchemy and Alembic load only when a migration runs: reading needs neither, and they
cost most of the command line's start-up time (see docs/architecture.md).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from ..errors import DamageError, DatabaseError, UsageError
from . import DEFAULT_DB  # noqa: F401  (re-exported: callers open DEFAULT_DB by default)
from . import DEFAULT_WAIT
from . import lake as lakes
from ..store.folder import Folder
from .newest import NewestSnapshot
from .transaction import explain

if TYPE_CHECKING:
    import sqlalchemy as sa
    from alembic.config import Config

log = logging.getLogger("scandb")

LOCK_MESSAGE = re.compile(r"Conflicting lock is held in (?P<program>.*?) \(PID (?P<pid>\d+)\)")


def image_dir_for(db_path: Path) -> Path:
    """The image store beside a database: ``scandb.duckdb`` -> ``scandb.images/``."""
    return db_path.with_name(db_path.stem + ".images") if db_path.suffix else db_path.with_name(db_path.name + ".images")


OFFLINE = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}
"""DuckDB would otherwise try to download an extension to open a foreign file (a SQLite
database makes it fetch ``sqlite_scanner``): scandb never needs the network."""

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
holding every earlier scan's responses (measured: the 4th scan's commit took 18 s). With
2,048 rows a commit writes only new row groups and large inserts go to disk as they fill."""


def attach_statement(path: Path, read_only: bool = False) -> str:
    """The ATTACH of every scandb connection to a file, under a fixed alias (a file's stem may
    be a reserved name such as ``main`` or ``memory``); a writer's, the DuckDB shell's
    ``scandb shell --write`` included, sets small row groups (an ATTACH option, not stored
    in the file, so every writer sets it)."""
    literal = "'" + str(path).replace("'", "''") + "'"
    return f"ATTACH {literal} AS scandb ({'READ_ONLY' if read_only else f'ROW_GROUP_SIZE {ROW_GROUP_SIZE}'})"


def _alembic_config() -> "Config":
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(resources.files("scandb.migrations")))
    return config


REVISION_LINE = re.compile(r'^revision\s*(?::\s*str\s*)?=\s*["\'](?P<rev>[^"\']+)["\']', re.M)
DOWN_REVISION_LINE = re.compile(r'^down_revision\s*(?::[^=]*)?=\s*(?:None|["\'](?P<rev>[^"\']+)["\'])', re.M)


def _revision_graph() -> dict[str, str | None]:
    """Each shipped revision and the one it upgrades, read from the migration files'
    ``revision = ...`` lines: checking a database's revision must not import Alembic."""
    graph: dict[str, str | None] = {}
    for entry in resources.files("scandb.migrations").joinpath("versions").iterdir():
        if not entry.name.endswith(".py") or entry.name.startswith("_"):
            continue
        text = entry.read_text()
        revision, down = REVISION_LINE.search(text), DOWN_REVISION_LINE.search(text)
        if revision and down:
            graph[revision["rev"]] = down["rev"]
    return graph


def head_revision() -> str:
    graph = _revision_graph()
    heads = set(graph) - set(graph.values())
    if len(heads) != 1:
        raise DatabaseError(f"scandb's migrations have {len(heads)} heads ({', '.join(sorted(heads))}); "
                            "reinstall scandb")
    return heads.pop()


def known_revisions() -> set[str]:
    return set(_revision_graph())


class Database:
    """A scandb database (a file, or a DuckLake) and its image store.

    By default a file stays open until ``close()``. With ``held=False`` it is open only
    inside ``lease()`` (DuckDB lets no process write a file another process has open, so a
    connection kept by an idle reader would block every ingest); ``conn`` outside a lease
    opens the file until the next lease ends or ``release()``. A lake is always held: its
    readers never block its writers, and attaching one costs up to a third of a second.

    A file is ATTACHed to one in-memory DuckDB session that lives until ``close()``, and
    DETACHed on release: variables, temporary tables and settings outlast the file's
    release, as they do in one DuckDB shell. Opening waits up to ``wait`` seconds for a
    process holding the file.
    """

    def __init__(self, path: str | Path, *, read_only: bool = True, wait: float = DEFAULT_WAIT, held: bool = True,
                 data_path: str | Path | None = None, snapshot: int | None = None):
        self.snapshot = snapshot
        """The snapshot a lake is read at (None: the newest); see catalog/snapshots.py."""
        self.lake = lakes.parse(path, data_path) if lakes.is_lake(path) else None
        if self.lake is None:
            if snapshot is not None:
                from .snapshots import FILE_HAS_NO_SNAPSHOTS

                raise UsageError(f"{path}: {FILE_HAS_NO_SNAPSHOTS}")
            self.path: Path | None = Path(path).absolute()
            if read_only and not self.path.exists():
                raise _missing(self.path)
            if not read_only and not self.path.parent.is_dir():
                raise DatabaseError(f"{self.path}: folder {self.path.parent} does not exist")
            self.name = str(self.path)
            """How messages name the database."""
        else:
            self.path = None
            self.name = self.lake.name
            held = True
        self.read_only = read_only
        self.wait = wait
        self.held = held
        self._leases = 0
        self._closed = False
        self.root: Path = self.path.parent if self.path is not None else Path()
        """The file's folder, or the lake's data path: the store's folder is in it (``image_dir``)."""
        self._newest = NewestSnapshot(self.lake, OFFLINE) if self.lake is not None else None
        self._session: duckdb.DuckDBPyConnection | None = None
        """A file's in-memory DuckDB session, kept while the file is detached."""
        creating = self.path is not None and not self.path.exists()  # opened on first use: no empty file
        self._conn: duckdb.DuckDBPyConnection | None = None if creating and not held else self._open()
        self._engine: "sa.Engine | None" = None
        self.opened = 0 if self._conn is None else 1
        """How many times the file was opened: a new connection may see other processes' writes."""

    @property
    def conn(self) -> duckdb.DuckDBPyConnection:
        if self._conn is None:
            if self._closed:
                raise DatabaseError(f"{self.name}: the database was closed; connect again")
            self._conn = self._open()
            self.opened += 1
        return self._conn

    def _open(self) -> duckdb.DuckDBPyConnection:
        if self.lake is None:
            if self._session is None:
                self._session = duckdb.connect(config=OFFLINE)
                self._set_root(self._session)
            try:
                _attach(self._session, self.path, self.read_only, self.wait)
            except BaseException:
                self._drop_session_if_broken()
                raise
            return self._session
        conn = lakes.open_lake(self.lake, OFFLINE, read_only=self.read_only, snapshot=self.snapshot)
        self.root = self.lake.data_path or lakes.data_path(conn)
        self._set_root(conn)
        return conn

    def _set_root(self, conn: duckdb.DuckDBPyConnection) -> None:
        """Where migrations and digests find files (a parameter would import pandas)."""
        conn.execute(f"SET VARIABLE scandb_root = {lakes.quote(str(self.root))}")
        conn.execute(f"SET VARIABLE scandb_store = {lakes.quote(str(self.image_dir))}")

    @contextmanager
    def lease(self) -> Iterator[None]:
        """The length of a call: ``conn`` opens the file when the call first needs it (a fetch
        from kept readers needs none), and the outermost lease of a database made with
        ``held=False`` closes it when it ends, so other processes may write."""
        if self._closed:
            raise DatabaseError(f"{self.name}: the database was closed; connect again")
        self._leases += 1
        try:
            yield
        finally:
            self._leases -= 1
            if self._leases == 0 and not self.held:
                self.release()

    def hand_over(self) -> None:
        """Between two writes of one command (a multi-scan ingest), with the file released:
        pause long enough for a process waiting for the file to get it (it tries every
        ``POLL_S``), so readers get in between scans instead of waiting for the whole batch."""
        if self.lake is None and not self.held:
            time.sleep(HANDOVER_S)

    @property
    def leases(self) -> int:
        """How many calls are running now (nested calls count each)."""
        return self._leases

    def release(self) -> None:
        """Close the file (it reopens on the next use); the database object stays usable, and
        a file's session keeps its state."""
        if self._conn is not None:
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None
            conn, self._conn = self._conn, None
            if self._session is None:  # a lake
                conn.close()
                return
            try:
                conn.execute("USE memory")
                conn.execute("DETACH scandb")
            except duckdb.Error:  # a transaction left open, or a session DuckDB invalidated: closing detaches too
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

    @property
    def engine(self) -> "sa.Engine":
        """SQLAlchemy on this connection, created on first use (only migrations need it)."""
        if self._engine is None:
            import sqlalchemy as sa
            from duckdb_engine import ConnectionWrapper

            from .constraints import LAKE_FLAG

            conn = self.conn
            self._engine = sa.create_engine("duckdb://", creator=lambda: ConnectionWrapper(conn),
                                            poolclass=sa.pool.StaticPool)
            setattr(self._engine.dialect, LAKE_FLAG, self.lake is not None)
        return self._engine

    def stamp(self) -> tuple:
        """What changes when any process writes, so what was read at an older stamp may be
        stale: a file's and its write-ahead log's size and modification time; a lake's newest
        snapshot, read from its catalog directly (see catalog/newest.py)."""
        def state(path: Path) -> tuple[int, int] | None:
            try:
                found = path.stat()
            except OSError:
                return None
            return found.st_mtime_ns, found.st_size
        if self.lake is None:
            return state(self.path), state(self.path.with_name(self.path.name + ".wal"))
        if self.snapshot is not None:
            return (self.snapshot,)  # a lake as it was never changes
        newest = self._newest.newest()
        return (newest if newest is not None else lakes.current_snapshot(self.conn),)

    @property
    def image_dir(self) -> Path:
        """The store's folder: keys in rows are relative to it."""
        return self.root / lakes.STORE_FOLDER if self.lake is not None else image_dir_for(self.path)

    @property
    def store(self) -> Folder:
        """The medium of the store's files: every read and write of them goes through it."""
        return Folder(self.image_dir)

    # -- writing beside other processes (a lake) --------------------------------------------

    def claim_writes(self) -> None:
        """Inside a write transaction: make it conflict with any other write on a lake (see
        ``lake.CLAIM``). A file needs nothing: DuckDB lets one process write it."""
        if self.lake is not None:
            lakes.claim_writes(self.conn)

    @contextmanager
    def writer_lock(self) -> Iterator[None]:
        """On a lake, one write at a time (see ``lake.LOCK_FILE``); a file needs none."""
        if self.lake is None:
            yield
            return
        with lakes.writer_lock(self.root, self.name):
            yield

    def retrying(self, action, doing: str):
        """``action()``, run again when another process's commit on a lake made it fail."""
        if self.lake is None:
            return action()
        return lakes.retry_conflicts(action, doing)

    @property
    def shared_store(self) -> bool:
        """Whether other processes may write the store while this one does (a lake): a file a
        failed write created may then be one another writer also created and will commit
        (files are named by content), so it is left to the garbage collector."""
        return self.lake is not None

    @property
    def garbage_age(self) -> float:
        """Seconds a store file no row references must have existed before it is garbage: 0
        for a file (one writer at a time); on a lake another process's ingest may be writing
        files its rows will reference when it commits."""
        return lakes.IN_FLIGHT_S if self.lake is not None else 0.0

    # -- schema revision ------------------------------------------------------------------

    def tables(self) -> set[str]:
        rows = self.conn.execute("SELECT table_name FROM duckdb_tables() WHERE database_name = current_database()"
                                 ).fetchall()
        return {r[0] for r in rows}

    def data_tables(self) -> set[str]:
        """Tables besides Alembic's version table, which a downgrade to base leaves behind."""
        return self.tables() - {"alembic_version"}

    def revision(self) -> str | None:
        if "alembic_version" not in self.tables():
            return None
        row = self.conn.execute("SELECT version_num FROM alembic_version").fetchone()
        return row[0] if row else None

    def check_revision(self) -> None:
        """Refuse a database this code cannot use: foreign, newer, or not yet migrated."""
        current, head = self.revision(), head_revision()
        if current == head:
            return
        if current is None:
            if self.data_tables():
                raise DatabaseError(f"{self.name}: not a scandb database (it has tables but no schema revision)")
            raise DatabaseError(f"{self.name}: empty database; create its schema with "
                                f"scandb.connect(path, read_only=False).migrate()",
                                cli_message=f"{self.name}: empty database; create it with "
                                            f"'scandb migrate --db {self.name}'")
        if current not in known_revisions():
            raise DatabaseError(f"{self.name}: schema revision {current} is newer than this scandb knows "
                                f"(latest {head}); upgrade scandb (pip install -U scandb)")
        older = f"{self.name}: schema revision {current} is older than this scandb's {head}"
        raise DatabaseError(f"{older}; upgrade it with scandb.connect(path, read_only=False).migrate() "
                            f"(or 'scandb migrate --db {self.name}')",
                            cli_message=f"{older}; run 'scandb migrate --db {self.name}'")

    def upgrade(self, target: str = "head") -> tuple[str | None, str]:
        """Migrate to the newest revision (or ``target``); returns (before, after)."""
        before = self.revision()
        if before is None and self.data_tables():
            raise DatabaseError(f"{self.name}: not a scandb database (it has tables but no schema revision)")
        if before is not None and before not in known_revisions():
            self.check_revision()
        if self.read_only:
            raise DatabaseError(f"{self.name}: opened read-only; cannot migrate")
        from alembic import command

        config = _alembic_config()
        with self.engine.begin() as connection:
            config.attributes["connection"] = connection
            config.attributes["lake"] = self.lake is not None
            command.upgrade(config, target)
        return before, self.revision()

    def ensure_schema(self) -> None:
        """Create the schema in a new, empty database; otherwise require the current one."""
        if self.revision() is None and not self.data_tables():
            self.upgrade()
        self.check_revision()

    # -- lifetime ------------------------------------------------------------------------

    def close(self) -> None:
        self.release()
        self._drop_session()
        if self._newest is not None:
            self._newest.close()
        self._closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


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
