"""``scandb verify`` finds every kind of damage and inconsistency; ``scandb remove`` undoes an ingest exactly."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pytest

import scandb
from scandb.catalog import registry
from scandb.catalog.database import Database
from scandb.maintenance.remove import delete_scan
from scandb.maintenance.report import SHOWN_PER_KIND
from scandb.synthetic import generate, write_zip

from .conftest import digest_database
from .hostile import (BAD_SPEC, GOOD_SPEC, before, good_db, image_files, immutable, run_cli,  # noqa: F401
                      template_db)

OTHER_SPEC = BAD_SPEC
"""A second, valid scan; it shares its test images (same ids, same pixels) with GOOD_SPEC's."""


@pytest.fixture(scope="module")
def other_scan(tmp_path_factory) -> Path:
    return write_zip(generate(OTHER_SPEC), tmp_path_factory.mktemp("other") / f"{OTHER_SPEC.name}.zip")


def verify(db: Path):
    return run_cli("verify", "--db", str(db))


def tamper(db: Path, *statements: str) -> None:
    """Change the database behind scandb's back, as a careless shell session could."""
    connection = duckdb.connect(str(db))
    try:
        for statement in statements:
            connection.execute(statement)
    finally:
        connection.close()


def hashes_of(db: Path, scan_key: str) -> set[str]:
    with Database(db) as opened:
        return {r[0] for r in opened.conn.execute(
            "SELECT DISTINCT image_hash FROM trials WHERE scan_key = ?", [scan_key]).fetchall()}


# -- verify -------------------------------------------------------------------------------


def test_verify_passes_a_sound_database(good_db):
    run = verify(good_db)
    assert run.code == 0, run
    assert run.out.strip().endswith(f"ok: 1 scan, {GOOD_SPEC.n_trials} trials, "
                                    f"{len(image_files(good_db))} image files checked")


def test_verify_reports_a_missing_image_file(good_db):
    missing = image_files(good_db)[0]
    missing.unlink()
    run = verify(good_db)
    assert run.code == 5
    assert f"image file lab.images/{missing.parent.name}/{missing.name}: missing" in run.out


def test_verify_reports_an_image_file_changed_on_disk(good_db):
    changed = image_files(good_db)[0]
    array = np.load(changed)
    np.save(changed, 255 - array)
    run = verify(good_db)
    assert run.code == 5
    assert f"{changed.name}: content does not match its hash" in run.out


def test_verify_reports_a_damaged_image_file(good_db):
    damaged = image_files(good_db)[0]
    damaged.write_bytes(damaged.read_bytes()[:-7])
    run = verify(good_db)
    assert run.code == 5
    assert f"{damaged.name}: damaged (truncated data" in run.out


def test_verify_reports_orphan_files_and_half_written_ones(good_db):
    some = image_files(good_db)[0]
    orphan = some.parent / ("0" * 64 + ".npy")
    orphan.write_bytes(some.read_bytes())
    half_written = some.parent / f".{'1' * 64}.999.tmp"
    half_written.write_bytes(b"\x93NUMPY")
    run = verify(good_db)
    assert run.code == 5
    assert f"{orphan.name}: orphan" in run.out and f"{half_written.name}: orphan" in run.out


@pytest.mark.parametrize("statement, problem", [
    ("DELETE FROM behavior WHERE trial_id = 7",
     f"behavior has {GOOD_SPEC.n_trials - 1} rows, scans.n_trials says {GOOD_SPEC.n_trials}"),
    ("DELETE FROM responses WHERE trial_id > 20", "responses has 21 rows"),
    ("UPDATE scans SET n_neurons = n_neurons + 1",
     f"neurons has {GOOD_SPEC.n_neurons} rows, scans.n_neurons says {GOOD_SPEC.n_neurons + 1}"),
    ("UPDATE trials SET trial_id = trial_id + 100 WHERE trial_id = 0", "trials has 1 rows with trial_id outside"),
    ("UPDATE responses SET response = response[1:5] WHERE trial_id = 3",
     f"1 response rows hold 5..5 values, not n_neurons = {GOOD_SPEC.n_neurons}"),
    ("DELETE FROM images WHERE image_hash = (SELECT min(image_hash) FROM images)",
     "trials name images the images table lacks"),
    ("INSERT INTO behavior VALUES ('9-9-9', 0, 1, 2, 3, 4, 5)",
     "behavior: 1 rows name scan 9-9-9, which the scans table lacks"),
], ids=["behavior-row", "response-rows", "neuron-count", "trial-id", "response-length", "image-row",
        "row-without-scan"])
