"""Withheld zeros stay out of averages: responses_long carries the trial's withheld flags
(migration 0010), and a mean over the trials not withheld is the mean of the source data."""

from __future__ import annotations

import numpy as np

import scandb
from scandb.catalog.database import Database
from scandb.synthetic import generate

from .test_dynamic_scans import ingest_paths, zero_filled_static
from .test_migrations import downgrade, upgrade

MEAN_PER_TIER = """
    SELECT tier, avg(response) AS mean_response FROM responses_long
    WHERE scan_key = ? AND NOT responses_withheld GROUP BY tier ORDER BY tier"""


def source_responses(spec, trials) -> np.ndarray:
    """The scan's response files of these trials (zero_filled_static zeroes only test ones)."""
    arrays = generate(spec).arrays
    return np.stack([arrays[f"data/responses/{i}.npy"] for i in trials.tolist()])


def test_responses_long_has_the_withheld_flags_and_a_mean_skipping_them_is_numpys(tmp_path):
    spec, tiers, path = zero_filled_static(tmp_path)
    db_path = tmp_path / "lab.duckdb"
    ingest_paths(db_path, path)
    with scandb.connect(db_path) as db:
        flags = db.sql("SELECT DISTINCT trial_id, responses_withheld, behavior_withheld FROM responses_long "
                       "WHERE scan_key = ? ORDER BY trial_id", [spec.key]).fetchall()
        means = dict(db.sql(MEAN_PER_TIER, [spec.key]).fetchall())
    assert flags == [(i, tier == "test", True) for i, tier in enumerate(tiers.tolist())]
    assert "test" not in means
    for tier in set(tiers.tolist()) - {"test"}:
        trials = np.flatnonzero(tiers == tier)
        expected = source_responses(spec, trials).astype(np.float64).mean()
        np.testing.assert_allclose(means[tier], expected, rtol=1e-9, err_msg=tier)


def test_migration_0010_adds_the_flags_to_responses_long_and_its_downgrade_removes_them(tmp_path):
    spec, _, path = zero_filled_static(tmp_path)
    db_path = tmp_path / "lab.duckdb"
    ingest_paths(db_path, path)
    columns = "SELECT column_name FROM information_schema.columns WHERE table_name = 'responses_long'"
    downgrade(db_path, "0008")
    with Database(db_path) as db:
        assert db.revision() == "0008"
        assert "responses_withheld" not in {c for (c,) in db.conn.execute(columns).fetchall()}
    upgrade(db_path)
    with scandb.connect(db_path) as db:
        assert {"responses_withheld", "behavior_withheld"} <= {c for (c,) in db.sql(columns).fetchall()}
        assert db.sql("SELECT count(*) FROM responses_long WHERE responses_withheld").fetchone()[0] > 0
