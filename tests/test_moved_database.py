"""A database moved or renamed loses nothing.

Rows name store files by keys relative to the store's folder (revision 0011), so a database
moved or renamed together with its store (``lab.duckdb`` + ``lab.images`` -> ``x.duckdb``
+ ``x.images``) finds every file, and the next ingest, verify and fetch work. A database
file moved without its store, or beside another database's store, is damage verify names
in one line; the garbage collector deletes nothing from a store none of whose files the
rows name.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

import scandb
from scandb.catalog.database import Database
from scandb.errors import DatabaseError
from scandb.synthetic import VideoSpec, generate_dynamic, write_zip

from .hostile import Run, run_cli
from .scans import make_scan


def source_responses(zip_path: Path) -> np.ndarray:
    """Every trial's responses, read from the scan's own zip, by trial id."""
    with zipfile.ZipFile(zip_path) as zf:
        files = {Path(n).stem: n for n in zf.namelist() if "/data/responses/" in f"/{n}" and n.endswith(".npy")}
        return np.stack([np.load(io.BytesIO(zf.read(files[str(i)]))) for i in range(len(files))])


def store_files(store: Path) -> dict[str, bytes]:
    return {p.relative_to(store).as_posix(): p.read_bytes() for p in sorted(store.rglob("*.npy"))}


def run(*args: str | Path) -> Run:
    """``scandb ARGS`` in this process (nothing here is about the process itself)."""
    return run_cli(*map(str, args))


def scan_key(db_path: Path, name_like: str) -> str:
    with scandb.connect(db_path) as db:
        return db.sql(f"SELECT scan_key FROM scans WHERE name LIKE '{name_like}%'").fetchone()[0]


def responses_of(db_path: Path, key: str) -> np.ndarray:
    with scandb.connect(db_path) as db:
        trials = db.sql(f"SELECT scan_key, trial_id FROM trials WHERE scan_key = '{key}' ORDER BY trial_id")
        return db.fetch(trials, "responses")["responses"]


def test_a_database_renamed_with_its_store_ingests_verifies_and_fetches(tmp_path: Path):
    first = make_scan(tmp_path, "common", animal_id=21067, seed=1)
    second = make_scan(tmp_path, "common", animal_id=22846, seed=2)
    assert run("ingest", first, "--db", tmp_path / "lab.duckdb").returncode == 0
    before = store_files(tmp_path / "lab.images")
    assert any(key.startswith("responses/") for key in before)

    (tmp_path / "lab.duckdb").rename(tmp_path / "x.duckdb")
    (tmp_path / "lab.images").rename(tmp_path / "x.images")
    ingested = run("ingest", second, "--db", tmp_path / "x.duckdb")
    assert ingested.returncode == 0, ingested.stderr

    after = store_files(tmp_path / "x.images")
    assert {k: v for k, v in after.items() if k in before} == before  # the first scan's files all stayed
    verified = run("verify", "--db", tmp_path / "x.duckdb")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    for zip_path, animal in ((first, 21067), (second, 22846)):
        got = responses_of(tmp_path / "x.duckdb", scan_key(tmp_path / "x.duckdb", f"%{animal}"))
        assert got.tobytes() == source_responses(zip_path).astype(np.float32).tobytes()


def test_a_video_scan_moved_with_its_store_keeps_its_only_copy_of_responses(tmp_path: Path):
    spec = VideoSpec(n_trials=12, n_neurons=6, n_frames=24, min_length=12)
    zip_path = write_zip(generate_dynamic(spec), tmp_path / f"{spec.name}.zip")
    with scandb.connect(tmp_path / "lab.duckdb", read_only=False) as db:
        db.ingest(zip_path)
    moved = tmp_path / "moved"
    moved.mkdir()
    (tmp_path / "lab.duckdb").rename(moved / "y.duckdb")
    (tmp_path / "lab.images").rename(moved / "y.images")
    with scandb.connect(moved / "y.duckdb", read_only=False) as db:
        db.ingest(make_scan(tmp_path, "common", animal_id=23343, seed=5))  # collects orphans first
        assert db.verify().ok
        trials = db.sql(f"SELECT scan_key, trial_id FROM trials WHERE scan_key = '{spec.key}' ORDER BY trial_id")
        got = db.fetch(trials, "responses")["responses"]
    expected = source_responses(zip_path)
    assert got.shape == expected.shape and np.array_equal(got, expected, equal_nan=True)


def test_a_database_file_moved_without_its_store_is_damage_verify_names(tmp_path: Path):
    zip_path = make_scan(tmp_path, "common", animal_id=21067, seed=1)
    assert run("ingest", zip_path, "--db", tmp_path / "lab.duckdb").returncode == 0
    alone = tmp_path / "alone"
    alone.mkdir()
    (tmp_path / "lab.duckdb").rename(alone / "lab.duckdb")

    verified = run("verify", "--db", alone / "lab.duckdb")
    assert verified.returncode == 5
    assert f"store {alone / 'lab.images'}: missing" in verified.stdout
    assert "move the store folder back beside lab.duckdb" in verified.stdout
    with scandb.connect(alone / "lab.duckdb") as db, pytest.raises(DatabaseError, match="lab.images"):
        trials = db.sql("SELECT scan_key, trial_id FROM trials")
        db.fetch(trials, "responses")

    (tmp_path / "lab.images").rename(alone / "lab.images")  # put back: whole again
    assert run("verify", "--db", alone / "lab.duckdb").returncode == 0


def test_beside_another_databases_store_verify_says_so_and_ingest_deletes_nothing(tmp_path: Path):
    for name, animal in (("a", 21067), ("b", 22846)):
        zip_path = make_scan(tmp_path, "common", animal_id=animal, seed=animal)
        assert run("ingest", zip_path, "--db", tmp_path / f"{name}.duckdb").returncode == 0
    (tmp_path / "a.images").rename(tmp_path / "a-own.images")
    (tmp_path / "b.images").rename(tmp_path / "a.images")  # a.duckdb now sits beside b's store
    theirs = store_files(tmp_path / "a.images")

    verified = run("verify", "--db", tmp_path / "a.duckdb")
    assert verified.returncode == 5
    assert "holds none of the" in verified.stdout and "another database's store" in verified.stdout
    ingested = run("ingest", make_scan(tmp_path, "common", animal_id=23343, seed=3), "--db", tmp_path / "a.duckdb")
    assert ingested.returncode != 0
    assert "not this database's store" in ingested.stderr and "nothing deleted" in ingested.stderr
    assert len(ingested.stderr.strip().splitlines()) == 1
    assert store_files(tmp_path / "a.images") == theirs


def test_keys_written_before_revision_0011_are_rewritten_so_a_moved_database_finds_its_files(tmp_path: Path):
    from .test_migrations import downgrade, upgrade

    zip_path = make_scan(tmp_path, "common", animal_id=21067, seed=1)
    with scandb.connect(tmp_path / "lab.duckdb", read_only=False) as db:
        db.ingest(zip_path)
    downgrade(tmp_path / "lab.duckdb", "0010")
    with Database(tmp_path / "lab.duckdb") as db:  # the old layout: the store folder's name in front
        old = db.conn.execute("SELECT path FROM response_matrices UNION ALL SELECT path FROM images").fetchall()
    assert old and all(path.startswith("lab.images/") for (path,) in old)

    (tmp_path / "lab.duckdb").rename(tmp_path / "x.duckdb")
    (tmp_path / "lab.images").rename(tmp_path / "x.images")
    upgrade(tmp_path / "x.duckdb")
    with scandb.connect(tmp_path / "x.duckdb") as db:
        new = db.sql("SELECT path FROM response_matrices UNION ALL SELECT path FROM images").fetchall()
        assert sorted(p for (p,) in new) == sorted(p.removeprefix("lab.images/") for (p,) in old)
        assert db.verify().ok  # the rewritten tables' digests were recorded again, the rest kept
    key = scan_key(tmp_path / "x.duckdb", "%21067")
    assert responses_of(tmp_path / "x.duckdb", key).tobytes() == source_responses(zip_path).astype(np.float32).tobytes()


def test_a_lake_goes_through_revision_0011_and_back_keeping_every_file(tmp_path: Path):
    from .test_migrations import downgrade, upgrade

    url, data = f"ducklake:sqlite:{tmp_path / 'catalog.sqlite'}", tmp_path / "data"
    zip_path = make_scan(tmp_path, "common", animal_id=21067, seed=1)
    with scandb.connect(url, read_only=False, data_path=data) as db:
        db.ingest(zip_path)
    files = store_files(data / "scandb.images")
    downgrade(url, "0010")
    with Database(url) as db:
        old = db.conn.execute("SELECT path FROM response_matrices UNION ALL SELECT stored_as FROM scan_files "
                              "WHERE stored_as IS NOT NULL UNION ALL SELECT path FROM images").fetchall()
    assert old and all(path.startswith("scandb.images/") for (path,) in old)
    upgrade(url)
    with scandb.connect(url, read_only=False) as db:
        assert db.verify().ok
        db.gc(365)  # older snapshots name the files the old way: still referenced, nothing deleted
        key = db.sql("SELECT scan_key FROM scans").fetchone()[0]
    assert store_files(data / "scandb.images") == files
    assert responses_of(url, key).tobytes() == source_responses(zip_path).astype(np.float32).tobytes()
