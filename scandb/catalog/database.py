"""Opening a scandb database: one DuckDB connection shared by SQLAlchemy, Alembic and
bulk Arrow calls (DuckDB refuses a second connection to one file with another
configuration), and the schema revision checks that guard it. What differs between a
file and a lake is its catalog (``kind.py``, ``file_catalog.py``, ``lake_catalog.py``).

SQLAlchemy and Alembic load only when a migration runs: reading needs neither, and they
cost most of the command line's start-up time (see docs/architecture.md).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from ..errors import DatabaseError, UsageError
from ..store.base import as_folder
from ..store.folder import Folder
from . import DEFAULT_DB  # noqa: F401  (re-exported: callers open DEFAULT_DB by default)
from . import DEFAULT_WAIT, OFFLINE  # noqa: F401  (OFFLINE re-exported)
from . import lake as lakes
from .file_catalog import (ROW_GROUP_SIZE, FileCatalog, _missing, attach_statement,  # noqa: F401  (re-exported)
                           discard_new_database, image_dir_for, refuse_foreign_file)
from .kind import Catalog
from .lake_catalog import LakeCatalog

if TYPE_CHECKING:
    import sqlalchemy as sa
    from alembic.config import Config

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


COMMIT_BEFORE = ("0016",)
"""Revisions an upgrade runs in a transaction of their own: each ALTERs a table an earlier
revision updates (0016 adds columns to ``images``, whose paths 0011 rewrites), and DuckDB
refuses to commit an ALTER of a table updated earlier in the same transaction. An upgrade
through one commits the revisions before it first; a failure in it leaves the database at
that earlier revision, which is whole."""


def upgrade_steps(before: str | None, target: str = "head") -> list[str]:
    """The revisions an upgrade from ``before`` to ``target`` stops at, each step one
    transaction (``COMMIT_BEFORE``); revision ids are zero-padded numbers, ordered as text."""
    graph = _revision_graph()
    end = head_revision() if target == "head" else target
    stops = [graph[r] for r in COMMIT_BEFORE if r in graph and (before or "") < graph[r] and r <= end]
    return [*sorted(stops), target]


def catalog_for(target: str | Path, data_path: str | Path | None = None) -> Catalog:
    """The catalog ``target`` names: a lake (``ducklake:...``) or a database file."""
    if lakes.is_lake(target):
        return LakeCatalog(lakes.parse(target, data_path))
    return FileCatalog(Path(target).absolute())


class Database:
    """A scandb database (a file, or a DuckLake) and its image store.

    What differs between the two is the ``catalog`` (``kind.Catalog``: ``FileCatalog`` or
    ``LakeCatalog``); this class asks it and never which kind it has. ``held=False`` (the
    Python API's default for a file) keeps a file open only inside ``lease()`` (DuckDB lets
    no process write a file another process has open, so a connection kept by an idle
    reader would block every ingest); ``conn`` outside a lease opens the file until the
    next lease ends or ``release()``. A lake is always held: its readers never block its
    writers, and attaching one is slow (BENCHMARKS.md, Numbers behind the code: attaching a
    lake). Opening waits up to
    ``wait`` seconds for a process holding the file.
    """

    def __init__(self, path: str | Path, *, read_only: bool = True, wait: float = DEFAULT_WAIT, held: bool = True,
                 data_path: str | Path | None = None, snapshot: int | None = None):
        self.snapshot = snapshot
        """The snapshot a lake is read at (None: the newest); see catalog/snapshots.py."""
        self.catalog: Catalog = catalog_for(path, data_path)
        if self.catalog.has_snapshots:
            self.path: Path | None = None
            held = True
        else:
            if snapshot is not None:
                from .snapshots import FILE_HAS_NO_SNAPSHOTS

                raise UsageError(f"{path}: {FILE_HAS_NO_SNAPSHOTS}")
            self.path = Path(path).absolute()
            if read_only and not self.path.exists():
                raise _missing(self.path)
            if not read_only and not self.path.parent.is_dir():
                raise DatabaseError(f"{self.path}: folder {self.path.parent} does not exist")
        self.name = self.catalog.name
        """How messages name the database."""
        self.read_only = read_only
        self.wait = wait
        self.held = held
        self._leases = 0
        self._closed = False
        self._rooted: duckdb.DuckDBPyConnection | None = None
        """The connection the ``scandb_root``/``scandb_store`` variables were set on."""
        self._store: Folder | None = None
        self._store_at: Path | str | None = None
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
        conn = self.catalog.open(self.read_only, self.wait, self.snapshot)
        if conn is not self._rooted:  # a file's session keeps its variables while detached
            # where migrations and digests find files (a parameter would import pandas)
            conn.execute(f"SET VARIABLE scandb_root = {lakes.quote(str(self.root))}")
            conn.execute(f"SET VARIABLE scandb_store = {lakes.quote(str(self.image_dir))}")
            self._rooted = conn
        return conn

    @property
    def root(self) -> Path:
        """The file's folder, or the lake's data path: the store's folder is in it."""
        return self.catalog.root

    @property
    def has_snapshots(self) -> bool:
        return self.catalog.has_snapshots

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
        let a process waiting for it in (see ``FileCatalog.hand_over``)."""
        self.catalog.hand_over(self.held)

    @property
    def leases(self) -> int:
        """How many calls are running now (nested calls count each)."""
        return self._leases

    def release(self) -> None:
        """Let other processes have the database (it reopens on the next use); the database
        object stays usable, and a file's session keeps its state."""
        if self._conn is not None:
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None
            conn, self._conn = self._conn, None
            self.catalog.release(conn)

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
            setattr(self._engine.dialect, LAKE_FLAG, not self.catalog.enforces_keys)
        return self._engine

    def stamp(self) -> tuple:
        """What changes when any process writes, so what was read at an older stamp may be
        stale (see each catalog's ``stamp``)."""
        return self.catalog.stamp(lambda: self.conn, self.snapshot)

    @property
    def image_dir(self) -> Path | str:
        """The store's folder (a bucket's: its ``s3://`` URL): keys in rows are relative to it."""
        return self.catalog.store_folder

    @property
    def store(self) -> Folder:
        """The medium of the store's files: every read and write of them goes through it (a
        local ``Folder``, or a ``Bucket`` for a data path on S3, made once: it holds a client)."""
        where = self.image_dir
        if self._store is None or self._store_at != where:
            self._store, self._store_at = as_folder(where), where
        return self._store

    @contextmanager
    def reading_the_medium(self) -> Iterator[None]:
        """Meanwhile, the store's reads skip any local cache (a bucket's): ``verify`` checks
        the objects themselves."""
        store = self.store
        uncached = getattr(store, "uncached", None)
        if uncached is None:
            yield
            return
        with uncached() as fresh:
            self._store = fresh
            try:
                yield
            finally:
                self._store = store

    # -- writing beside other processes ---------------------------------------------------

    def claim_writes(self) -> None:
        """Inside a write transaction: make it conflict with any other process's write."""
        self.catalog.claim_writes(self.conn)

    def writer_lock(self):
        """One write at a time where the engine does not ensure it (a lake)."""
        return self.catalog.writer_lock()

    def retrying(self, action, doing: str):
        """``action()``, run again when another process's commit made it fail (a lake)."""
        return self.catalog.retrying(action, doing)

    def label(self, message: str) -> None:
        """Inside a write transaction: what the commit does, where commits are kept (a lake's snapshots)."""
        self.catalog.label(self.conn, message)

    @property
    def shared_store(self) -> bool:
        return self.catalog.shared_store

    @property
    def garbage_age(self) -> float:
        return self.catalog.garbage_age

    # -- schema revision ------------------------------------------------------------------

    def tables(self) -> set[str]:
        rows = self.conn.execute("SELECT table_name FROM duckdb_tables() WHERE database_name = current_database()"
                                 ).fetchall()
        return {r[0] for r in rows}

    def data_tables(self) -> set[str]:
        """Tables besides Alembic's version table, which a downgrade to base leaves behind."""
        return self.tables() - {"alembic_version"}

    def revision(self) -> str | None:
        """The schema revision, None before the first migration. One query, not a listing of
        the tables first: on a lake every catalog listing is a round trip (~40 ms)."""
        try:
            row = self.conn.execute("SELECT version_num FROM alembic_version").fetchone()
        except duckdb.CatalogException:
            return None
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

    def upgrade(self, target: str = "head", *, replay: bool = False) -> tuple[str | None, str]:
        """Migrate to the newest revision (or ``target``); returns (before, after). An empty
        database is made at the head in one step (``fresh.py``) unless ``replay`` asks for
        every revision to run, as they do on a database that exists."""
        before = self.revision()
        if before is None and self.data_tables():
            raise DatabaseError(f"{self.name}: not a scandb database (it has tables but no schema revision)")
        if before is not None and before not in known_revisions():
            self.check_revision()
        if self.read_only:
            raise DatabaseError(f"{self.name}: opened read-only; cannot migrate")
        if before is None and target in ("head", head_revision()) and not replay:
            from .fresh import create_at_head

            with self.engine.begin() as connection:
                create_at_head(connection, head_revision())
            return before, self.revision()
        from alembic import command

        config = _alembic_config()
        for step in upgrade_steps(before, target):
            with self.engine.begin() as connection:
                config.attributes["connection"] = connection
                config.attributes["lake"] = not self.catalog.enforces_keys
                command.upgrade(config, step)
        return before, self.revision()

    def ensure_schema(self) -> None:
        """Create the schema in a new, empty database; otherwise require the current one."""
        if self.revision() is None and not self.data_tables():
            self.upgrade()
        self.check_revision()

    # -- lifetime ------------------------------------------------------------------------

    def close(self) -> None:
        self.release()
        self.catalog.close()
        self._rooted = None
        self._closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
