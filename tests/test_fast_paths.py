"""Response matrices and area sums agree with the rows they summarise; older databases work."""

from __future__ import annotations

import numpy as np
import pytest

import scandb
from scandb.catalog.database import Database, head_revision
from scandb.errors import DatabaseError
from scandb.ingest import ingest
from scandb.synthetic import ScanSpec, generate

from .scans import make_scan
from .hostile import run_cli


def test_area_sums_give_the_mean_of_every_response(lab_db):
    with scandb.connect(lab_db) as db:
        fast = db.sql("""
            SELECT a.scan_key, a.area, t.tier, sum(a.response_sum) / sum(a.n_neurons) AS mean
            FROM area_responses a JOIN trials t USING (scan_key, trial_id) GROUP BY ALL ORDER BY ALL""").fetchall()
        slow = db.sql("SELECT scan_key, area, tier, avg(response) FROM responses_long GROUP BY ALL ORDER BY ALL"
                      ).fetchall()
    assert [r[:3] for r in fast] == [r[:3] for r in slow]
    np.testing.assert_allclose([r[3] for r in fast], [r[3] for r in slow], rtol=1e-9)


def test_responses_long_has_one_row_per_trial_and_neuron(lab_db, sources):
    with scandb.connect(lab_db) as db:
        for scan, arrays in sources.items():
            rows = db.sql("SELECT trial_id, neuron_idx, response FROM responses_long WHERE scan_key = ? "
                          "AND trial_id = 3 ORDER BY neuron_idx", [scan]).fetchnumpy()
            np.testing.assert_array_equal(rows["neuron_idx"], np.arange(len(arrays["data/responses/3.npy"])))
            np.testing.assert_array_equal(rows["response"], arrays["data/responses/3.npy"])


def test_each_scan_has_a_matrix_equal_to_its_rows(lab_db, sources):
    with scandb.connect(lab_db) as db:
        for scan, arrays in sources.items():
            path, = db.sql("SELECT path FROM response_matrices WHERE scan_key = ?", [scan]).fetchone()
            matrix = np.load(lab_db.with_name("lab.images") / path)
            expected = np.stack([arrays[f"data/responses/{t}.npy"] for t in range(len(matrix))])
            assert matrix.dtype == np.float32
            np.testing.assert_array_equal(matrix, expected)


def test_a_missing_matrix_is_a_clear_error_and_verify_reports_it(tmp_path, open_db):
    db = open_db()
    ingest(db, make_scan(tmp_path, n_trials=20))
    path, = db.conn.execute("SELECT path FROM response_matrices").fetchone()
    db.close()
    (tmp_path / "lab.images" / path).unlink()
    with scandb.connect(db.path) as reader, pytest.raises(DatabaseError, match="scandb verify"):
        reader.responses([("26872-17-20", 0)])
    report = run_cli("verify", "--db", str(db.path))
    assert report.returncode == 5 and "response matrix" in report.stdout


def test_a_database_from_revision_0002_upgrades_and_still_fetches(tmp_path, open_db):
    current = open_db()
    ingest(current, make_scan(tmp_path, n_trials=20))
    current.close()
    path = tmp_path / "old.duckdb"
    with Database(path, read_only=False) as old:
        old.upgrade("0002")
        old.conn.execute(f"ATTACH '{current.path}' AS current (READ_ONLY)")
        for table in ("scans", "neurons", "trials", "behavior", "responses", "images", "statistics", "scan_files"):
            columns = [r[0] for r in old.conn.execute(
                "SELECT column_name FROM duckdb_columns() WHERE table_name = ? AND database_name = 'scandb' "
                "ORDER BY column_index", [table]).fetchall()]
            names = ", ".join(columns)
            old.conn.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM current.{table}")
        old.conn.execute("DETACH current")
    result = run_cli("migrate", "--db", str(path))
    assert result.returncode == 0 and f"to revision {head_revision()}" in result.stdout
    with scandb.connect(path) as db:
        assert db.sql("SELECT count(*) FROM response_matrices").fetchone()[0] == 0
        assert db.sql("SELECT sum(n_neurons) FROM area_responses").fetchone()[0] == 20 * 50
        assert db.sql("SELECT count(*) FROM responses r JOIN trials t USING (scan_key, trial_id) "
                      "WHERE r.image_id = t.image_id").fetchone()[0] == 20
        arrays = generate(ScanSpec(n_trials=20)).arrays
        np.testing.assert_array_equal(db.responses([("26872-17-20", 7), ("26872-17-20", 2)]),
                                      np.stack([arrays["data/responses/7.npy"], arrays["data/responses/2.npy"]]))


def test_responses_are_stored_in_image_order_with_their_image_ids(lab_db, sources):
    with scandb.connect(lab_db) as db:
        for scan in sources:
            rows = db.sql("SELECT r.image_id, t.image_id AS trial_image FROM responses r "
                          "JOIN trials t USING (scan_key, trial_id) WHERE r.scan_key = ? ORDER BY r.rowid",
                          [scan]).fetchnumpy()
            np.testing.assert_array_equal(rows["image_id"], rows["trial_image"])
            assert np.all(np.diff(rows["image_id"]) >= 0)


def test_without_a_response_matrix_fetches_go_through_sql(tmp_path):
    scan = make_scan(tmp_path, n_trials=20)
    result = run_cli("ingest", "--no-response-matrix", "--db", str(tmp_path / "slim.duckdb"), str(scan))
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "slim.images" / "responses").exists() or not any(
        (tmp_path / "slim.images" / "responses").iterdir())
    arrays = generate(ScanSpec(n_trials=20)).arrays
    with scandb.connect(tmp_path / "slim.duckdb") as db:
        assert db.sql("SELECT count(*) FROM response_matrices").fetchone()[0] == 0
        np.testing.assert_array_equal(db.responses([("26872-17-20", 9), ("26872-17-20", 0)]),
                                      np.stack([arrays["data/responses/9.npy"], arrays["data/responses/0.npy"]]))
    assert run_cli("verify", "--db", str(tmp_path / "slim.duckdb")).returncode == 0
