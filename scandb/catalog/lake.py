"""DuckLake targets: a ``ducklake:sqlite:<path>`` or ``ducklake:postgres:<conninfo>`` string
turned into the statements that open it (LOAD the extensions, ATTACH, USE), for Python and
the DuckDB shell alike.

The extensions come from the ``duckdb-extension-*`` wheels (the ``lake`` extra), loaded by
file path: ``INSTALL`` downloads, which fails offline. Without the wheels DuckDB's own
``INSTALL``/``LOAD`` is tried, for a machine with the internet.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import time
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path

import duckdb

from ..errors import DamageError, DatabaseError, first_line
from ..store import bucket as buckets
from . import LAKE_PREFIX as PREFIX
from . import is_lake  # noqa: F401  (re-exported)
CATALOGS = {"sqlite": "sqlite_scanner", "postgres": "postgres_scanner"}
"""Each catalog database DuckLake can use here, and the extension that reaches it."""

ALIAS = "scandb"
"""The attached lake's name, as a file is attached for writing: SQL says ``scandb.<table>``."""

STORE_FOLDER = "scandb.images"
"""The image store and response matrices, under the data path (DuckLake's Parquet files sit
beside it, under ``main/``); rows hold paths relative to the data path."""

SQLITE_BUSY_MS = 10_000
"""How long a SQLite catalog waits for another process's write (measured: with SQLite's
defaults any attached reader makes the writer fail with "database is locked")."""

LAKE_EXTRA = "pip install 'scandb[lake]'"


@dataclass(frozen=True)
class Lake:
    """A DuckLake: where its catalog is, and the data path to use (None: the one stored)."""

    catalog: str
    """``sqlite`` or ``postgres``."""
    location: str
    """The SQLite file (absolute) or the libpq conninfo."""
    data_path: Path | str | None = None
    """A local folder, or an ``s3://bucket/prefix`` URL (``store/bucket.py``)."""

    @property
    def url(self) -> str:
        return f"{PREFIX}{self.catalog}:{self.location}"

    @property
    def name(self) -> str:
        """How messages name the lake (the attach string, without a password)."""
        if self.catalog != "postgres":
            return self.url
        return PREFIX + "postgres:" + " ".join(part for part in self.location.split()
                                               if not part.startswith("password="))

    def exists(self) -> bool | None:
        """Whether the catalog is there (a SQLite file); None when only attaching can tell."""
        return Path(self.location).is_file() if self.catalog == "sqlite" else None


def parse(target: str, data_path: str | Path | None = None) -> Lake:
    """``ducklake:<catalog>:<where>`` as a ``Lake``; anything else is one clear error."""
    rest = target[len(PREFIX):]
    catalog, _, location = rest.partition(":")
    if catalog not in CATALOGS or not location.strip():
        raise DatabaseError(f"{target}: not a lake scandb can open; use ducklake:sqlite:<file> "
                            f"or ducklake:postgres:<conninfo> (e.g. 'dbname=lab host=server')")
    if catalog == "sqlite":
        location = str(Path(location).expanduser().absolute())
    return Lake(catalog, location, where(data_path))


def where(data_path: str | Path | None) -> Path | str | None:
    """A data path as given: an ``s3://`` URL kept as it is, a folder made absolute."""
    if data_path is None:
        return None
    if buckets.is_url(str(data_path)):
        return str(data_path).rstrip("/")
    return Path(data_path).expanduser().absolute()


def on_bucket(data_path) -> bool:
    return data_path is not None and buckets.is_url(str(data_path))


def bucket_statements(data_path: str, *, shell: bool = False) -> list[str]:
    """LOAD httpfs and make the secret for a data path on a bucket (the shell reads the
    credentials with ``getenv``, so they are not on its command line)."""
    found = buckets.credentials(str(data_path))
    statement = buckets.secret_statement(str(data_path))
    if shell:
        statement = statement.replace(f"KEY_ID {quote(found.key_id)}", "KEY_ID getenv('AWS_ACCESS_KEY_ID')")
        statement = statement.replace(f"SECRET {quote(found.secret)}", "SECRET getenv('AWS_SECRET_ACCESS_KEY')")
        if found.token:
            statement = statement.replace(f"SESSION_TOKEN {quote(found.token)}",
                                          "SESSION_TOKEN getenv('AWS_SESSION_TOKEN')")
    return [*extension_statements("httpfs"), statement]


