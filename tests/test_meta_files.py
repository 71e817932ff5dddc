"""A dynamic scan's time-resolved statistics are kept as files in the store, not as rows:
the values and bytes come back as shipped, verify checks the files, remove and the
migration (both ways) keep every statistic readable."""

from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
from alembic import command

import scandb
from scandb.catalog.database import Database, _alembic_config
from scandb.ingest import ingest
from scandb.synthetic import ScanSpec, VideoSpec, generate, generate_dynamic, write_zip

STATISTICS = "meta/statistics/"


def bits(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array).reshape(-1).view(np.uint8)


def stored_rows(db_path):
    with scandb.connect(db_path) as db:
        return db.sql("SELECT scan_key, path, content IS NULL, stored_as FROM scan_files "
                      "WHERE stored_as IS NOT NULL ORDER BY path").fetchall()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A database holding a dynamic and a static scan; tests copy it before changing it."""
    directory = tmp_path_factory.mktemp("meta")
    video, static = VideoSpec(animal_id=29517, seed=6), ScanSpec(animal_id=26873, seed=7)
    sources = {video.key: generate_dynamic(video).arrays, static.key: generate(static).arrays}
    db_path = directory / "lab.duckdb"
    with Database(db_path, read_only=False) as db:
        db.ensure_schema()
        ingest(db, write_zip(generate_dynamic(video), directory / f"{video.name}.zip"))
        ingest(db, write_zip(generate(static), directory / f"{static.name}.zip"))
    return db_path, video, static, sources


@pytest.fixture
def copied(lab, tmp_path):
    db_path, video, static, sources = lab
    shutil.copytree(db_path.parent, tmp_path / "db", ignore=shutil.ignore_patterns("*.zip"))
    return tmp_path / "db" / "lab.duckdb", video, static, sources


def test_time_resolved_statistics_are_files_holding_the_shipped_bytes(lab):
    db_path, video, static, sources = lab
    rows = stored_rows(db_path)
    shipped = sorted(name for name in sources[video.key] if name.startswith(STATISTICS))
    assert [path for _, path, _, _ in rows] == shipped and {key for key, *_ in rows} == {video.key}
    assert all(content_is_null for _, _, content_is_null, _ in rows)
    for _, path, _, stored_as in rows:
        raw = (db_path.parent / "lab.images" / stored_as).read_bytes()
        assert np.array_equal(bits(np.load(db_path.parent / "lab.images" / stored_as)), bits(sources[video.key][path]))
        assert stored_as.startswith("meta/") and len(raw) > 0
    with scandb.connect(db_path) as db:
        assert db.sql("SELECT count(*) FROM statistics WHERE scan_key = ? AND data IS NOT NULL",
                      [video.key]).fetchone()[0] == 0
        assert db.sql("SELECT count(*) FROM statistics WHERE scan_key = ? AND data IS NULL",
                      [static.key]).fetchone()[0] == 0


def test_statistics_and_files_read_back_bit_for_bit_from_either_kind_of_scan(lab):
    db_path, video, static, sources = lab
    with scandb.connect(db_path) as db:
        for spec in (video, static):
            for name, array in sources[spec.key].items():
                if not name.startswith(STATISTICS):
                    continue
                _, _, variable, source, stat = name[:-4].split("/")
                got = db.statistic(spec.key, variable, stat, source)
                assert got.dtype == array.dtype and got.shape == array.shape
                assert np.array_equal(bits(got), bits(array)), name
                assert np.array_equal(db.file(spec.key, name), array, equal_nan=True), name
        assert db.verify().ok


def test_verify_names_a_changed_or_missing_meta_file(copied):
    db_path, video, _, _ = copied
    rows = stored_rows(db_path)
    changed, missing = db_path.parent / "lab.images" / rows[0][3], db_path.parent / "lab.images" / rows[1][3]
    changed.write_bytes(changed.read_bytes()[:-4] + b"\0\0\0\0")
    missing.unlink()
    with scandb.connect(db_path) as db:
        text = db.verify().text()
    assert f"meta file lab.images/{rows[0][3]} ({rows[0][1]} of scan {video.key}): content does not match its hash" in text
    assert f"meta file lab.images/{rows[1][3]} ({rows[1][1]} of scan {video.key}): missing" in text


def test_a_removed_dynamic_scans_meta_files_stay_until_gc(copied):
    db_path, video, static, _ = copied
    meta = db_path.parent / "lab.images" / "meta"
    kept = sorted(meta.rglob("*.npy"))
    assert kept
    with scandb.connect(db_path, read_only=False) as db:
        db.remove(video.key)
        assert db.verify().ok
        assert sorted(meta.rglob("*.npy")) == kept  # a job that started before still reads them
        db.gc(older_than=0)
        assert db.verify().ok
    assert list(meta.rglob("*.npy")) == []


def migrate(db_path, target: str, direction) -> None:
    with Database(db_path, read_only=False) as db, db.engine.begin() as connection:
        config = _alembic_config()
        config.attributes["connection"] = connection
        direction(config, target)


def test_downgrading_puts_the_files_back_inline_and_upgrading_keeps_them_readable(copied):
    db_path, video, _, sources = copied
    migrate(db_path, "0006", command.downgrade)
    with Database(db_path) as db:
        inline = dict(db.conn.execute("SELECT path, content FROM scan_files WHERE scan_key = ? AND path LIKE "
                                      "'meta/statistics/%'", [video.key]).fetchall())
        assert db.conn.execute("SELECT count(*) FROM statistics WHERE data IS NULL").fetchone()[0] == 0
    for name, raw in inline.items():
        assert np.array_equal(np.load(io.BytesIO(raw)), sources[video.key][name], equal_nan=True)
    with Database(db_path, read_only=False) as db:
        db.upgrade()  # in its steps (catalog/database.py COMMIT_BEFORE), as 'scandb migrate' does
    assert stored_rows(db_path) == []
    with scandb.connect(db_path) as db:
        std = db.statistic(video.key, "responses", "std")
        assert np.array_equal(std, sources[video.key]["meta/statistics/responses/all/std.npy"], equal_nan=True)
        report = db.verify()
    # Only the files the downgrade put back inline are left over (the next write collects them).
    assert {p.kind.noun for p in report.found} == {"orphan file"}, report.text()
