"""The Python layer returns exactly the arrays the source files hold, in the order asked."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import scandb
from scandb.errors import UsageError

from .conftest import THREE_SPECS
from .scans import stack

COMMON, SMALL, FOLDER = (spec.key for spec in THREE_SPECS)


@pytest.fixture
def db(lab_db):
    with scandb.connect(lab_db) as opened:
        yield opened


def test_sql_returns_a_relation(db):
    relation = db.sql("SELECT scan_key, count(*) AS n FROM trials GROUP BY 1 ORDER BY 1")
    assert relation.df()["n"].tolist() == [s.n_trials for s in sorted(THREE_SPECS, key=lambda s: s.key)]
    assert relation.arrow().read_all().num_rows == 3
    assert db.sql("SELECT ? + 1", [41]).fetchall() == [(42,)]


def test_fetch_follows_a_shuffled_sql_order(db, sources):
    selection = db.sql("SELECT scan_key, trial_id FROM trials WHERE scan_key = ? ORDER BY hash(trial_id)",
                       [COMMON]).df()
    got = db.fetch(f"SELECT scan_key, trial_id FROM trials WHERE scan_key = '{COMMON}' ORDER BY hash(trial_id)")
    trials = selection["trial_id"].tolist()
    assert trials != sorted(trials)
    for key in ("images", "responses", "behavior", "pupil_center"):
        expected = stack(sources[COMMON], key, trials)
        np.testing.assert_array_equal(got[key], expected.reshape(got[key].shape))


def test_fetch_takes_dataframes_pairs_and_trial_columns(db, sources):
    trials = db.trials(scan=COMMON, tier="test")
    got = db.fetch(trials, "responses", "tier", "image_id", "running_speed")
    assert set(got["tier"]) == {"test"}
    np.testing.assert_array_equal(got["image_id"], trials["image_id"].to_numpy())
    np.testing.assert_array_equal(got["responses"], stack(sources[COMMON], "responses", trials["trial_id"]))
    pairs = [(COMMON, 5), (COMMON, 2)]
    np.testing.assert_array_equal(db.responses(pairs), stack(sources[COMMON], "responses", [5, 2]))


def test_cross_scan_selection_with_equal_neuron_counts_stacks(db, sources):
    rows = [(FOLDER, 3), (COMMON, 1), (FOLDER, 0)]
    got = db.fetch(rows, "responses", "behavior")
    for i, (scan, trial) in enumerate(rows):
        np.testing.assert_array_equal(got["responses"][i], sources[scan][f"data/responses/{trial}.npy"])
        np.testing.assert_array_equal(got["behavior"][i], sources[scan][f"data/behavior/{trial}.npy"].ravel())


def test_different_neuron_counts_need_per_scan(db, sources):
    rows = [(COMMON, 0), (SMALL, 0), (COMMON, 1)]
    with pytest.raises(UsageError, match="different neuron counts"):
        db.fetch(rows, "responses")
    per_scan = db.fetch(rows, "responses", per_scan=True)
    assert list(per_scan) == [COMMON, SMALL]
    np.testing.assert_array_equal(per_scan[COMMON]["responses"], stack(sources[COMMON], "responses", [0, 1]))
    np.testing.assert_array_equal(per_scan[SMALL]["responses"], stack(sources[SMALL], "responses", [0]))


def test_neuron_subsets_by_index_and_unit_id_keep_the_order_given(db, sources):
    unit_ids = sources[SMALL]["meta/neurons/unit_ids.npy"]
    order = [7, 2, 30]
    by_index = db.responses([(SMALL, 4), (SMALL, 9)], neurons={SMALL: order})
    np.testing.assert_array_equal(by_index, stack(sources[SMALL], "responses", [4, 9])[:, order])
    by_unit = db.responses([(SMALL, 4), (SMALL, 9)],
                           neurons=pd.DataFrame({"scan_key": SMALL, "unit_id": unit_ids[order]}))
    np.testing.assert_array_equal(by_unit, by_index)


def test_neuron_selection_by_area_across_scans_with_equal_counts(db, sources):
    picked = pd.concat([db.neurons(scan=scan, area="V1").head(3) for scan in (COMMON, SMALL)])
    got = db.responses([(COMMON, 0), (SMALL, 0)], neurons=picked)
    assert got.shape == (2, 3)
    for row, scan in enumerate((COMMON, SMALL)):
        idx = picked.loc[picked.scan_key == scan, "neuron_idx"].to_numpy()
        np.testing.assert_array_equal(got[row], sources[scan]["data/responses/0.npy"][idx])


def test_helpers_filter_trials_and_neurons(db, sources):
    tiers = sources[COMMON]["meta/trials/tiers.npy"]
    assert len(db.trials(scan=COMMON, tier="train")) == int((tiers == "train").sum())
    assert len(db.trials(tier=["train", "test"])) == sum(
        int(np.isin(s["meta/trials/tiers.npy"], ["train", "test"]).sum()) for s in sources.values())
    assert len(db.trials(where="running_speed > ?", params=[1e9])) == 0
    v1 = db.neurons(scan=COMMON, area="V1", layer="L4")
    area, layer = sources[COMMON]["meta/neurons/area.npy"], sources[COMMON]["meta/neurons/layer.npy"]
    np.testing.assert_array_equal(v1["neuron_idx"], np.flatnonzero((area == "V1") & (layer == "L4")))
    unit = int(sources[COMMON]["meta/neurons/unit_ids.npy"][4])
    assert db.neurons(scan=COMMON, unit_id=unit)["neuron_idx"].tolist() == [4]


def test_repeats_group_test_trials_by_image(db, sources):
    groups = db.repeats(COMMON)
    ids, tiers = sources[COMMON]["meta/trials/frame_image_id.npy"], sources[COMMON]["meta/trials/tiers.npy"]
    expected = {int(i): np.flatnonzero((ids == i) & (tiers == "test")) for i in np.unique(ids[tiers == "test"])}
    assert groups.keys() == expected.keys()
    for image_id, trials in groups.items():
        np.testing.assert_array_equal(trials, expected[image_id])
        images = db.images([(COMMON, int(t)) for t in trials])
        assert (images == images[0]).all(), "repeats show one image"


def test_images_in_float32_on_request(db, sources):
    got = db.images([(COMMON, 3)], dtype="float32")
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got[0], sources[COMMON]["data/images/3.npy"].astype(np.float32))


def test_unknown_trials_keys_and_columns_are_clear_errors(db):
    with pytest.raises(UsageError, match=rf"no scan 'nope' in the database \(it holds: {COMMON}, "):
        db.fetch([("nope", 1)], "responses")
    with pytest.raises(UsageError, match=rf"scan {COMMON} has trials 0\.\.{THREE_SPECS[0].n_trials - 1}, "
                                         r"the selection names 9999, -1"):
        db.fetch([(COMMON, 0), (COMMON, 9999), (COMMON, -1)], "responses")
    with pytest.raises(UsageError, match="unknown key 'nonsense'"):
        db.fetch([(COMMON, 1)], "nonsense")
    with pytest.raises(UsageError, match="scan_key and trial_id"):
        db.fetch("SELECT 1 AS x")
    with pytest.raises(UsageError, match="selection query failed"):
        db.fetch("SELECT * FROM nowhere")


def test_hostile_strings_are_bound_not_executed(db):
    hostile = "x'; DROP TABLE trials; --"
    with pytest.raises(UsageError, match="exists nowhere"):
        db.trials(scan=hostile)
    with pytest.raises(UsageError, match="exists nowhere"):
        db.neurons(scan=COMMON, area=hostile)
    with pytest.raises(UsageError, match="trials\\(where=...\\) failed"):
        db.trials(where=hostile)
    with pytest.raises(UsageError):
        db.fetch([(COMMON, 1)], 'tier" FROM trials; DROP TABLE trials; --')
    with pytest.raises(UsageError):
        db.statistic(hostile, "responses", "std")
    assert db.sql("SELECT count(*) FROM trials").fetchone()[0] > 0


def test_connect_is_read_only_by_default(db, lab_db):
    with pytest.raises(UsageError, match=r'^query failed: Invalid Input Error: Cannot execute statement of type '
                                         r'"DELETE" on database "\w+" which is attached in read-only mode!$'):
        db.sql("DELETE FROM trials")
    with scandb.connect(lab_db) as second:
        assert second.scans().shape[0] == 3


def test_returned_arrays_are_writable_numpy_arrays(db):
    got = db.fetch([(COMMON, 0), (COMMON, 1)])
    for key, array in got.items():
        assert isinstance(array, np.ndarray) and array.flags.writeable, key
        assert array.dtype != object, key
