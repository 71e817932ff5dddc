"""The relational side: the schema (SQLAlchemy Core), opening a database, schema revisions."""

DEFAULT_DB = "scandb.duckdb"
"""The database file commands use without --db (here, so the command line's help needs no DuckDB)."""
