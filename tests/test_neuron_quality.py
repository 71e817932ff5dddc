"""neuron_quality: per-neuron repeat reliability computed at ingest (and by revision 0012)
equals neuralpredictors' functions called here on the scans' own source arrays."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import scandb
from scandb.catalog.database import Database
from scandb.ingest import ingest
from scandb.synthetic import ScanSpec, VideoSpec, generate, generate_dynamic, write_zip

from .reference_loaders import import_neuralpredictors
from .test_dynamic_scans import zero_filled_static
from .test_migrations import downgrade, upgrade

STATIC = ScanSpec(animal_id=24301, seed=51, n_trials=60, n_neurons=23, n_test_images=3, responsive=True)
VIDEO = VideoSpec(animal_id=29811, seed=52, n_trials=30, n_neurons=11)
METRICS = ("oracle_correlation", "oracle_correlation_conservative", "explainable_variance", "snr")
README = Path(__file__).resolve().parents[1] / "README.md"
TOP_V1 = next(block for block in re.findall(r"```sql\n(.*?)```", README.read_text(), flags=re.S)
              if "500 most reliable V1 neurons" in block).replace("LIMIT 500", "LIMIT 5")
"""The README's "500 most reliable V1 neurons", five of them here."""


def np_functions():
    return import_neuralpredictors("neuralpredictors.measures.np_functions")


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    directory = tmp_path_factory.mktemp("quality")
    path = directory / "lab.duckdb"
    with Database(path, read_only=False) as db:
        db.ensure_schema()
        ingest(db, write_zip(generate(STATIC), directory / f"{STATIC.name}.zip"))
        ingest(db, write_zip(generate_dynamic(VIDEO), directory / f"{VIDEO.name}.zip"))
    return path


def stored(path, scan_key: str) -> dict[str, np.ndarray]:
    with scandb.connect(path) as db:
        frame = db.sql("SELECT * FROM neuron_quality WHERE scan_key = ? ORDER BY neuron_idx", [scan_key]).df()
    return {c: frame[c].to_numpy() for c in frame.columns}


def static_outputs(arrays: dict, n_trials: int) -> list[np.ndarray]:
    """The test tier's repeats by image id, from the source files: one (repeats, neurons) array per image."""
    tiers, ids = arrays["meta/trials/tiers.npy"], arrays["meta/trials/frame_image_id.npy"]
    test = [t for t in range(n_trials) if tiers[t] == "test"]
    groups = {}
    for t in test:
        groups.setdefault(int(ids[t]), []).append(arrays[f"data/responses/{t}.npy"])
    return [np.stack(g).astype(np.float64) for g in groups.values() if len(g) > 1]


def video_outputs(arrays: dict, n_trials: int) -> list[np.ndarray]:
    """The oracle tier's repeats, each valid frame of each video one stimulus: (repeats, neurons) arrays."""
    tiers, ids = arrays["meta/trials/tiers.npy"], arrays["meta/trials/frame_image_id.npy"]
    groups = {}
    for t in range(n_trials):
        if tiers[t] == "oracle":
            groups.setdefault(int(ids[t]), []).append(arrays[f"data/responses/{t}.npy"].astype(np.float64))
    outputs = []
    for repeats in groups.values():
        if len(repeats) < 2:
            continue
        stacked = np.stack(repeats)  # (repeats, neurons, T), NaN after each trial's end
        valid = min(int((~np.isnan(r).all(axis=0)).sum()) for r in repeats)
        outputs.extend(stacked[:, :, f] for f in range(valid))
    return outputs


def expected(outputs: list[np.ndarray]) -> dict[str, np.ndarray]:
    f = np_functions()
    with np.errstate(invalid="ignore", divide="ignore"):
        return _expected(f, outputs)


def _expected(f, outputs):
    regular = np.stack(outputs) if len({o.shape for o in outputs}) == 1 else None
    assert regular is not None, "the fixtures repeat every stimulus equally often"
    values = {"oracle_correlation": f.oracle_corr_jackknife(outputs),
              "oracle_correlation_conservative": f.oracle_corr_conservative(outputs),
              "explainable_variance": f.explainable_var(regular),
              "snr": f.snr(regular)}
    return {name: np.where(np.isfinite(v), v, np.nan) for name, v in values.items()}  # undefined: NULL


