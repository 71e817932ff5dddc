"""Opening a scandb database: one DuckDB connection shared by SQLAlchemy, Alembic and
bulk Arrow calls (DuckDB refuses a second connection to one file with another
configuration), and the schema revision checks that guard it.
"""

from __future__ import annotations

import re
import time
from importlib import resources
from pathlib import Path

import duckdb
import sqlalchemy as sa
from duckdb_engine import ConnectionWrapper
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from ..errors import DatabaseError, first_line

DEFAULT_DB = "scandb.duckdb"
DENIED = ("Read-only file system", "Permission denied", "Operation not permitted")
LOCK_MESSAGE = re.compile(r"Conflicting lock is held in (?P<program>.*?) \(PID (?P<pid>\d+)\)")


def image_dir_for(db_path: Path) -> Path:
    """The image store beside a database: ``scandb.duckdb`` -> ``scandb.images/``."""
    return db_path.with_name(db_path.stem + ".images") if db_path.suffix else db_path.with_name(db_path.name + ".images")


def _connect(path: Path, read_only: bool, wait: float) -> duckdb.DuckDBPyConnection:
    deadline = time.monotonic() + wait
    while True:
        try:
            return duckdb.connect(str(path), read_only=True) if read_only else _connect_for_writing(path)
        except duckdb.IOException as exc:
            message = str(exc)
            lock = LOCK_MESSAGE.search(message)
            if lock and time.monotonic() < deadline:
                time.sleep(0.2)
                continue
            if lock:
                raise DatabaseError(
                    f"{path}: in use by another process ({lock['program']}, PID {lock['pid']}); "
                    f"DuckDB lets one process write a file, and only while no other has it open: "
                    f"wait for it to finish"
                    + (f" (waited {wait:g} s)" if wait else " or pass --wait SECONDS")) from None
            if "No such file" in message or "does not exist" in message:
                raise DatabaseError(f"{path}: no database there (create one with 'scandb ingest')") from None
            denied = next((c for c in DENIED if c in message), None)
            if denied and not read_only:
                raise DatabaseError(f"{path}: cannot open for writing ({denied}): "
                                    f"make the file and its folder writable") from None
            raise DatabaseError(f"{path}: cannot open database ({first_line(message)})") from None
        except duckdb.Error as exc:
            raise DatabaseError(f"{path}: cannot open database ({first_line(str(exc))})") from None


ROW_GROUP_SIZE = 2048
"""Rows per DuckDB row group when writing (default 122,880). A scan adds ~6,000 rows, so
with the default every ingest appends to, and its checkpoint rewrites, one row group
holding every earlier scan's responses (measured: the 4th scan's commit took 18 s). With
2,048 rows a commit writes only new row groups and large inserts go to disk as they fill."""


def _connect_for_writing(path: Path) -> duckdb.DuckDBPyConnection:
    """The file attached with small row groups (an ATTACH option, not stored in the file,
    so every writer sets it), under a fixed alias: a file's stem may be a reserved name
    such as ``main`` or ``memory``."""
    conn = duckdb.connect()
    try:
        literal = "'" + str(path).replace("'", "''") + "'"
        conn.execute(f"ATTACH {literal} AS scandb (ROW_GROUP_SIZE {ROW_GROUP_SIZE})")
        conn.execute("USE scandb")
    except BaseException:
        conn.close()
        raise
    return conn


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(resources.files("scandb.migrations")))
    return config


def head_revision() -> str:
    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def known_revisions() -> set[str]:
    return {rev.revision for rev in ScriptDirectory.from_config(_alembic_config()).walk_revisions()}


class Database:
    """An open scandb database file and its image store."""

    def __init__(self, path: str | Path, *, read_only: bool = True, wait: float = 0.0):
        self.path = Path(path).absolute()
        if read_only and not self.path.exists():
            raise DatabaseError(f"{self.path}: no database there (create one with 'scandb ingest')")
        if not read_only and not self.path.parent.is_dir():
            raise DatabaseError(f"{self.path}: folder {self.path.parent} does not exist")
        self.read_only = read_only
        self.conn = _connect(self.path, read_only, wait)
        self.engine = sa.create_engine("duckdb://", creator=lambda: ConnectionWrapper(self.conn), poolclass=sa.pool.StaticPool)

    @property
    def image_dir(self) -> Path:
        return image_dir_for(self.path)

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
                raise DatabaseError(f"{self.path}: not a scandb database (it has tables but no schema revision)")
            raise DatabaseError(f"{self.path}: empty database; create it with 'scandb migrate --db {self.path}'")
        if current not in known_revisions():
            raise DatabaseError(f"{self.path}: schema revision {current} is newer than this scandb knows "
                                f"(latest {head}); upgrade scandb (pip install -U scandb)")
        raise DatabaseError(f"{self.path}: schema revision {current} is older than this scandb's {head}; "
                            f"run 'scandb migrate --db {self.path}'")

    def upgrade(self, target: str = "head") -> tuple[str | None, str]:
        """Migrate to the newest revision (or ``target``); returns (before, after)."""
        before = self.revision()
        if before is None and self.data_tables():
            raise DatabaseError(f"{self.path}: not a scandb database (it has tables but no schema revision)")
        if before is not None and before not in known_revisions():
            self.check_revision()
        if self.read_only:
            raise DatabaseError(f"{self.path}: opened read-only; cannot migrate")
        config = _alembic_config()
        with self.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, target)
        return before, self.revision()

    def ensure_schema(self) -> None:
        """Create the schema in a new, empty database; otherwise require the current one."""
        if self.revision() is None and not self.data_tables():
            self.upgrade()
        self.check_revision()

    # -- lifetime ------------------------------------------------------------------------

    def close(self) -> None:
        if self.conn is not None:
            self.engine.dispose()
            self.conn.close()
            self.conn = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
