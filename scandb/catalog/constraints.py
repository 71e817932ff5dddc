"""PRIMARY KEY and UNIQUE on a lake: DuckLake refuses them, so the same Alembic revisions
create a lake's tables without them (a file keeps them). Registered when a migration runs."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles

LAKE_FLAG = "scandb_lake"
"""Set on the dialect of an engine whose connection has a lake attached."""


def on_lake(compiler) -> bool:
    return getattr(compiler.dialect, LAKE_FLAG, False)


@compiles(sa.PrimaryKeyConstraint, "duckdb")
def _primary_key(constraint, compiler, **kw):
    return None if on_lake(compiler) else compiler.visit_primary_key_constraint(constraint, **kw)


@compiles(sa.UniqueConstraint, "duckdb")
def _unique(constraint, compiler, **kw):
    return None if on_lake(compiler) else compiler.visit_unique_constraint(constraint, **kw)
