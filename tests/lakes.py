"""Fixtures for the lake tests: every test runs once on a SQLite catalog and once on a
PostgreSQL catalog (a private server, see tests/postgres.py), data path in tmp_path."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from .postgres import PostgresServer

CATALOGS = ["sqlite", "postgres"]


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


@pytest.fixture(params=CATALOGS)
def lake(request, tmp_path) -> LakeUnderTest:
    """A lake that does not exist yet: its attach string and the data path to create it with."""
    if request.param == "sqlite":
        url = f"ducklake:sqlite:{tmp_path / 'catalog.sqlite'}"
    else:
        url = f"ducklake:postgres:{request.getfixturevalue('pg_server').database()}"
    return LakeUnderTest(request.param, url, tmp_path / "data")