def assert_rows_equal(rows: dict, want: dict, n_repeats: int, n_neurons: int) -> None:
    assert rows["neuron_idx"].tolist() == list(range(n_neurons))
    assert set(rows["n_repeats"].tolist()) == {n_repeats}
    for name in METRICS:
        got = np.array([np.nan if v is None or v is pd_na() else v for v in rows[name]], dtype=np.float64)
        np.testing.assert_allclose(got, want[name], rtol=1e-9, atol=1e-12, err_msg=name)


def pd_na():
    import pandas as pd
    return pd.NA


def test_static_rows_equal_neuralpredictors_on_the_source_arrays(both):
    arrays = generate(STATIC).arrays
    outputs = static_outputs(arrays, STATIC.n_trials)
    rows = stored(both, STATIC.key)
    assert set(rows["tier"].tolist()) == {"test"}
    assert_rows_equal(rows, expected(outputs), sum(len(o) for o in outputs), STATIC.n_neurons)
    assert np.nanmean(rows["oracle_correlation"].astype(float)) > 0.1  # image-driven responses repeat


def test_video_rows_equal_neuralpredictors_over_each_valid_frame(both):
    arrays = generate_dynamic(VIDEO).arrays
    outputs = video_outputs(arrays, VIDEO.n_trials)
    rows = stored(both, VIDEO.key)
    assert set(rows["tier"].tolist()) == {"oracle"}
    tiers = arrays["meta/trials/tiers.npy"]
    n_oracle = int((tiers == "oracle").sum())
    assert_rows_equal(rows, expected(outputs), n_oracle, VIDEO.n_neurons)


def test_the_most_reliable_v1_neurons_are_one_query_and_a_neurons_filter(both):
    with scandb.connect(both) as db:
        top = db.sql(TOP_V1).fetchall()
        assert len(top) == 5
        values = [row[3] for row in top]
        assert values == sorted(values, reverse=True)
        everything = db.sql("SELECT q.oracle_correlation FROM neuron_quality q JOIN neurons n "
                            "USING (scan_key, neuron_idx) WHERE n.area = 'V1' AND q.oracle_correlation IS NOT NULL"
                            ).fetchall()
        assert values[-1] >= sorted((v for (v,) in everything), reverse=True)[4]
        threshold = values[-1]
        chosen = db.neurons(area="V1", min_oracle_correlation=threshold)
        assert sorted(zip(chosen.scan_key, chosen.neuron_idx)) == sorted(tuple(row[:2]) for row in top)
        assert "oracle_correlation" in chosen.columns
        assert len(db.neurons(scan=STATIC.key, min_oracle_correlation=-1.0)) <= STATIC.n_neurons


def test_a_withheld_test_tier_gives_null_metrics_and_no_repeats(tmp_path):
    spec, _, path = zero_filled_static(tmp_path)
    db_path = tmp_path / "lab.duckdb"
    with Database(db_path, read_only=False) as db:
        db.ensure_schema()
        ingest(db, path)
    with scandb.connect(db_path) as db:
        rows = db.sql("SELECT tier, n_repeats, oracle_correlation, oracle_correlation_conservative, "
                      "explainable_variance, snr FROM neuron_quality WHERE scan_key = ?", [spec.key]).fetchall()
    assert len(rows) == spec.n_neurons
    assert set(rows) == {("test", 0, None, None, None, None)}


