"""Opening a database never reaches for the network: DuckDB's automatic extension
download and load are off on every connection scandb makes."""

from __future__ import annotations

import pytest

from scandb.catalog.database import Database


@pytest.mark.parametrize("read_only", [True, False])
def test_connections_never_install_or_load_extensions_by_themselves(tmp_path, lab_db, read_only):
    path = lab_db if read_only else tmp_path / "new.duckdb"
    with Database(path, read_only=read_only) as db:
        settings = dict(db.conn.execute(
            "SELECT name, value FROM duckdb_settings() "
            "WHERE name IN ('autoinstall_known_extensions', 'autoload_known_extensions')").fetchall())
    assert settings == {"autoinstall_known_extensions": "false", "autoload_known_extensions": "false"}


def test_a_feature_needing_an_extension_is_refused_not_downloaded(lab_db):
    """With auto-install on, DuckDB would answer "Failed to download extension" instead."""
    import duckdb
    with Database(lab_db) as db, pytest.raises(duckdb.CatalogException, match="not in the catalog"):
        db.conn.execute("SELECT * FROM sqlite_scan('nowhere.db', 't')").fetchall()
