"""Property: any generated scan round-trips through ingest and fetch unchanged."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import scandb
from scandb.catalog.database import Database
from scandb.ingest import ingest
from scandb.source import IMAGE_ID_FILES
from scandb.synthetic import ScanSpec, generate, write_folder, write_zip

specs = st.builds(
    ScanSpec,
    animal_id=st.integers(1, 99_999),
    n_trials=st.integers(2, 40),
    n_neurons=st.integers(1, 30),
    image_shape=st.tuples(st.just(1), st.integers(2, 20), st.integers(2, 20)),
    image_dtype=st.sampled_from(["uint8", "uint16", "int16", "float32", "float64"]),
    response_dtype=st.just("float32"),
    behavior_dtype=st.sampled_from(["float32", "float64"]),
    n_test_images=st.integers(0, 3),
    image_id_file=st.sampled_from(IMAGE_ID_FILES),
    hashed_trial_idx=st.booleans(),
    behavior_2d=st.booleans(),
    top_folder=st.booleans(),
    config_json=st.booleans(),
    extra_trial_meta=st.booleans(),
    seed=st.integers(0, 1000),
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=specs, as_folder=st.booleans(), order_seed=st.integers(0, 2**32 - 1))
def test_generated_scans_round_trip(spec, as_folder, order_seed):
    scan = generate(spec)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        path = write_folder(scan, tmp / spec.name) if as_folder else write_zip(scan, tmp / "scan.zip")
        with Database(tmp / "p.duckdb", read_only=False) as db:
            db.ensure_schema()
            assert ingest(db, path).status == "ingested"
        order = np.random.default_rng(order_seed).permutation(spec.n_trials)
        with scandb.connect(tmp / "p.duckdb") as db:
            got = db.fetch([(spec.key, int(t)) for t in order], "images", "responses", "behavior",
                           "pupil_center", "tier")
            for key in ("images", "responses", "behavior", "pupil_center"):
                expected = np.stack([scan.arrays[f"data/{key}/{t}.npy"] for t in order])
                assert got[key].dtype == expected.dtype
                assert got[key].tobytes() == expected.reshape(got[key].shape).tobytes()
            np.testing.assert_array_equal(got["tier"], scan.arrays["meta/trials/tiers.npy"][order])
            for rel, array in scan.arrays.items():
                if rel.startswith("meta/"):
                    stored = db.file(spec.key, rel)
                    assert stored.dtype == array.dtype and stored.tobytes() == array.tobytes()
