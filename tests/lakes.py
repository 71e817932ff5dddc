"""Fixtures for the lake tests: a lake on a SQLite catalog, data path in tmp_path; a test
marked ``@on_both_catalogs`` runs once on SQLite and once on PostgreSQL (a private server,
see tests/postgres.py).

Most of a lake's behaviour is DuckLake's and scandb's whatever the catalog, so the matrix
runs on SQLite; PostgreSQL is kept for what is its own: the psycopg route to the newest
snapshot (a held connection following other processes' commits), commit conflicts and
their retries, concurrent writers, a killed writer's open transaction, and one smoke test
of each command.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from .postgres import PostgresServer

CATALOGS = ["sqlite", "postgres"]

on_both_catalogs = pytest.mark.parametrize("lake", CATALOGS, indirect=True)
"""Run a test taking the ``lake`` fixture on a SQLite and on a PostgreSQL catalog."""


@dataclass
class LakeUnderTest:
    catalog: str
    url: str
    data: Path
    """The data path given when the lake is created."""


@pytest.fixture(scope="session")
def pg_server():
    server = PostgresServer()
    yield server
    server.stop()


@pytest.fixture
def lake(request, tmp_path) -> LakeUnderTest:
    """A lake that does not exist yet: its attach string and the data path to create it with.

    On a SQLite catalog, unless the test is marked ``@on_both_catalogs``."""
    catalog = getattr(request, "param", "sqlite")
    if catalog == "sqlite":
        url = f"ducklake:sqlite:{tmp_path / 'catalog.sqlite'}"
    else:
        url = f"ducklake:postgres:{request.getfixturevalue('pg_server').database()}"
    return LakeUnderTest(catalog, url, tmp_path / "data")
