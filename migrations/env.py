"""Alembic environment: runs on the connection scandb hands over (see scandb/database.py)."""

from alembic import context
from alembic.ddl.impl import DefaultImpl


class DuckDBImpl(DefaultImpl):
    """Alembic has no DuckDB dialect of its own; DuckDB runs DDL inside transactions."""

    __dialect__ = "duckdb"
    transactional_ddl = True


connection = context.config.attributes["connection"]
# A lake refuses PRIMARY KEY (scandb.catalog.constraints leaves them out of its tables).
context.configure(connection=connection, target_metadata=None,
                  version_table_pk=not context.config.attributes.get("lake", False))
with context.begin_transaction():
    context.run_migrations()
