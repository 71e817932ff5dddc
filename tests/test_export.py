"""scandb export: a selection comes out as scan folders the real neuralpredictors loader reads
unchanged (exactly the source arrays of the selected trials and neurons), as Parquet
tables and as one npz; bad requests are one line and leave no output behind."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from scandb.api import connect
from scandb.catalog.database import Database
from scandb.errors import UsageError
from scandb.ingest import ingest
from scandb.synthetic import generate

from .reference_loaders import neuralpredictors  # noqa: F401 (a fixture)
from .scans import spec_for, write
from .hostile import run_cli

KEYS = ("images", "responses", "behavior", "pupil_center")
FIRST = spec_for("common", animal_id=41001, n_trials=40, n_neurons=20, seed=11)
SECOND = spec_for("float64_data", animal_id=41002, n_trials=30, n_neurons=12, seed=12,
                  extra_neuron_meta=("snr",))
TRIALS = {FIRST.key: [33, 2, 17, 5, 0, 39], SECOND.key: [29, 1, 14]}
NEURONS = {FIRST.key: [19, 0, 7, 3], SECOND.key: [11, 4, 6]}
SELECTION = [(scan, t) for scan, ids in TRIALS.items() for t in ids]


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("export")
    path = directory / "lab.duckdb"
    with Database(path, read_only=False) as db:
        db.ensure_schema()
        for spec in (FIRST, SECOND):
            ingest(db, write(spec, directory))
    return path


@pytest.fixture(scope="module")
def source() -> dict[str, dict]:
    """The scans' files as generated, by scan key then relative path."""
    return {spec.key: generate(spec).files() for spec in (FIRST, SECOND)}