def test_verify_reports_rows_that_disagree(good_db, statement, problem):
    tamper(good_db, statement)
    run = verify(good_db)
    assert run.code == 5, run
    assert problem in run.out, run.out


def count_rows(db: Path, sql: str) -> int:
    with Database(db) as opened:
        return opened.conn.execute(sql).fetchone()[0]


@pytest.mark.parametrize("table, statement", [
    ("area_responses", "UPDATE area_responses SET response_sum = response_sum + 1 WHERE trial_id = 3"),
    ("responses except values", "UPDATE responses SET image_id = image_id + 1 WHERE trial_id = 11"),
    ("neurons", "UPDATE neurons SET area = 'V2' WHERE neuron_idx = 4"),
    ("neurons", "UPDATE neurons SET x = x + 0.001 WHERE neuron_idx = 0"),
    ("trials", "UPDATE trials SET tier = 'train' WHERE tier = 'test' AND trial_id = (SELECT min(trial_id) "
               "FROM trials WHERE tier = 'test')"),
    ("behavior", "UPDATE behavior SET running_speed = 0 WHERE trial_id = 9"),
    ("statistics", "UPDATE statistics SET data = list_reverse(data) WHERE variable = 'responses' AND stat = 'std' "
                   "AND source = 'all'"),
    ("scans", "UPDATE scans SET image_dtype = '<f4'"),
], ids=["area-sum", "response-image-id", "neuron-area", "neuron-x", "trial-tier", "behavior-value",
        "statistics-values", "scans-row"])
def test_verify_reports_values_changed_in_sql(good_db, table, statement):
    """Rows that still agree with each other but not with what ingest wrote."""
    n_rows = count_rows(good_db, f"SELECT count(*) FROM {table.split()[0]}")
    tamper(good_db, statement)
    run = verify(good_db)
    assert run.code == 5, run
    assert f"scan {GOOD_SPEC.key}: {table}: its {n_rows:,} rows changed since ingest" in run.out, run.out
    assert run.out.startswith(f"{good_db}: damage found: 1 scan table changed since ingest"), run.out


def test_verify_reports_a_response_list_changed_in_sql_against_the_matrix(good_db):
    """The matrix's sha256 is recorded; every response list must equal its row, bit for bit."""
    tamper(good_db, "UPDATE responses SET response = list_transform(response, x -> x * 2) WHERE trial_id = 11")
    run = verify(good_db)
    assert run.code == 5, run
    assert f"of scan {GOOD_SPEC.key}: 1 trial differs from the responses table (first: trial 11)" in run.out


def test_without_a_matrix_verify_hashes_the_response_lists(tmp_path):
    scan = write_zip(generate(GOOD_SPEC), tmp_path / "scan.zip")
    db = tmp_path / "slim.duckdb"
    assert run_cli("ingest", "--no-response-matrix", str(scan), "--db", str(db)).code == 0
    assert verify(db).code == 0
    tamper(db, "UPDATE responses SET response = list_transform(response, x -> x * 2) WHERE trial_id = 11")
    run = verify(db)
    assert run.code == 5, run
    assert f"scan {GOOD_SPEC.key}: responses: its {GOOD_SPEC.n_trials} rows changed since ingest" in run.out


@pytest.mark.parametrize("table, where", [
    ("area_responses", "trial_id < 4"),
    ("statistics", "stat = 'mean'"),
    ("scan_files", "path LIKE 'meta/trials/%'"),
    ("response_matrices", "true"),
])
def test_verify_reports_deleted_rows(good_db, table, where):
    n_rows = count_rows(good_db, f"SELECT count(*) FROM {table}")
    n_deleted = count_rows(good_db, f"SELECT count(*) FROM {table} WHERE {where}")
    assert 0 < n_deleted < n_rows or table == "response_matrices"
    tamper(good_db, f"DELETE FROM {table} WHERE {where}")
    run = verify(good_db)
    assert run.code == 5, run
    assert (f"scan {GOOD_SPEC.key}: {table} has {n_rows - n_deleted:,} of its rows, {n_rows:,} at ingest "
            "(rows deleted)") in run.out, run.out


