"""The relational side: the schema (SQLAlchemy Core), opening a database, schema revisions."""