def test_revision_0012_fills_scans_ingested_before_it(both, tmp_path):
    import shutil

    copy = tmp_path / "lab.duckdb"
    shutil.copy(both, copy)
    shutil.copytree(both.with_name("lab.images"), tmp_path / "lab.images")
    query = "SELECT * FROM neuron_quality ORDER BY ALL"
    digests = "SELECT * FROM scan_digests WHERE part = 'neuron_quality' ORDER BY ALL"
    with Database(copy) as db:
        at_ingest, digests_at_ingest = db.conn.execute(query).fetchall(), db.conn.execute(digests).fetchall()
    assert len(digests_at_ingest) == 2
    downgrade(copy, "0011")
    with Database(copy) as db:
        assert "neuron_quality" not in db.tables()
        assert db.conn.execute(digests).fetchall() == []
    upgrade(copy)
    with Database(copy) as db:
        assert db.conn.execute(query).fetchall() == at_ingest
        assert db.conn.execute(digests).fetchall() == digests_at_ingest
    with scandb.connect(copy) as db:
        assert db.verify().ok


def test_a_scan_without_response_matrix_gets_the_same_rows(both, tmp_path):
    path = write_zip(generate(STATIC), tmp_path / f"{STATIC.name}.zip")
    db_path = tmp_path / "lab.duckdb"
    with Database(db_path, read_only=False) as db:
        db.ensure_schema()
        ingest(db, path, response_matrix=False)
    query = "SELECT * FROM neuron_quality WHERE scan_key = ? ORDER BY ALL"
    with Database(db_path) as db, Database(both) as other:
        assert db.conn.execute(query, [STATIC.key]).fetchall() == other.conn.execute(query, [STATIC.key]).fetchall()


def test_constant_and_offset_neurons_and_unequal_repeats_match_neuralpredictors():
    """Sums about a reference keep precision for a neuron with a large offset; a neuron that
    never varies gives what neuralpredictors gives (its eps), NaN (NULL) where it divides 0 by 0."""
    from scandb.quality import Accumulator

    f = np_functions()
    rng = np.random.default_rng(5)
    signal = rng.gamma(2.0, size=(7, 4))
    outputs = np.stack([signal + rng.normal(scale=0.5, size=signal.shape) for _ in range(6)], axis=1)
    outputs[..., 2] = 0.25  # never varies
    outputs[..., 3] += 1e4  # large offset, small variance
    acc = Accumulator(4)
    for stimulus in outputs:
        acc.add(stimulus[:, None, :])
    got = {name: np.where(np.isfinite(v), v, np.nan) for name, v in acc.result().items()}
    want = expected(list(outputs))
    for name in METRICS:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-7, atol=1e-9, err_msg=name)
    # unequal repeat counts: the two functions that accept them agree too
    ragged = [outputs[0, :3], outputs[1], outputs[2, :2]]
    acc = Accumulator(4)
    for stimulus in ragged:
        acc.add(stimulus[:, None, :])
    got = acc.result()
    np.testing.assert_allclose(got["oracle_correlation"], f.oracle_corr_jackknife(ragged), rtol=1e-7, atol=1e-9)
    with np.errstate(invalid="ignore"):  # the constant neuron: 0 / 0
        conservative = f.oracle_corr_conservative(ragged)
    np.testing.assert_allclose(got["oracle_correlation_conservative"], conservative, rtol=1e-7, atol=1e-9)


def test_a_lake_gets_the_same_rows_at_ingest_and_from_revision_0012(both, lake, tmp_path):
    directory = tmp_path / "scans"
    directory.mkdir()
    paths = [write_zip(generate(STATIC), directory / f"{STATIC.name}.zip"),
             write_zip(generate_dynamic(VIDEO), directory / f"{VIDEO.name}.zip")]
    with Database(lake.url, read_only=False, data_path=lake.data) as on_lake:
        on_lake.ensure_schema()
        for path in paths:
            ingest(on_lake, path)
    query = "SELECT * FROM neuron_quality ORDER BY ALL"
    with Database(both) as db:
        want = db.conn.execute(query).fetchall()
    with Database(lake.url) as on_lake:
        assert on_lake.conn.execute(query).fetchall() == want
    downgrade(lake.url, "0011")
    upgrade(lake.url)
    with Database(lake.url) as on_lake:
        assert on_lake.conn.execute(query).fetchall() == want
    with scandb.connect(lake.url) as db:
        assert db.verify().ok