def extension_file(name: str) -> Path | None:
    """The extension's binary in its ``duckdb-extension-<name>`` wheel, for this DuckDB."""
    try:
        package = resources.files(f"duckdb_extension_{name}")
    except ModuleNotFoundError:
        return None
    found = package.joinpath("extensions", f"v{duckdb.__version__}", f"{name}.duckdb_extension")
    return Path(str(found)) if found.is_file() else None


@functools.cache
def installed_intact(name: str) -> bool:
    """The extension's binary is byte for byte what pip installed from its wheel (the sha256
    its RECORD lists): checked once per process, so connections can skip DuckDB's own
    signature check, which hashes the ~35 MB file again on every LOAD (0.25 s each)."""
    found = extension_file(name)
    if found is None:
        return False
    try:
        files = metadata.distribution(f"duckdb-extension-{name.replace('_', '-')}").files or []
    except metadata.PackageNotFoundError:
        return False
    for entry in files:
        if entry.hash is not None and entry.hash.mode == "sha256" and Path(str(entry.locate())) == found:
            with open(found, "rb") as f:
                digest = hashlib.file_digest(f, "sha256").digest()
            return base64.urlsafe_b64encode(digest).rstrip(b"=").decode() == entry.hash.value
    return False


def connection_config(lake: Lake, offline: dict) -> dict:
    """DuckDB's settings for a lake's connection: offline, and where every extension it may
    load (httpfs too, when installed, for a bucket) is one pip installed and this process
    checked (``installed_intact``), without DuckDB's per-LOAD signature check (BENCHMARKS.md,
    Numbers behind the code: attaching a lake)."""
    names = ("ducklake", CATALOGS[lake.catalog]) + (("httpfs",) if extension_file("httpfs") else ())
    if all(installed_intact(name) for name in names):
        return {**offline, "allow_unsigned_extensions": True}
    return dict(offline)


def load_statements(lake: Lake) -> list[str]:
    """LOAD ducklake and the catalog's extension: by path from the wheels, else DuckDB's INSTALL."""
    return extension_statements("ducklake") + extension_statements(CATALOGS[lake.catalog])


def extension_statements(name: str) -> list[str]:
    found = extension_file(name)
    return [f"LOAD {quote(str(found))}"] if found else [f"INSTALL {name}", f"LOAD {name}"]


def attach_statement(lake: Lake, *, read_only: bool = False, snapshot: int | None = None) -> str:
    """ATTACH the lake as ``scandb``: a given data path is stored when the lake is created,
    and overrides the stored one otherwise (a machine that mounts the share elsewhere);
    ``snapshot`` attaches it as it was then (read-only)."""
    options = []
    if lake.data_path is not None:
        options += [f"DATA_PATH {quote(str(lake.data_path).rstrip('/') + '/')}", "OVERRIDE_DATA_PATH true"]
    if lake.catalog == "sqlite":
        options += ["META_JOURNAL_MODE 'WAL'", f"META_BUSY_TIMEOUT {SQLITE_BUSY_MS}"]
    if read_only:
        options.append("READ_ONLY")
    if snapshot is not None:
        options.append(f"SNAPSHOT_VERSION {int(snapshot)}")
    listed = f" ({', '.join(options)})" if options else ""
    return f"ATTACH IF NOT EXISTS {quote(lake.url)} AS {ALIAS}{listed}"


def open_statements(lake: Lake, *, read_only: bool = False, stored: Path | str | None = None) -> list[str]:
    """Everything the DuckDB shell runs to use the lake (after disabling autoinstall);
    ``stored``: the data path the catalog holds (a bucket's needs httpfs and a secret)."""
    bucket = lake.data_path if on_bucket(lake.data_path) else stored if on_bucket(stored) else None
    return [*load_statements(lake), *(bucket_statements(bucket, shell=True) if bucket else []),
            attach_statement(lake, read_only=read_only), f"USE {ALIAS}"]