def test_verify_reports_a_changed_byte_of_a_stored_file(good_db):
    with Database(good_db, read_only=False) as db:
        path, content = db.conn.execute(
            "SELECT path, content FROM scan_files WHERE path LIKE '%tiers.npy'").fetchone()
        changed = bytearray(content)
        changed[-1] ^= 1
        db.conn.execute("UPDATE scan_files SET content = ? WHERE path = ?", [bytes(changed), path])
    run = verify(good_db)
    assert run.code == 5, run
    assert f"scan {GOOD_SPEC.key}: scan_files: its " in run.out and "rows changed since ingest" in run.out


def test_verify_reports_a_response_matrix_changed_on_disk(good_db):
    with Database(good_db) as db:
        path = db.image_dir / db.conn.execute("SELECT path FROM response_matrices").fetchone()[0]
    matrix = np.load(path, mmap_mode="r+")
    matrix[GOOD_SPEC.n_trials // 2, 3] += 1  # neither the first nor the last trial
    matrix.flush()
    del matrix
    run = verify(good_db)
    assert run.code == 5, run
    assert f"scan {GOOD_SPEC.key}: response matrix file changed since ingest" in run.out


def test_verify_reports_deleted_digests(good_db):
    tamper(good_db, "DELETE FROM scan_digests")
    run = verify(good_db)
    assert run.code == 5, run
    assert f"scan {GOOD_SPEC.key}: no digests in scan_digests" in run.out


def test_verify_counts_many_problems_of_one_kind_in_one_line(good_db):
    files = image_files(good_db)
    assert len(files) > SHOWN_PER_KIND
    for file in files:
        file.unlink()
    run = verify(good_db)
    assert run.code == 5, run
    lines = run.out.strip().splitlines()
    assert lines[0] == f"{good_db}: damage found: {len(files)} image files missing"
    assert lines[1].startswith(f"  {len(files)} image files missing (first: image file lab.images/")
    assert len(lines) == 2


def test_digests_from_a_duckdb_with_another_hash_are_a_note_not_damage(good_db):
    """A DuckDB whose hash() differs cannot recompute the table digests: say so, exit 0."""
    tamper(good_db, "UPDATE scan_digests SET method = 'duckdb-hash-sum 1', digest = '0' WHERE part = 'neurons'")
    run = verify(good_db)
    assert run.code == 0, run
    assert "note: 1 table digests were recorded by a DuckDB whose hash() differs" in run.out


def test_a_replaced_scan_verifies_with_its_new_digests(good_db, tmp_path):
    changed = generate(GOOD_SPEC)
    changed.arrays["data/behavior/0.npy"] = changed.arrays["data/behavior/0.npy"] + 1
    other_file = write_zip(changed, tmp_path / "changed.zip")
    assert run_cli("ingest", "--replace", str(other_file), "--db", str(good_db)).code == 0
    assert verify(good_db).code == 0


def test_verify_from_python_returns_the_report(good_db):
    n_rows = count_rows(good_db, "SELECT count(*) FROM statistics")
    n_mean = count_rows(good_db, "SELECT count(*) FROM statistics WHERE stat = 'mean'")
    tamper(good_db, "DELETE FROM statistics WHERE stat = 'mean'")
    with scandb.connect(good_db) as db:
        report = db.verify()
    assert not report.ok and report.exit_code == 5
    assert report.problems == [f"scan {GOOD_SPEC.key}: statistics has {n_rows - n_mean} of its rows, "
                               f"{n_rows} at ingest (rows deleted)"]


def test_verify_of_a_newer_schema_is_a_database_error(good_db):
    tamper(good_db, "UPDATE alembic_version SET version_num = 'f00d'")
    run = verify(good_db)
    assert run.code == 4, run
    assert "schema revision f00d is newer than this scandb knows" in run.error


def test_verify_on_a_missing_database_is_a_database_error(tmp_path):
    run = verify(tmp_path / "nothing.duckdb")
    assert run.code == 4
    assert "no database there" in run.error


# -- remove -------------------------------------------------------------------------------


def test_remove_then_gc_is_the_exact_inverse_of_ingest(good_db, before, other_scan):
    assert run_cli("ingest", str(other_scan), "--db", str(good_db)).code == 0
    shared = hashes_of(good_db, GOOD_SPEC.key) & hashes_of(good_db, OTHER_SPEC.key)
    assert shared, "the two scans should share their test images"
    only_other = hashes_of(good_db, OTHER_SPEC.key) - shared

    run = run_cli("remove", OTHER_SPEC.key, "--db", str(good_db))

    assert run.code == 0, run
    assert run.out.startswith(f"{OTHER_SPEC.key}: removed {OTHER_SPEC.n_trials} trials; "
                              f"{len(only_other) + 1} files no other scan uses stay for readers that started before")
    assert {p.stem for p in image_files(good_db)} >= only_other | shared  # a running job may still read them
    assert verify(good_db).code == 0
    collected = run_cli("gc", "--older-than", "0", "--db", str(good_db))
    assert collected.code == 0, collected
    assert f"deleted {len(only_other) + 1} store files" in collected.out
    assert digest_database(good_db) == before
    assert {p.stem for p in image_files(good_db)} >= shared
    assert verify(good_db).code == 0


def test_a_removed_scan_can_be_ingested_again(good_db, other_scan):
    """The same keys, deleted and inserted again: the DuckDB foreign-key pitfall does not bite."""
    assert run_cli("ingest", str(other_scan), "--db", str(good_db)).code == 0
    assert run_cli("remove", OTHER_SPEC.key, "--db", str(good_db)).code == 0
    run = run_cli("ingest", str(other_scan), "--db", str(good_db))
    assert run.code == 0 and f"{OTHER_SPEC.key}: ingested" in run.out
    assert verify(good_db).code == 0


def test_removing_an_unknown_scan_is_a_usage_error(good_db, before):
    run = run_cli("remove", "1-2-3", "--db", str(good_db))
    assert run.code == 2
    assert f"no scan '1-2-3' (it holds: {GOOD_SPEC.key})" in run.error
    assert digest_database(good_db) == before


def test_remove_is_all_or_nothing_when_a_delete_fails(good_db, before, monkeypatch):
    """A statement failing half-way through the deletes rolls all of them back; no file goes."""
    broken = registry.ScanTable("no_such_table", "scan")
    monkeypatch.setattr(registry, "TABLES", (*registry.TABLES[:3], broken, *registry.TABLES[3:]))
    run = run_cli("remove", GOOD_SPEC.key, "--db", str(good_db))
    assert run.code == 4
    assert f"removing {GOOD_SPEC.key} failed and was rolled back" in run.error
    assert digest_database(good_db) == before


def test_gc_deletes_only_files_released_longer_ago_than_asked(good_db, before, other_scan):
    """Removed just now: gc --older-than 1 (day) keeps the files; a dry run lists what 0 would delete."""
    assert run_cli("ingest", str(other_scan), "--db", str(good_db)).code == 0
    only_other = hashes_of(good_db, OTHER_SPEC.key) - hashes_of(good_db, GOOD_SPEC.key)
    assert run_cli("remove", OTHER_SPEC.key, "--db", str(good_db)).code == 0
    files = {p.stem for p in image_files(good_db)}

    kept = run_cli("gc", "--older-than", "1", "--db", str(good_db))
    assert kept.code == 0 and "deleted 0 store files" in kept.out, kept
    dry = run_cli("gc", "--older-than", "0", "--dry-run", "--db", str(good_db))
    assert dry.code == 0 and f"would delete {len(only_other) + 1} store files" in dry.out, dry
    listed = [line.split("file ", 1)[1] for line in dry.out.splitlines() if line.startswith("  file ")]
    assert {Path(f).stem for f in listed if "/responses/" not in f} == only_other
    assert len([f for f in listed if "/responses/" in f]) == 1  # the scan's response matrix
    assert {p.stem for p in image_files(good_db)} == files

    assert run_cli("gc", "--older-than", "0", "--db", str(good_db)).code == 0
    assert digest_database(good_db) == before


def test_files_gc_cannot_delete_are_left_for_the_next_writer(good_db, before, other_scan):
    """The released rows are gone (committed); the files stay as orphans, named by verify, collected later."""
    assert run_cli("ingest", str(other_scan), "--db", str(good_db)).code == 0
    assert run_cli("remove", OTHER_SPEC.key, "--db", str(good_db)).code == 0
    store = good_db.with_suffix(".images")
    with immutable(*store.iterdir()):
        run = run_cli("gc", "--older-than", "0", "--db", str(good_db))
    assert run.code == 4
    assert "gc could not delete" in run.error and "(Operation not permitted); 'scandb gc' again deletes it" in run.error
    assert ": orphan (no row references it" in verify(good_db).out

    assert run_cli("ingest", str(other_scan.parent / "missing.zip"), "--db", str(good_db)).code == 3
    assert digest_database(good_db) == before
