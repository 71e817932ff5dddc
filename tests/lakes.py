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

import contextlib
import shutil
import sqlite3
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


@pytest.fixture(scope="session")
def fill_lake(tmp_path_factory):
    """``fill_lake(lake, *scans)``: make ``lake`` hold these scans, as ``scandb ingest`` of
    them into a new lake leaves it (its snapshots, files and catalog rows).

    On a SQLite catalog the lake is built once per session for each list of scans and
    copied: the catalog file, the data path (its files with new mtimes, as just written), and
    the data path recorded in the catalog (DuckLake's and scandb's paths inside are
    relative to it). A PostgreSQL lake is
    ingested into directly."""
    from .hostile import run_cli

    built: dict[tuple[str, ...], tuple[Path, Path]] = {}

    def ingest(url: str, data: Path, scans) -> None:
        run = run_cli("ingest", *map(str, scans), "--db", url, "--data-path", str(data))
        assert run.code == 0, run

    def fill(lake: LakeUnderTest, *scans: Path) -> LakeUnderTest:
        if lake.catalog != "sqlite":
            ingest(lake.url, lake.data, scans)
            return lake
        key = tuple(str(s) for s in scans)
        if key not in built:
            folder = tmp_path_factory.mktemp("lake-template")
            built[key] = folder / "catalog.sqlite", folder / "data"
            ingest(f"ducklake:sqlite:{built[key][0]}", built[key][1], scans)
        catalog, data = built[key]
        target = Path(lake.url.removeprefix("ducklake:sqlite:"))
        shutil.copy(catalog, target)  # fresh mtimes, as files an ingest just wrote have
        shutil.copytree(data, lake.data, symlinks=True, copy_function=shutil.copy)
        with contextlib.closing(sqlite3.connect(target)) as conn, conn:
            changed = conn.execute("UPDATE ducklake_metadata SET value = ? WHERE key = 'data_path'",
                                   [str(lake.data).rstrip("/") + "/"]).rowcount
        assert changed == 1
        return lake
    return fill