@pytest.fixture(scope="module")
def exported(lab, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("out")
    with connect(lab) as db:
        db.export(SELECTION, out, neurons=NEURONS)
    return out


def _array(files: dict, path: str) -> np.ndarray:
    return np.load(io.BytesIO(files[path]), allow_pickle=False)


def _folder(out: Path, spec) -> Path:
    return out / spec.name


def test_one_folder_per_scan_named_like_the_source(exported):
    assert sorted(p.name for p in exported.iterdir()) == sorted([FIRST.name, SECOND.name])


@pytest.mark.parametrize("spec", [FIRST, SECOND], ids=["float32", "float64"])
def test_filetreedataset_reads_exactly_the_source_arrays(exported, source, neuralpredictors, spec):
    _, FileTreeDataset = neuralpredictors
    dataset = FileTreeDataset(str(_folder(exported, spec)), *KEYS)
    files = source[spec.key]
    assert len(dataset) == len(TRIALS[spec.key])
    for i, trial in enumerate(TRIALS[spec.key]):
        item = dataset[i]
        for key in KEYS:
            expected = _array(files, f"data/{key}/{trial}.npy")
            if key == "responses":  # stored as float32 (the guarantee), written back in the source dtype
                expected = expected[NEURONS[spec.key]].astype(np.float32).astype(expected.dtype)
            got = np.asarray(getattr(item, key))
            assert got.dtype == expected.dtype, key
            assert got.shape == expected.shape, key
            assert got.tobytes() == expected.tobytes(), (key, trial)


def test_meta_arrays_are_taken_for_the_selected_trials_and_neurons(exported, source, neuralpredictors):
    _, FileTreeDataset = neuralpredictors
    files, trials, neurons = source[FIRST.key], TRIALS[FIRST.key], NEURONS[FIRST.key]
    dataset = FileTreeDataset(str(_folder(exported, FIRST)), *KEYS)
    np.testing.assert_array_equal(dataset.trial_info.source_trial_id, trials)
    for name in ("tiers", "frame_image_id", "trial_idx", "frame_trial_ts", "condition_hash"):
        expected = _array(files, f"meta/trials/{name}.npy")[trials]
        got = getattr(dataset.trial_info, name)
        assert got.dtype == expected.dtype and np.array_equal(got, expected), name
    np.testing.assert_array_equal(dataset.neurons.unit_ids, _array(files, "meta/neurons/unit_ids.npy")[neurons])
    np.testing.assert_array_equal(dataset.neurons.area, _array(files, "meta/neurons/area.npy")[neurons])
    np.testing.assert_array_equal(dataset.neurons.cell_motor_coordinates,
                                  _array(files, "meta/neurons/cell_motor_coordinates.npy")[neurons])
    snr = np.load(_folder(exported, SECOND) / "meta/neurons/snr.npy")
    assert snr.tobytes() == _array(source[SECOND.key], "meta/neurons/snr.npy")[NEURONS[SECOND.key]].tobytes()


def test_statistics_per_neuron_are_taken_and_the_rest_copied_byte_for_byte(exported, source):
    folder, files = _folder(exported, FIRST), source[FIRST.key]
    for source_folder in ("all", FIRST.statistics_folder):
        for stat in ("mean", "std", "min", "max", "median"):
            path = f"meta/statistics/responses/{source_folder}/{stat}.npy"
            assert np.load(folder / path).tobytes() == _array(files, path)[NEURONS[FIRST.key]].tobytes()
            for variable in ("images", "behavior", "pupil_center"):
                path = f"meta/statistics/{variable}/{source_folder}/{stat}.npy"
                assert (folder / path).read_bytes() == files[path]
    assert (folder / "config.json").read_bytes() == files["config.json"]


def test_neuronormalizer_runs_on_the_exported_statistics(exported, source, neuralpredictors):
    NeuroNormalizer, FileTreeDataset = neuralpredictors
    dataset = FileTreeDataset(str(_folder(exported, FIRST)), *KEYS)
    normalizer = NeuroNormalizer(dataset)
    files, neurons = source[FIRST.key], NEURONS[FIRST.key]
    std = _array(files, "meta/statistics/responses/all/std.npy")[neurons].astype(np.float64)
    threshold = 0.01 * std.mean()
    precision = np.where(std > threshold, 1 / std, 1 / threshold)
    for i, trial in enumerate(TRIALS[FIRST.key][:3]):
        got = normalizer(dataset[i]).responses
        expected = _array(files, f"data/responses/{trial}.npy")[neurons] * precision
        np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_all_trials_in_source_order_give_the_source_meta_files_byte_for_byte(lab, source, tmp_path):
    with connect(lab) as db:
        db.export(f"SELECT scan_key, trial_id FROM trials WHERE scan_key = '{FIRST.key}' ORDER BY trial_id",
                  tmp_path)
    folder, files = _folder(tmp_path, FIRST), source[FIRST.key]
    for path, content in files.items():
        if path.startswith("meta/") or path == "config.json":
            assert (folder / path).read_bytes() == content, path
        elif path.startswith("data/"):
            assert np.load(folder / path).tobytes() == _array(files, path).tobytes(), path


def test_zip_holds_one_top_folder_named_like_the_scan_and_ingests_back(lab, source, tmp_path):
    with connect(lab) as db:
        result = db.export("SELECT scan_key, trial_id FROM trials WHERE tier = 'test' ORDER BY ALL", tmp_path,
                           zip=True)
    assert sorted(p.name for p in result.paths) == sorted([f"{FIRST.name}.zip", f"{SECOND.name}.zip"])
    with zipfile.ZipFile(tmp_path / f"{FIRST.name}.zip") as zf:
        assert {n.split("/")[0] for n in zf.namelist()} == {FIRST.name}
    again = tmp_path / "again.duckdb"
    with connect(again, read_only=False) as db:
        db.ingest(tmp_path / f"{FIRST.name}.zip")
        n_test = int((_array(source[FIRST.key], "meta/trials/tiers.npy") == "test").sum())
        assert db.run("SELECT count(*) FROM trials WHERE tier = 'test'")[1] == [(n_test,)]


def test_parquet_holds_the_selected_rows_partitioned_by_scan(lab, source, tmp_path):
    import pyarrow.dataset as ds

    with connect(lab) as db:
        db.export(SELECTION, tmp_path, neurons=NEURONS, format="parquet")
    folder = tmp_path / "parquet"
    assert sorted(p.name for p in (folder / "trials").iterdir()) == sorted(
        [f"scan_key={FIRST.key}", f"scan_key={SECOND.key}"])
    trials = ds.dataset(folder / "trials", partitioning="hive").to_table().to_pandas()
    assert sorted(trials["export_position"]) == list(range(len(SELECTION)))
    ordered = trials.sort_values("export_position")
    assert list(zip(ordered["scan_key"], ordered["trial_id"])) == SELECTION
    responses = ds.dataset(folder / "responses", partitioning="hive").to_table().to_pandas()
    for _, row in responses.iterrows():
        expected = _array(source[row["scan_key"]], f"data/responses/{row['trial_id']}.npy")
        expected = expected[NEURONS[row["scan_key"]]].astype(np.float32)
        np.testing.assert_array_equal(np.asarray(row["response"], np.float32), expected)
    neurons = ds.dataset(folder / "neurons", partitioning="hive").to_table().to_pandas()
    first = neurons[neurons["scan_key"] == FIRST.key].sort_values("export_position")
    assert list(first["neuron_idx"]) == NEURONS[FIRST.key]


def test_parquet_images_hold_each_shown_images_file_byte_for_byte(lab, source, tmp_path):
    import pyarrow.parquet as pq

    with connect(lab) as db:
        db.export(SELECTION, tmp_path, neurons=NEURONS, format="parquet")
        shown = db.run("SELECT scan_key, trial_id, image_hash FROM trials")[1]
    images = pq.read_table(tmp_path / "parquet" / "images.parquet").to_pylist()
    files = {row["image_hash"]: row["npy"] for row in images}
    selected = {(scan, trial): digest for scan, trial, digest in shown if (scan, trial) in set(SELECTION)}
    assert set(files) == set(selected.values())
    for (scan, trial), digest in selected.items():
        assert files[digest] == source[scan][f"data/images/{trial}.npy"]
    assert all(np.load(io.BytesIO(row["npy"])).shape == tuple(row["shape"]) for row in images)


def test_npz_holds_the_aligned_arrays(lab, source, tmp_path):
    with connect(lab) as db:
        db.export([(FIRST.key, t) for t in TRIALS[FIRST.key]], tmp_path, neurons=NEURONS[FIRST.key],
                  format="npz")
    with np.load(tmp_path / "selection.npz", allow_pickle=False) as npz:
        assert list(npz["trial_id"]) == TRIALS[FIRST.key]
        for i, trial in enumerate(TRIALS[FIRST.key]):
            assert npz["images"][i].tobytes() == _array(source[FIRST.key], f"data/images/{trial}.npy").tobytes()
            np.testing.assert_array_equal(
                npz["responses"][i], _array(source[FIRST.key], f"data/responses/{trial}.npy")[NEURONS[FIRST.key]])


@pytest.mark.parametrize("selection, neurons, message", [
    ("SELECT scan_key, trial_id FROM trials WHERE false", None, "names no trials"),
    ([("nope", 1)], None, "no scan 'nope'"),
    ([(FIRST.key, 40)], None, "0..39"),
    ([(FIRST.key, 1)], "SELECT scan_key FROM neurons", "neuron_idx"),
    ([(FIRST.key, 1)], "SELECT scan_key, neuron_idx FROM neuronz", "neuronz"),
    ([(FIRST.key, 1)], {FIRST.key: [20]}, "0..19"),
])
def test_bad_requests_are_one_line_and_write_nothing(lab, tmp_path, selection, neurons, message):
    with connect(lab) as db, pytest.raises(UsageError, match=message) as caught:
        db.export(selection, tmp_path / "out", neurons=neurons)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_an_existing_scan_folder_is_refused_and_left_alone(lab, tmp_path):
    (tmp_path / FIRST.name).mkdir()
    (tmp_path / FIRST.name / "mine.txt").write_text("keep")
    with connect(lab) as db, pytest.raises(UsageError, match="already exists"):
        db.export([(FIRST.key, 1)], tmp_path)
    assert [p.name for p in (tmp_path / FIRST.name).iterdir()] == ["mine.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [FIRST.name]


def test_a_second_scan_folder_existing_stops_the_export_before_anything_is_written(lab, tmp_path):
    (tmp_path / SECOND.name).mkdir()
    with connect(lab) as db, pytest.raises(UsageError, match=SECOND.name):
        db.export(SELECTION, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [SECOND.name]


def test_cli_export_writes_folders_and_says_what_it_wrote(lab, tmp_path):
    result = run_cli("export", f"SELECT scan_key, trial_id FROM trials WHERE scan_key = '{SECOND.key}' "
                     "AND trial_id < 5 ORDER BY trial_id DESC", str(tmp_path / "out"),
                     "--neurons", f"SELECT scan_key, neuron_idx FROM neurons WHERE scan_key = '{SECOND.key}' "
                     "AND neuron_idx < 3", "--db", str(lab))
    assert result.returncode == 0, result.stderr
    assert "exported 5 trials of 1 scan(s) as scan" in result.stdout
    folder = tmp_path / "out" / SECOND.name
    assert list(np.load(folder / "meta/trials/source_trial_id.npy")) == [4, 3, 2, 1, 0]
    assert np.load(folder / "data/responses/0.npy").shape == (3,)


def test_cli_export_error_is_one_line_with_usage_exit(lab, tmp_path):
    result = run_cli("export", "SELECT scan_key, trial_id FROM trialz", str(tmp_path / "out"), "--db", str(lab))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "trialz" in result.stderr
    assert not (tmp_path / "out").exists()
