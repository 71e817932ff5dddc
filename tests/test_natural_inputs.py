"""What a new user types first works, and every mistake is one clear line naming the fix."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import scandb
from scandb.catalog.database import Database
from scandb.errors import UsageError
from scandb.ingest import ingest

from .conftest import THREE_SPECS
from .scans import make_scan, spec_for, stack

COMMON, SMALL, FOLDER = (spec.key for spec in THREE_SPECS)
N_NEURONS = {spec.key: spec.n_neurons for spec in THREE_SPECS}
IMAGE_SHAPE = THREE_SPECS[0].image_shape


@pytest.fixture
def db(lab_db):
    with scandb.connect(lab_db) as opened:
        yield opened


# -- neurons= ------------------------------------------------------------------------------

@pytest.mark.parametrize("make", [list, np.array, pd.Series], ids=["list", "numpy", "series"])
def test_neuron_positions_of_a_one_scan_selection(db, sources, make):
    picked = [0, 5, 7, 36]
    got = db.responses(db.trials(scan=SMALL, tier="test"), neurons=make(picked))
    trials = db.trials(scan=SMALL, tier="test")["trial_id"]
    np.testing.assert_array_equal(got, stack(sources[SMALL], "responses", trials)[:, picked])


def test_neuron_range_mask_and_unit_id_series(db, sources):
    rows = [(SMALL, 4), (SMALL, 1)]
    expected = stack(sources[SMALL], "responses", [4, 1])
    np.testing.assert_array_equal(db.responses(rows, neurons=range(3, 9)), expected[:, 3:9])
    area = sources[SMALL]["meta/neurons/area.npy"]
    np.testing.assert_array_equal(db.responses(rows, neurons=area == "V1"), expected[:, area == "V1"])
    np.testing.assert_array_equal(db.responses(rows, neurons=db.neurons(scan=SMALL)["area"] == "V1"),
                                  expected[:, area == "V1"])
    v1 = db.neurons(scan=SMALL, area="V1")
    unit_ids = sources[SMALL]["meta/neurons/unit_ids.npy"]
    np.testing.assert_array_equal(db.responses(rows, neurons=v1["unit_id"]), expected[:, area == "V1"])
    assert v1["unit_id"].tolist() == unit_ids[area == "V1"].tolist()


def test_neuron_positions_across_scans_ask_for_per_scan_neurons(db):
    with pytest.raises(UsageError, match=r"names neurons of one scan, but the selection spans 2 scans .*"
                                         r"pass a DataFrame with scan_key and neuron_idx"):
        db.responses([(COMMON, 0), (FOLDER, 0)], neurons=[0, 1])


def test_bad_neuron_positions_name_the_range(db):
    with pytest.raises(UsageError, match=rf"scan '{SMALL}' has neurons 0\.\.36; neurons= names 37, -1"):
        db.responses([(SMALL, 0)], neurons=[1, 37, -1])
    with pytest.raises(UsageError, match=r"boolean neurons= mask needs one value per neuron .* \(37\); got 3"):
        db.responses([(SMALL, 0)], neurons=[True, False, True])


# -- selections ----------------------------------------------------------------------------

def test_a_relation_and_its_arrow_reader_are_selections_in_their_order(db, sources):
    query = f"SELECT * FROM trials_full WHERE scan_key = '{COMMON}' ORDER BY hash(trial_id)"
    trials = db.sql(query).df()["trial_id"].tolist()
    assert trials != sorted(trials)
    expected = stack(sources[COMMON], "responses", trials)
    np.testing.assert_array_equal(db.responses(db.sql(query)), expected)
    reader = db.sql(query).arrow()
    assert isinstance(reader, pa.RecordBatchReader)
    np.testing.assert_array_equal(db.responses(reader), expected)


def test_select_returns_the_checked_selection_in_its_order(db):
    selected = db.select(pd.DataFrame({"trial_id": [5, 0, 5], "scan_key": [FOLDER, COMMON, FOLDER], "x": 1}))
    assert selected.schema == pa.schema([("scan_key", pa.string()), ("trial_id", pa.int64())])
    assert selected.to_pylist() == [{"scan_key": FOLDER, "trial_id": 5}, {"scan_key": COMMON, "trial_id": 0},
                                    {"scan_key": FOLDER, "trial_id": 5}]
    assert db.select(range(3), scan=SMALL)["scan_key"].to_pylist() == [SMALL] * 3
    with pytest.raises(UsageError, match="no scan 'x-y-z'"):
        db.select([], scan="x-y-z")


def test_any_arrow_stream_is_a_selection(db, sources):
    class ArrowSpeaking:
        """A table of another library (polars, say): only the Arrow stream protocol."""
        def __arrow_c_stream__(self, requested_schema=None):
            return pa.table({"trial_id": [3, 1], "scan_key": [SMALL, SMALL]}).__arrow_c_stream__(requested_schema)

    np.testing.assert_array_equal(db.responses(ArrowSpeaking()), stack(sources[SMALL], "responses", [3, 1]))


def test_trial_ids_from_repeats_with_scan(db, sources):
    image_id, trials = next(iter(db.repeats(COMMON).items()))
    images = db.images(trials, scan=COMMON)
    np.testing.assert_array_equal(images, stack(sources[COMMON], "images", trials))
    np.testing.assert_array_equal(db.responses(trials.tolist(), scan=COMMON),
                                  stack(sources[COMMON], "responses", trials))
    np.testing.assert_array_equal(db.responses(range(2), scan=SMALL), stack(sources[SMALL], "responses", [0, 1]))


def test_trial_ids_without_a_scan_or_with_another_scan_say_what_to_pass(db):
    with pytest.raises(UsageError, match="trial ids alone do not say which scan.*pass scan="):
        db.responses(np.array([0, 1]))
    with pytest.raises(UsageError, match=f"scan='{SMALL}', but the selection names trials of {COMMON}"):
        db.responses([(COMMON, 0)], scan=SMALL)


@pytest.mark.parametrize("empty", [
    "SELECT scan_key, trial_id FROM trials WHERE false",
    pd.DataFrame({"scan_key": pd.Series([], dtype=object), "trial_id": pd.Series([], dtype=int)}),
    [],
], ids=["sql", "dataframe", "list"])
def test_an_empty_selection_gives_zero_rows_of_the_right_shape(db, empty):
    got = db.fetch(empty, scan=SMALL)
    assert got["responses"].shape == (0, N_NEURONS[SMALL]) and got["responses"].dtype == np.float32
    assert got["images"].shape == (0, *IMAGE_SHAPE)
    assert got["behavior"].shape == (0, 3) and got["pupil_center"].shape == (0, 2)
    assert db.fetch(empty, "tier")["tier"].shape == (0,)


def test_an_empty_selection_without_scan_takes_shapes_the_scans_share(db):
    got = db.fetch("SELECT scan_key, trial_id FROM trials WHERE trial_id < 0", normalize=True)
    assert got["images"].shape == (0, *IMAGE_SHAPE) and got["images"].dtype == np.float32
    assert got["behavior"].shape == (0, 3)
    assert db.responses(db.trials(scan=COMMON, where="trial_id < 0"), neurons=[3, 4]).shape == (0, 2)
    assert db.responses([], neurons={SMALL: [1, 2, 3]}).shape == (0, 3)


# -- unknown values ------------------------------------------------------------------------

@pytest.mark.parametrize("call, message", [
    (lambda db: db.trials(tier="testing"), "tier='testing' exists nowhere in the database; known tier values: "
                                           "test, train, validation"),
    (lambda db: db.trials(scan="99999-1-1"), f"scan='99999-1-1' exists nowhere .* {COMMON}, {SMALL}, {FOLDER}"),
    (lambda db: db.neurons(area="V2"), "area='V2' exists nowhere .* AL, LM, RL, V1"),
    (lambda db: db.neurons(scan=COMMON, layer=["L4", "L9"]), r"layer='L9' exists nowhere .* L2/3, L4, L5"),
    (lambda db: db.trials(image_id=-5), r"image_id=-5 exists nowhere .* from 0 to "),
    (lambda db: db.repeats("99999-1-1"), "no scan '99999-1-1' in the database"),
    (lambda db: db.repeats(COMMON, tier="testing"), "tier='testing' exists nowhere"),
    (lambda db: db.responses("SELECT scan_key, trial_id FROM trials WHERE tier = 'x'", scan="9-9-9"),
     "no scan '9-9-9' in the database"),
], ids=["tier", "scan", "area", "layer", "image_id", "repeats-scan", "repeats-tier", "fetch-scan"])
def test_a_value_found_nowhere_names_the_known_values(db, call, message):
    with pytest.raises(UsageError, match=message):
        call(db)


def test_a_combination_of_known_values_that_matches_nothing_is_empty(db, sources):
    small_only = set(sources[SMALL]["meta/trials/frame_image_id.npy"].tolist()) - set(
        sources[COMMON]["meta/trials/frame_image_id.npy"].tolist())
    assert db.trials(scan=COMMON, image_id=min(small_only)).empty
    assert len(db.trials(scan=SMALL, image_id=min(small_only))) > 0


def test_a_typo_in_where_keeps_duckdbs_hint(db):
    with pytest.raises(UsageError, match=r"^trials\(where=...\) failed: Binder Error: .*runing_speed.*"
                                         r"Candidate bindings: .*running_speed") as failure:
        db.trials(where="runing_speed > ?", params=[1])
    assert "\n" not in str(failure.value)


# -- normalize= without statistics ----------------------------------------------------------

@pytest.fixture
def db_without_response_statistics(tmp_path):
    path = tmp_path / "stats.duckdb"
    with Database(path, read_only=False) as database:
        database.ensure_schema()
        ingest(database, make_scan(tmp_path, n_trials=12, n_neurons=6))
        database.conn.execute("DELETE FROM statistics WHERE variable = 'responses'")
    with scandb.connect(path) as opened:
        yield opened, spec_for("common").key


def test_normalize_without_the_needed_statistic_says_what_is_missing(db_without_response_statistics):
    db, scan = db_without_response_statistics
    with pytest.raises(UsageError, match=rf"^scan {scan}: normalize=True needs "
                                         r"meta/statistics/responses/all/std\.npy, which the scan did not ship; "
                                         r"pass normalize=False") as failure:
        db.responses([(scan, 0)], normalize=True)
    assert "\n" not in str(failure.value)
    assert db.images([(scan, 0)], normalize=True).dtype == np.float32, "images keep their statistics"
    assert db.responses([(scan, 0)]).shape == (1, 6)
