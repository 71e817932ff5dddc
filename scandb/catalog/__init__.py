"""The relational side: the schema (SQLAlchemy Core), opening a database, schema revisions."""

DEFAULT_DB = "scandb.duckdb"
"""The database file commands use without --db (here, so the command line's help needs no DuckDB)."""

DB_VARIABLE = "SCANDB_DB"
"""The environment variable naming the database when neither --db nor a path is given."""


def default_db() -> str:
    """``$SCANDB_DB`` when set, else ``scandb.duckdb``."""
    import os

    return os.environ.get(DB_VARIABLE) or DEFAULT_DB


DEFAULT_WAIT = 60.0
"""Seconds a call waits for another process holding a database file before it fails (as
SQLite's busy timeout does): DuckDB lets one process write a file and no other open it
meanwhile, so without a wait a writer fails whenever a reader or another writer got the file
between its steps. Long enough for one scan's ingest; ``wait=0`` (``--wait 0``) fails at once."""

OFFLINE = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}
"""DuckDB would otherwise try to download an extension to open a foreign file (a SQLite
database makes it fetch ``sqlite_scanner``): scandb never needs the network."""

LAKE_PREFIX = "ducklake:"
"""A database named by a DuckLake attach string rather than a file (see catalog/lake.py)."""


def is_lake(target) -> bool:
    """True for ``ducklake:sqlite:<file>`` and ``ducklake:postgres:<conninfo>`` (any ``ducklake:``)."""
    return isinstance(target, str) and target.startswith(LAKE_PREFIX)