def open_lake(lake: Lake, offline: dict, *, read_only: bool = False, snapshot: int | None = None
              ) -> duckdb.DuckDBPyConnection:
    """A connection with the lake attached and used, or one line saying why not."""
    if lake.exists() is False:
        if read_only:
            raise _missing(lake)
        if lake.data_path is None:
            raise _needs_data_path(lake)
        if not Path(lake.location).parent.is_dir():
            raise DatabaseError(f"{lake.name}: folder {Path(lake.location).parent} does not exist")
    if lake.exists() is not True and on_bucket(lake.data_path):  # (a PostgreSQL catalog: only attaching can tell)
        buckets.check_access(str(lake.data_path))  # before a new catalog names it
    conn = duckdb.connect(config=connection_config(lake, offline))
    try:
        for statement in load_statements(lake):
            try:
                conn.execute(statement)
            except duckdb.Error as exc:
                raise DatabaseError(f"{lake.name}: cannot load DuckDB's {statement.split()[-1]} extension "
                                    f"({first_line(str(exc))}); install it with {LAKE_EXTRA}") from None
        if on_bucket(lake.data_path):
            _reach_bucket(conn, lake, lake.data_path)
        _attach(conn, lake, read_only, snapshot)
        conn.execute(f"USE {ALIAS}")
    except BaseException:
        conn.close()
        raise
    return conn


def _reach_bucket(conn: duckdb.DuckDBPyConnection, lake: Lake, url: str) -> None:
    """httpfs and the secret for a data path on a bucket (credentials from the environment).
    Only the wheel's httpfs, which ``connection_config`` checked: never one INSTALL fetches
    into a connection that skips signature checks."""
    if extension_file("httpfs") is None:
        raise DatabaseError(f"{lake.name}: its data path {url} is a bucket, which needs DuckDB's httpfs "
                            f"extension; install it with {buckets.CLOUD_EXTRA}")
    for statement in bucket_statements(url):
        try:
            conn.execute(statement)
        except duckdb.Error as exc:
            what = "DuckDB's httpfs extension" if statement.startswith(("LOAD", "INSTALL")) else "the S3 secret"
            raise DatabaseError(f"{lake.name}: cannot load {what} ({first_line(str(exc))}); "
                                f"install it with {buckets.CLOUD_EXTRA}") from None


def _attach(conn: duckdb.DuckDBPyConnection, lake: Lake, read_only: bool, snapshot: int | None = None) -> None:
    """ATTACH, retrying briefly while another process holds a SQLite catalog being created."""
    import re

    deadline = time.monotonic() + SQLITE_BUSY_MS / 1000
    reached = on_bucket(lake.data_path)
    while True:
        try:
            conn.execute(attach_statement(lake, read_only=read_only, snapshot=snapshot))
            break
        except duckdb.Error as exc:
            message = first_line(str(exc))
            if "locked" in message and time.monotonic() < deadline:
                time.sleep(0.1)
                continue
            bucket = re.search(r"Data path (s3://\S+) requires the extension httpfs", message)
            if bucket and not reached:  # the data path stored in the catalog is a bucket
                _reach_bucket(conn, lake, where(bucket[1]))
                reached = True
                continue
            if "creating a new DuckLake is explicitly disabled" in message:
                raise _missing(lake) from None
            if "No snapshot found" in message:
                raise MissingSnapshot(f"{lake.name}: no snapshot {snapshot}") from None
            if "data_path is not set" in message:
                raise _needs_data_path(lake) from None
            unreadable = _unreadable_catalog(lake, message)
            if unreadable is not None:
                raise unreadable from None
            raise DatabaseError(f"{lake.name}: cannot open lake ({message})") from None
    if data_path(conn) is None:
        conn.execute(f"DETACH {ALIAS}")
        raise _needs_data_path(lake)


SQLITE_MAGIC = b"SQLite format 3\0"
"""The first 16 bytes of every SQLite database file."""


def _unreadable_catalog(lake: Lake, message: str) -> DatabaseError | None:
    """A SQLite catalog SQLite cannot read: damage when the file is (or was) a SQLite
    database (its header, or zeros where it was), else a file that is not a catalog."""
    if lake.catalog != "sqlite" or not ("file is not a database" in message or "malformed" in message):
        return None
    try:
        with open(lake.location, "rb") as f:
            header = f.read(len(SQLITE_MAGIC))
    except OSError:
        return None
    if header == SQLITE_MAGIC or not header.strip(b"\0"):
        return DamageError(f"{lake.name}: the lake's catalog file is damaged ({message}); restore it from a backup")
    return DatabaseError(f"{lake.name}: not a lake's catalog (the file is not a SQLite database)")


class MissingSnapshot(DatabaseError):
    """The snapshot asked for is not in the lake (never made, or expired)."""


def _missing(lake: Lake) -> DatabaseError:
    target = lake.name if " " not in lake.name else f'"{lake.name}"'
    return DatabaseError(f"{lake.name}: no lake there (create one with 'scandb ingest SCANS --db {target} "
                         f"--data-path DIR')")


