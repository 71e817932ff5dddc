"""The relational side: the schema (SQLAlchemy Core), opening a database, schema revisions."""

DEFAULT_DB = "scandb.duckdb"
"""The database file commands use without --db (here, so the command line's help needs no DuckDB)."""

DB_VARIABLE = "SCANDB_DB"
"""The environment variable naming the database when neither --db nor a path is given."""


def default_db() -> str:
    """``$SCANDB_DB`` when set, else ``scandb.duckdb``."""
    import os

    return os.environ.get(DB_VARIABLE) or DEFAULT_DB


LAKE_PREFIX = "ducklake:"
"""A database named by a DuckLake attach string rather than a file (see catalog/lake.py)."""


def is_lake(target) -> bool:
    """True for ``ducklake:sqlite:<file>`` and ``ducklake:postgres:<conninfo>`` (any ``ducklake:``)."""
    return isinstance(target, str) and target.startswith(LAKE_PREFIX)
