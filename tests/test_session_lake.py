"""experanto sessions on a lake with a PostgreSQL catalog, from several processes: two
ingests of different sessions commit at the same moment (one conflicts and retries), beside
a scan; the lake then verifies clean and samples as the source folders do."""

from __future__ import annotations

import numpy as np
import pytest

import scandb
from tests import experanto_reference as reference
from tests.experanto_sessions import make_session, spec_for

from .hostile import run_cli
from .scans import make_scan
from .test_lake_concurrency import PausedIngest, assert_consistent, commit_at_once

SESSIONS = {"videos": {"animal_id": 41001, "seed": 1}, "tiers_and_spikes": {"animal_id": 41002, "seed": 2}}


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("lake-sessions")
    found = {}
    for variant, changes in SESSIONS.items():
        (root / variant).mkdir()
        found[variant] = make_session(root, variant, tar=True, **changes)
        found[f"{variant} folder"] = make_session(root / variant, variant, **changes)
    found["scan"] = make_scan(root, "common", animal_id=23001, seed=5, n_trials=12, n_neurons=6)
    return found


@pytest.mark.parametrize("lake", ["postgres"], indirect=True)  # SQLite: test_session_ingest
def test_two_sessions_ingested_at_once_beside_a_scan_both_commit_and_sample_as_their_folders(lake, sources,
                                                                                                tmp_path):
    assert run_cli("ingest", str(sources["scan"]), "--db", lake.url, "--data-path", str(lake.data)).code == 0
    runs = commit_at_once([PausedIngest(sources[variant], "--db", lake.url, lock=False) for variant in SESSIONS])
    assert any("another process committed first; retrying" in line for r in runs for line in r.err_lines), runs
    keys = [spec_for(variant, **changes).key for variant, changes in SESSIONS.items()]
    with scandb.connect(lake.url) as db:
        scan_key = db.sql("SELECT scan_key FROM scans WHERE kind = 'static'").fetchone()[0]
    assert_consistent(lake.url, sorted(keys + [scan_key]))
    with scandb.connect(lake.url) as db:
        for variant, key in zip(SESSIONS, keys):
            folder = sources[f"{variant} folder"]
            start, end = db.sql("SELECT start_time, end_time FROM modalities WHERE scan_key = ? AND name = 'responses'",
                                params=[key]).fetchone()
            times = np.linspace(start - 1, end + 1, 40)
            values, valid = db.sample(key, times, ["responses"], return_valid=True)["responses"]
            raw, ref_valid = reference.interpolate(folder, "responses", times)
            np.testing.assert_array_equal(valid, ref_valid)
            expected = reference.normalize(folder, "responses", raw, "normalize_variance_only")
            assert values.dtype == expected.dtype and values.tobytes() == expected.tobytes(), key