def _needs_data_path(lake: Lake) -> DatabaseError:
    return DatabaseError(f"{lake.name}: a new lake needs --data-path DIR (the shared folder for its files; "
                         f"scandb.connect(..., data_path=DIR))")


def data_path(conn: duckdb.DuckDBPyConnection) -> Path | str | None:
    """The data path stored in the attached lake's catalog (a bucket's as its URL)."""
    row = conn.execute(f"SELECT value FROM ducklake_options({quote(ALIAS)}) WHERE option_name = 'data_path'"
                       ).fetchone()
    if not row or not row[0]:
        return None
    return where(row[0]) if on_bucket(row[0]) else Path(row[0])


def store_folder(root: Path | str) -> Path | str:
    """The store's folder under a data path (a bucket's: its URL)."""
    return f"{str(root).rstrip('/')}/{STORE_FOLDER}" if on_bucket(root) else Path(root) / STORE_FOLDER


def current_snapshot(conn: duckdb.DuckDBPyConnection) -> int:
    """The newest snapshot: what changes whenever any process commits to the lake."""
    return conn.execute(f"SELECT id FROM {ALIAS}.current_snapshot()").fetchone()[0]


def is_conflict(exc: BaseException) -> bool:
    """A commit refused because another process committed first (DuckLake's transaction
    conflict, or a SQLite catalog still locked after its busy timeout): worth retrying."""
    text = str(exc)
    return isinstance(exc, duckdb.Error) and ("conflict" in text.lower() or "database is locked" in text)


def quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


IN_FLIGHT_S = 6 * 3600.0
"""On a lake, a store file no committed row references may belong to an ingest still running
in another process (or on another machine): only files older than this are garbage."""

CLAIM = "UPDATE alembic_version SET version_num = version_num"
"""Run inside every write transaction on a lake. DuckLake merges concurrent inserts, so two
ingests could each add a row for the same image (or the same scan: a lake has no PRIMARY
KEY); but two snapshots that both delete from one table conflict, and an UPDATE deletes.
Updating the one row every scandb lake has makes concurrent writes conflict at commit, so
one commits and the other retries on top of it (``retry_conflicts``)."""

RETRIES = 8
BACKOFF_S = 0.2
BACKOFF_CAP_S = 5.0


def claim_writes(conn: duckdb.DuckDBPyConnection) -> None:
    conn.execute(CLAIM)


def conflict_in(exc: BaseException | None) -> bool:
    """Whether a conflict (see ``is_conflict``) caused this exception, however it was wrapped."""
    seen = 0
    while exc is not None and seen < 10:
        if is_conflict(exc):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def retry_conflicts(action, doing: str, *, attempts: int = RETRIES):
    """Run ``action()``; when another process's commit made it fail, wait (exponential
    backoff with jitter) and run it again, saying so on the ``scandb`` logger. The action
    must roll back by itself (every scandb write is one transaction)."""
    import logging
    import random

    log = logging.getLogger("scandb")
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except Exception as exc:
            if not conflict_in(exc):
                raise
            if attempt == attempts:
                raise DatabaseError(f"{doing}: another process kept committing first ({attempts} attempts); "
                                    f"try again") from None
            pause = min(BACKOFF_CAP_S, BACKOFF_S * 2 ** (attempt - 1)) * (0.5 + random.random())
            log.warning("%s: another process committed first; retrying in %.1f s (attempt %d of %d)",
                        doing, pause, attempt + 1, attempts)
            time.sleep(pause)


LOCK_FILE = "scandb.lock"
"""In the data path: held (flock) by each write for its whole length, so a second writer
waits instead of doing its work in parallel and redoing it after losing the commit. Only an
economy: where the file system's locks do not work, the claim above still keeps writes apart."""


@contextmanager
def writer_lock(data_path: Path, name: str):
    """Hold the lake's writer lock (waiting for another writer, and saying so)."""
    import fcntl
    import logging

    if on_bucket(data_path):
        yield  # a bucket has no locks: the claim keeps writes apart (docs/lab.md, object storage)
        return
    path = data_path / LOCK_FILE
    try:
        data_path.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+b")
    except OSError:
        yield  # a read-only or odd share: the claim alone keeps writes apart
        return
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logging.getLogger("scandb").info("%s: another process is writing to the lake; waiting for it", name)
            fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError:
            pass  # no locks on this file system
        try:
            yield
        finally:
            try:
                fcntl.flock(handle, fcntl.LOCK_UN)
            except OSError:
                pass
