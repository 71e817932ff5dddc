"""A new, empty database made at the head revision in one step, as Alembic's cookbook has
it ("building an up to date database from scratch"): the tables of ``schema.py``, the
head revision's views and macro, and Alembic's version table stamped with the head.

Replaying every revision on an empty database builds the same catalog (tests/test_migrations.py
compares the two, column order, constraints and view text included), but costs a transaction
per stop, a version-row update per revision and the import of Alembic: 0.12 s against
0.07 s for a file, 0.65 s against 0.3 s for a SQLite-catalog lake. Upgrades of databases
that exist still run the migrations.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.schema import CreateTable

from . import schema, views

VERSION_TABLE = "alembic_version"


def _version_table() -> sa.Table:
    """Alembic's own version table (``alembic.runtime.migration``: its name, its one column
    and its primary key's name); on a lake the primary key is left out, as ``env.py`` asks
    Alembic to (``version_table_pk``), by ``scandb.catalog.constraints``."""
    return sa.Table(VERSION_TABLE, sa.MetaData(),
                    sa.Column("version_num", sa.String(32), nullable=False),
                    sa.PrimaryKeyConstraint("version_num", name="alembic_version_pkc"))


def create_at_head(connection: sa.Connection, head: str) -> None:
    """Every table, view and macro of ``head`` on an empty database, and the version row,
    inside the caller's transaction."""
    for table in schema.metadata.sorted_tables:  # no COMMENT ON: the revisions set none
        connection.execute(CreateTable(table))
    for statement in views.at_head():
        connection.exec_driver_sql(statement)
    version = _version_table()
    version.create(connection, checkfirst=True)  # a database downgraded to base keeps it, empty
    connection.execute(version.insert().values(version_num=head))
