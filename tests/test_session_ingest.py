"""Ingesting experanto sessions: the rows, the arrays bit for bit, the guarantees scans have
(one transaction, bad input changes nothing, content identity, --replace, remove, verify,
gc), and db.sample against the written-out reference of experanto's rules."""

from __future__ import annotations

import json
import shutil
import tarfile

import numpy as np
import pytest
import yaml

import scandb
from scandb.errors import BadScanError
from scandb.session import open_session
from scandb.session.sampling import sample
from tests import experanto_reference as reference
from tests.experanto_sessions import generated, make_session, spec_for

from .conftest import digest_database
from .scans import make_scan
from .hostile import run_cli

ARRAY_VARIANTS = ["videos", "data_key", "stimuli_names", "tiers_and_spikes", "float64_responses", "images",
                  "colour", "no_meta_json", "no_optional_modalities"]
"""Every variant of tests/experanto_sessions.py: data.mem and data.npy sequences, the
combined_meta.json cache, stimuli by name, spikes and time intervals, float64 responses
without neuron metadata, images, colour frames, no meta.json (and no phase shifts), and
neither eye tracker nor treadmill."""

ANIMALS = {variant: {"animal_id": 29515 + i, "seed": i} for i, variant in enumerate(ARRAY_VARIANTS)}
"""A key and arrays of its own per variant (the videos variant keeps the defaults, 29515-10-12)."""


def spec_of(variant: str, **changes):
    return spec_for(variant, **{**ANIMALS[variant], **changes})


ROW_TABLES = ["scans", "modalities", "neurons", "trials", "stimulus_trials", "time_intervals", "scan_files",
              "images", "scan_digests"]
SOURCE_COLUMNS = {"source_name", "source_size", "ingested_at"}
"""What may differ between a tar and its folder: the container, not the content."""


@pytest.fixture(scope="module")
def sessions(tmp_path_factory):
    """Each variant as a folder, and the videos variant as a tar too."""
    root = tmp_path_factory.mktemp("sessions")
    found = {}
    for variant in ARRAY_VARIANTS:
        (root / variant).mkdir()
        found[variant] = make_session(root / variant, variant, **ANIMALS[variant])
    found["videos.tar"] = make_session(root, "videos", tar=True, **ANIMALS["videos"])
    return found


@pytest.fixture(scope="module")
def filled(tmp_path_factory, sessions):
    """One database holding a Sensorium static scan and every variant's session."""
    directory = tmp_path_factory.mktemp("filled")
    path = directory / "lab.duckdb"
    static = make_scan(directory, "common", animal_id=23001, seed=5, n_trials=24, n_neurons=8)
    with scandb.connect(path, read_only=False) as db:
        results = db.ingest([static] + [sessions[v] for v in ARRAY_VARIANTS])
    assert [r.status for r in results] == ["ingested"] * (1 + len(ARRAY_VARIANTS))
    return path


def table_rows(db, table: str) -> list[tuple]:
    names = [c for c in db.run(f"SELECT * FROM {table} LIMIT 0")[0] if c not in SOURCE_COLUMNS]
    return db.run(f"SELECT {', '.join(names)} FROM {table} ORDER BY ALL")[1]


def copy_database(path, target_dir):
    shutil.copy(path, target_dir / path.name)
    shutil.copytree(path.with_name(path.stem + ".images"), target_dir / (path.stem + ".images"))
    return target_dir / path.name


# -- rows -------------------------------------------------------------------------------------


def test_a_tar_and_its_folder_give_equal_rows_and_are_the_same_session(sessions, tmp_path):
    rows = {}
    for name in ("videos", "videos.tar"):
        with scandb.connect(tmp_path / f"{name}.duckdb", read_only=False) as db:
            (result,) = db.ingest(sessions[name])
            assert result.status == "ingested", result.summary()
            rows[name] = {table: table_rows(db, table) for table in ROW_TABLES}
            rows[name]["scan_digests"] = [r for r in rows[name]["scan_digests"] if r[1] != "scans"]  # source columns
    assert rows["videos"] == rows["videos.tar"]
    with scandb.connect(tmp_path / "videos.duckdb", read_only=False) as db:
        before = digest_database(tmp_path / "videos.duckdb")
        (again,) = db.ingest(sessions["videos.tar"])
    assert again.status == "unchanged"
    assert digest_database(tmp_path / "videos.duckdb") == before


def test_rows_describe_the_session(filled):
    spec = spec_of("videos")
    session = generated(spec)
    with scandb.connect(filled) as db:
        cols, values = db.run("SELECT * FROM scans WHERE scan_key = ?", [spec.key])
        scan = dict(zip(cols, values[0]))
        assert scan["kind"] == "experanto"
        assert (scan["animal_id"], scan["session"], scan["scan_idx"]) == (spec.animal_id, spec.session, spec.scan_idx)
        assert scan["name"] == spec.folder_name
        assert scan["n_neurons"] == spec.n_neurons
        n_stimuli = spec.n_train + spec.n_validation + spec.n_test_stimuli * spec.n_repeats
        assert scan["n_trials"] == 2 * n_stimuli + 1  # every screen trial, the blanks between stimuli too
        assert scan["image_shape"] == list(spec.frame_shape)
        assert scan["response_dtype"] == "<f4"
        modalities = {r[0]: r[1:] for r in db.run(
            "SELECT name, kind, sampling_rate, start_time, end_time, n_samples, n_signals, dtype, phase_shifts "
            "FROM modalities WHERE scan_key = ?", [spec.key])[1]}
        assert set(modalities) == {"screen", "responses", "eye_tracker", "treadmill"}
        data = session.arrays["responses/data.mem"]
        kind, rate, start, end, n_samples, n_signals, dtype, shifts = modalities["responses"]
        assert (kind, rate, n_samples, n_signals, dtype) == ("sequence", spec.responses_rate, *data.shape, "<f4")
        assert end == pytest.approx(start + (n_samples - 1) / rate)
        np.testing.assert_array_equal(shifts, session.arrays["responses/meta/phase_shifts.npy"])
        assert modalities["screen"][0] == "screen" and modalities["screen"][4] == len(
            session.arrays["screen/timestamps.npy"])
        neurons = db.run("SELECT unit_id, area, layer, x, y, z FROM neurons WHERE scan_key = ? ORDER BY neuron_idx",
                         [spec.key])[1]
        np.testing.assert_array_equal([r[0] for r in neurons], session.arrays["responses/meta/unit_ids.npy"])
        np.testing.assert_array_equal([r[3:] for r in neurons],
                                      session.arrays["responses/meta/cell_motor_coordinates.npy"])
        assert [r[1] for r in neurons] == session.arrays["responses/meta/area.npy"].tolist()
        trials = db.run("""
            SELECT trial_id, tier, n_frames, stimulus_kind, stimulus_type, first_frame, onset_time, end_time,
                   valid_trial, extra, trial_key FROM trials_full WHERE scan_key = ? ORDER BY trial_id""",
                        [spec.key])[1]
        timestamps = session.arrays["screen/timestamps.npy"]
        for i, (trial_id, tier, n_frames, kind, stim_type, first, onset, end, valid, extra, key) in enumerate(trials):
            meta = yaml.safe_load(session.files[f"screen/meta/{i:05d}.yml"])
            assert (trial_id, key, kind, stim_type, first) == (i, f"{i:05d}", meta["modality"], meta["stim_type"],
                                                               meta["first_frame_idx"])
            assert tier == meta.get("tier", "blank")
            assert n_frames == (meta["num_frames"] if kind == "video" else 1)
            assert onset == timestamps[first]
            assert end == (trials[i + 1][6] if i + 1 < len(trials) else timestamps[-1])
            assert valid == meta.get("valid_trial")
            if kind == "video":
                assert json.loads(extra)["image_name"] == meta["image_name"]  # every other yml key


def test_no_meta_or_properties_gives_null_neuron_metadata(filled):
    key = spec_of("float64_responses").key
    with scandb.connect(filled) as db:
        rows = db.run("SELECT neuron_idx, unit_id, area, layer, x FROM neurons WHERE scan_key = ? ORDER BY 1",
                      [key])[1]
        dtype = db.run("SELECT response_dtype FROM scans WHERE scan_key = ?", [key])[1][0][0]
    assert dtype == "<f8"
    assert [r[1] for r in rows] == [r[0] for r in rows]  # no unit ids: the position (said in extra)
    assert {r[2:] for r in rows} == {(None, None, None)}


def test_time_intervals_are_rows(filled):
    spec = spec_of("tiers_and_spikes")
    arrays = generated(spec).arrays
    with scandb.connect(filled) as db:
        rows = db.run("SELECT label, interval_idx, start_time, end_time FROM time_intervals "
                      "WHERE scan_key = ? AND modality = 'tiers' ORDER BY 1, 2", [spec.key])[1]
    for label in ("oracle", "train", "validation"):
        got = np.array([r[2:] for r in rows if r[0] == label])
        np.testing.assert_array_equal(got, arrays[f"tiers/{label}.npy"])


# -- arrays, bit for bit ------------------------------------------------------------------------


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return (a.dtype == b.dtype and a.shape == b.shape
            and np.ascontiguousarray(a).view(np.uint8).tobytes() == np.ascontiguousarray(b).view(np.uint8).tobytes())


@pytest.mark.parametrize("variant", ARRAY_VARIANTS)
def test_arrays_and_files_come_back_bit_for_bit(filled, variant):
    spec = spec_of(variant)
    source = generated(spec)
    with scandb.connect(filled) as db:
        store = db.database.store
        stored = db.run("SELECT name, meta, path FROM modalities WHERE scan_key = ? AND path IS NOT NULL",
                        [spec.key])[1]
        for name, meta, key in stored:
            array = np.load(store.path(key), allow_pickle=False)
            member = [m for m in (f"{name}/data.mem", f"{name}/data.npy", f"{name}/spikes.npy") if m in source.arrays]
            assert len(member) == 1
            assert same_bits(array, source.arrays[member[0]]), name
            if member[0].endswith(".npy"):  # a .npy is kept as its bytes
                assert store.path(key).read_bytes() == source.files[member[0]]
        expected = {m for m in source.files if m.endswith(("data.mem", "data.npy", "spikes.npy"))
                    and not m.startswith("screen/")}
        assert len(stored) == len(expected)
        stimuli = db.run("""
            SELECT st.stimulus_file, i.path FROM stimulus_trials st JOIN trials t USING (scan_key, trial_id)
            JOIN images i USING (image_hash) WHERE st.scan_key = ? AND st.stimulus_file IS NOT NULL""",
                         [spec.key])[1]
        for member, key in stimuli:
            assert same_bits(np.load(store.path(key)), source.arrays[member]), member
        files = dict(db.run("SELECT path, content FROM scan_files WHERE scan_key = ?", [spec.key])[1])
    kept_elsewhere = {m for m, _ in stimuli} | expected
    assert set(files) == set(source.files) - kept_elsewhere
    for member, content in files.items():
        assert content == source.files[member], member


def test_a_repeated_test_stimulus_is_stored_once(filled):
    spec = spec_of("videos")
    with scandb.connect(filled) as db:
        n_trials, n_files = db.run("""
            SELECT count(*), count(DISTINCT t.image_hash) FROM trials t
            WHERE scan_key = ? AND tier = 'oracle'""", [spec.key])[1][0]
    assert (n_trials, n_files) == (spec.n_test_stimuli * spec.n_repeats, spec.n_test_stimuli)


# -- db.sample -------------------------------------------------------------------------------------


def query_times(session, n=120, seed=3):
    starts = [m.start_time for m in session.modalities.values()]
    ends = [m.end_time for m in session.modalities.values()]
    times = np.random.default_rng(seed).uniform(min(starts) - 0.5, max(ends) + 0.5, n)
    return np.unique(np.concatenate([times, starts, ends]))


def assert_same(ours, theirs):
    (values, valid), (ref_values, ref_valid) = ours, theirs
    np.testing.assert_array_equal(valid, ref_valid)
    assert values.dtype == ref_values.dtype and values.shape == ref_values.shape
    np.testing.assert_array_equal(values, ref_values)


@pytest.mark.parametrize("variant", ["videos", "data_key", "tiers_and_spikes"])
def test_sample_equals_sampling_the_source_session(filled, sessions, variant):
    spec = spec_of(variant)
    with open_session(sessions[variant]) as source:
        times = query_times(source)
        names = list(source.modalities)
        config = {"screen": {"interpolation": {"rescale_size": [36, 64]}}}
        expected = sample(source, times, names, config=config, return_valid=True)
    with scandb.connect(filled) as db:
        ours = db.sample(spec.key, times, names, return_valid=True, config=config)
    assert ours.keys() == expected.keys()
    for name in names:
        assert_same(ours[name], expected[name])


@pytest.mark.parametrize("mode", ["nearest_neighbor", "linear"])
def test_sample_equals_the_written_out_reference(filled, sessions, mode):
    root = sessions["videos"]
    spec = spec_of("videos")
    with open_session(root) as source:
        times = query_times(source)
    config = {n: {"interpolation": {"interpolation_mode": mode}} for n in ("responses", "eye_tracker", "treadmill")}
    with scandb.connect(filled) as db:
        ours = db.sample(spec.key, times, ["responses", "eye_tracker", "treadmill"], return_valid=True, config=config)
        screen = db.sample(spec.key, times[::6], ["screen"], return_valid=True)["screen"]
    for name, norm in (("responses", "normalize_variance_only"), ("eye_tracker", "normalize"),
                       ("treadmill", "normalize")):
        raw, valid = reference.interpolate(root, name, times, interpolation_mode=mode)
        assert_same(ours[name], (reference.normalize(root, name, raw, norm), valid))
    raw, valid = reference.interpolate(root, "screen", times[::6], rescale=True, rescale_size=[144, 256])
    assert screen[0].shape[1:] == (144, 256)
    assert_same(screen, (reference.normalize(root, "screen", raw, "normalize"), valid))


@pytest.mark.parametrize("variant", ["colour", "no_meta_json", "no_optional_modalities", "stimuli_names"])
def test_the_stored_session_samples_as_the_reference_reads_its_folder(filled, sessions, variant):
    """Every modality the variant has, as stored, against the reference on the source folder."""
    root, spec = sessions[variant], spec_of(variant)
    with open_session(root) as source:
        times = query_times(source, n=60)
        names = [n for n in source.modalities if n in ("responses", "eye_tracker", "treadmill", "screen")]
    config = {"screen": {"interpolation": {"rescale": False}, "transforms": {"normalization": "screen_default"}}}
    with scandb.connect(filled) as db:
        ours = db.sample(spec.key, times, names, return_valid=True, config=config)
    modes = {"responses": "normalize_variance_only", "eye_tracker": "normalize", "treadmill": "normalize",
             "screen": "screen_default"}
    assert set(ours) == set(names)
    for name in names:
        raw, valid = reference.interpolate(root, name, times, rescale=False)
        assert_same(ours[name], (reference.normalize(root, name, raw, modes[name]), valid))


def test_a_session_replaced_between_two_samples_is_sampled_as_it_is_now(filled, sessions, tmp_path):
    """db.sample keeps the opened session between calls; a replace by another command (here the
    CLI, between two calls of one ScanDB) makes the next call read the new arrays."""
    path = copy_database(filled, tmp_path)
    spec = spec_of("videos")
    (tmp_path / "new").mkdir()
    replacement = make_session(tmp_path / "new", "videos", **{**ANIMALS["videos"], "seed": 77})
    with open_session(sessions["videos"]) as before, open_session(replacement) as after:
        times = query_times(before, n=40)
        expected_before = sample(before, times, ["responses"])["responses"]
        expected_after = sample(after, times, ["responses"])["responses"]
    assert not np.array_equal(expected_before, expected_after, equal_nan=True)
    with scandb.connect(path) as db:
        np.testing.assert_array_equal(db.sample(spec.key, times, ["responses"])["responses"], expected_before)
        np.testing.assert_array_equal(db.sample(spec.key, times, ["responses"])["responses"], expected_before)
        run = run_cli("ingest", str(replacement), "--db", str(path), "--replace")
        assert run.code == 0, run
        np.testing.assert_array_equal(db.sample(spec.key, times, ["responses"])["responses"], expected_after)


def test_sample_refuses_a_scan_and_fetch_refuses_a_session(filled):
    with scandb.connect(filled) as db:
        static = db.run("SELECT scan_key FROM scans WHERE kind = 'static'")[1][0][0]
        with pytest.raises(scandb.errors.UsageError, match="not an experanto session"):
            db.sample(static, [0.0])
        with pytest.raises(scandb.errors.UsageError, match="experanto session.*db.sample"):
            db.fetch(db.select([0, 1], scan=spec_of("videos").key), "responses")


# -- guarantees ------------------------------------------------------------------------------------


def test_verify_finds_nothing_wrong_with_scans_and_sessions_together(filled):
    with scandb.connect(filled) as db:
        report = db.verify()
        kinds = sorted(r[0] for r in db.run("SELECT DISTINCT kind FROM scans")[1])
    assert report.found == [], report.found
    assert kinds == ["experanto", "static"]


@pytest.mark.parametrize("where", ["last value", "header"])
def test_verify_finds_a_changed_session_array(filled, tmp_path, where):
    """A stored data.mem is its bytes behind a .npy header: a change to either is damage."""
    path = copy_database(filled, tmp_path)
    with scandb.connect(path) as db:
        key = db.run("SELECT path FROM modalities WHERE name = 'responses' LIMIT 1")[1][0][0]
        target = db.database.store.path(key)
    data = bytearray(target.read_bytes())
    data[-1 if where == "last value" else 20] ^= 1
    target.write_bytes(bytes(data))
    with scandb.connect(path) as db:
        found = [p.text for p in db.verify().found]
    assert any("session array" in t and "does not match its hash" in t for t in found), found


def corrupted(tmp_path, what: str):
    """A session folder with one thing wrong, and the file the message must name."""
    folder = make_session(tmp_path, "videos")
    if what == "truncated data.mem":
        target = folder / "responses" / "data.mem"
        target.write_bytes(target.read_bytes()[:-8])
        return folder, "responses/data.mem"
    if what == "wrong first_frame_idx":
        target = folder / "screen" / "meta" / "00003.yml"
        target.write_text(target.read_text().replace("first_frame_idx: ", "first_frame_idx: 1"))
        return folder, "screen/meta/00003.yml"
    if what == "stimulus of the wrong shape":
        np.save(folder / "screen" / "data" / "00001.npy", np.zeros((3, 4, 5), np.uint8))
        return folder, "screen/data/00001.npy"
    if what == "compressed tar":
        tar = tmp_path / "session.tar"
        with tarfile.open(tar, "w:gz") as out:
            out.add(folder, arcname=folder.name)
        return tar, "not an uncompressed tar"
    raise AssertionError(what)


@pytest.mark.parametrize("what", ["truncated data.mem", "wrong first_frame_idx", "stimulus of the wrong shape",
                                  "compressed tar"])
def test_bad_input_is_one_line_and_changes_nothing(filled, tmp_path, what):
    path = copy_database(filled, tmp_path)
    before = digest_database(path)
    bad, named = corrupted(tmp_path, what)
    with scandb.connect(path, read_only=False) as db:
        with pytest.raises(BadScanError) as caught:
            db.ingest(bad)
    message = str(caught.value)
    assert "\n" not in message and named in message, message
    assert digest_database(path) == before


def test_a_failure_inside_the_transaction_leaves_no_row_and_no_file(tmp_path, monkeypatch, sessions):
    from scandb.ingest import session as ingest_session

    path = tmp_path / "lab.duckdb"
    with scandb.connect(path, read_only=False) as db:
        db.ingest(make_scan(tmp_path, "common", animal_id=23002, seed=6, n_trials=12, n_neurons=5))
    before = digest_database(path)
    real = ingest_session._SessionWriter._insert

    def failing(self, table, data, select="*"):
        if table == "scans":
            raise OSError(28, "No space left on device")
        return real(self, table, data, select)

    monkeypatch.setattr(ingest_session._SessionWriter, "_insert", failing)
    with scandb.connect(path, read_only=False) as db:
        with pytest.raises(scandb.errors.DatabaseError, match="nothing of this scan was kept"):
            db.ingest(sessions["videos"])
    assert digest_database(path) == before


def test_different_content_needs_replace_and_replace_swaps_it(tmp_path):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    first = make_session(tmp_path / "a", "videos")
    second = make_session(tmp_path / "b", "videos", seed=9)
    path = tmp_path / "lab.duckdb"
    with scandb.connect(path, read_only=False) as db:
        db.ingest(first)
    before = digest_database(path)
    with scandb.connect(path, read_only=False) as db:
        with pytest.raises(BadScanError, match="already in the database with different content.*--replace"):
            db.ingest(second)
    assert digest_database(path) == before
    with scandb.connect(path, read_only=False) as db:
        (result,) = db.ingest(second, replace=True)
        assert result.status == "replaced"
        released = db.run("SELECT store, count(*) FROM released_files GROUP BY 1 ORDER BY 1")[1]
        assert db.verify().found == []
        with open_session(second) as source:
            times = query_times(source, n=30)
            expected = sample(source, times, ["responses"])["responses"]
        np.testing.assert_array_equal(db.sample(spec_of("videos").key, times, ["responses"])["responses"], expected)
    assert ("sessions", 3) in released  # the replaced session's three sequence arrays, kept until gc


def test_remove_and_gc_free_a_session_and_keep_the_scan(filled, tmp_path):
    path = copy_database(filled, tmp_path)
    key = spec_of("videos").key
    with scandb.connect(path) as db:
        arrays = [db.database.store.path(r[0]) for r in db.run(
            "SELECT path FROM modalities WHERE scan_key = ? AND path IS NOT NULL", [key])[1]]
    run = run_cli("remove", key, "--db", str(path))
    assert run.returncode == 0, run.stderr
    with scandb.connect(path, read_only=False) as db:
        from scandb.catalog import registry
        for table in registry.owned():
            assert db.run(f"SELECT count(*) FROM {table} WHERE scan_key = ?", [key])[1][0][0] == 0, table
        assert db.verify().found == []
        assert all(a.exists() for a in arrays)  # kept for readers that started before
        db.ingest(make_scan(tmp_path, "common", animal_id=23003, seed=7, n_trials=12, n_neurons=5))
        assert all(a.exists() for a in arrays)  # orphan collection knows the released session arrays
        db.gc(older_than=0)
        assert not any(a.exists() for a in arrays)
        assert db.verify().found == []
        others = db.run("SELECT count(*) FROM modalities")[1][0][0]
    assert others > 0
    with scandb.connect(path) as db:
        assert db.run("SELECT count(*) FROM scans WHERE kind = 'static'")[1][0][0] == 2


def test_the_command_line_ingests_a_session_tar(sessions, tmp_path):
    db_path = tmp_path / "cli.duckdb"
    run = run_cli("ingest", str(sessions["videos.tar"]), "--db", str(db_path))
    assert run.returncode == 0, run.stderr
    assert "29515-10-12: ingested 27 trials, 12 neurons" in run.stdout
    again = run_cli("ingest", str(sessions["videos"]), "--db", str(db_path))
    assert again.returncode == 0 and "already ingested with the same content" in again.stdout


def test_a_lake_holds_a_session_as_a_file_does(sessions, lake, filled):
    key = spec_of("videos").key
    with open_session(sessions["videos"]) as source:
        times = query_times(source, n=40)
        expected = sample(source, times, return_valid=True)
    with scandb.connect(lake.url, read_only=False, data_path=lake.data) as db:
        assert db.ingest(sessions["videos.tar"])[0].status == "ingested"
        assert db.ingest(sessions["videos"])[0].status == "unchanged"
        assert db.verify().found == []
        ours = db.sample(key, times, return_valid=True)
        for name in expected:
            assert_same(ours[name], expected[name])
        trained_at = db.snapshot
    from scandb.torchdata import SessionDataset

    small = {"screen": {"interpolation": {"rescale_size": [18, 32]}}}
    training = SessionDataset(lake.url, key, "oracle", config=small)  # a lake's session trains as a file's does
    assert training.snapshot == trained_at
    from_folder = SessionDataset(filled, key, "oracle", config=small)
    np.testing.assert_array_equal(training.starts, from_folder.starts)
    for name, values in from_folder[2].items():
        if name != "timestamps":
            assert np.array_equal(training[2][name].numpy(), values.numpy()), name
    with scandb.connect(lake.url, read_only=False, data_path=lake.data) as db:
        db.remove(key)
        assert db.verify().found == []
        assert db.run("SELECT count(*) FROM modalities")[1][0][0] == 0


# -- SQL over time ----------------------------------------------------------------------------------


def source_trial_windows(root) -> list[tuple[float, float]]:
    """Each screen trial's [onset, next onset) from the source files (the last ends at the last frame)."""
    timestamps = np.load(root / "screen" / "timestamps.npy")
    names = sorted(p for p in (root / "screen" / "meta").glob("*.yml") if p.stem.isdigit())
    firsts = [yaml.safe_load(p.read_text())["first_frame_idx"] for p in names]
    onsets = [float(timestamps[f]) for f in firsts]
    return list(zip(onsets, onsets[1:] + [float(timestamps[-1])]))


@pytest.mark.parametrize("variant", ["videos", "images"])
def test_trial_means_are_each_signals_mean_over_the_trials_window(filled, sessions, variant):
    """Sample i of signal j is at start + i / rate + phase_shift[j]; the window is [onset, end);
    NaN samples are left out; computed here one sample at a time from the source files."""
    spec, root = spec_of(variant), sessions[variant]
    windows = source_trial_windows(root)
    with scandb.connect(filled) as db:
        rows = db.run("SELECT modality, trial_id, n_samples, mean FROM trial_means WHERE scan_key = ? "
                      "ORDER BY modality, trial_id", [spec.key])[1]
    by_modality = {}
    for modality, trial, n_samples, mean in rows:
        by_modality.setdefault(modality, []).append((trial, n_samples, mean))
    assert set(by_modality) >= {"responses", "eye_tracker", "treadmill"}
    for modality, got in by_modality.items():
        seq = reference.Sequence(root / modality)
        n_rows, n_signals = seq.data.shape
        shifts = np.zeros(n_signals) if seq.shifts is None else seq.shifts
        assert [g[0] for g in got] == list(range(len(windows)))
        for (trial, n_samples, mean), (onset, end) in zip(got, windows):
            want = []
            for j in range(n_signals):
                values = [float(seq.data[i, j]) for i in range(n_rows)
                          if onset <= seq.start + i * seq.time_delta + shifts[j] < end and np.isfinite(seq.data[i, j])]
                want.append(sum(values) / len(values) if values else None)
            grid = sum(onset <= seq.start + i * seq.time_delta < end for i in range(n_rows))
            assert n_samples == grid, (modality, trial)
            np.testing.assert_allclose(np.array(mean, dtype=float), np.array(want, dtype=float), rtol=1e-12,
                                       err_msg=f"{modality} trial {trial}")


def expected_area_sums(root) -> dict[tuple, tuple[list[int], dict[int, list[float]]]]:
    """(area, layer) -> (its neurons, per trial the sums): element k of a trial's sum is, over
    the group's neurons, each one's k-th sample at or after the onset (at its phase shift),
    for the grid's samples in [onset, end), NaN past the data; one sample at a time from
    the source files. Without area files one group of every neuron, area and layer None."""
    windows = source_trial_windows(root)
    seq = reference.Sequence(root / "responses")
    n_rows, n_signals = seq.data.shape
    shifts = np.zeros(n_signals) if seq.shifts is None else seq.shifts
    meta = root / "responses" / "meta"
    areas = np.load(meta / "area.npy") if (meta / "area.npy").exists() else [None] * n_signals
    layers = np.load(meta / "layer.npy") if (meta / "layer.npy").exists() else [None] * n_signals
    groups: dict[tuple, list[int]] = {}
    for j in range(n_signals):
        groups.setdefault((None if areas[j] is None else str(areas[j]),
                           None if layers[j] is None else str(layers[j])), []).append(j)
    out = {}
    for key, members in groups.items():
        per_trial = {}
        for trial, (onset, end) in enumerate(windows):
            n_samples = sum(onset <= seq.start + i * seq.time_delta < end for i in range(n_rows))
            samples = {j: [i for i in range(n_rows) if seq.start + i * seq.time_delta + shifts[j] >= onset]
                       for j in members}
            per_trial[trial] = [sum(float(seq.data[samples[j][k], j]) if k < len(samples[j]) else float("nan")
                                    for j in members) for k in range(n_samples)]
        out[key] = (members, per_trial)
    return out


@pytest.mark.parametrize("variant", ["videos", "float64_responses"])
def test_area_frame_responses_sum_each_areas_samples_over_the_trials_window(filled, sessions, variant):
    """The stored sums are ``expected_area_sums`` of the source files."""
    spec, root = spec_of(variant), sessions[variant]
    expected = expected_area_sums(root)
    with scandb.connect(filled) as db:
        rows = db.run("SELECT trial_id, area, layer, n_neurons, response_sum FROM area_frame_responses "
                      "WHERE scan_key = ? ORDER BY trial_id", [spec.key])[1]
    assert len(rows) == len(source_trial_windows(root)) * len(expected)
    for trial, area, layer, n_neurons, sums in rows:
        members, per_trial = expected[(area, layer)]
        assert n_neurons == len(members)
        np.testing.assert_allclose(np.array(sums, dtype=float), np.array(per_trial[trial]), rtol=1e-12,
                                   err_msg=f"trial {trial} {area} {layer}")


@pytest.mark.parametrize("rows", [1, 7, 64])
def test_area_sums_fed_in_small_blocks_are_the_sources_sums(sessions, rows):
    """A session's rows come to the area sums a block at a time; blocks of any size (a trial's
    window, a neuron's shifted samples split between them) give the sums of the source files."""
    from scandb.ingest.session import area_groups
    from scandb.session.windows import AreaSums

    root = sessions["videos"]
    expected = expected_area_sums(root)
    with open_session(root) as session:
        responses = session.modalities["responses"]
        keys, columns = area_groups(session)
        sums = AreaSums(responses, session.trials, columns)
        data = np.asarray(responses.data)
        for first in range(0, len(data), rows):
            sums.add(first, data[first:first + rows])
        got = sums.result()
    for g, key in enumerate(keys):
        members, per_trial = expected[key]
        assert sorted(columns[g].tolist()) == members
        for trial, want in per_trial.items():
            np.testing.assert_allclose(got[trial][g], np.array(want), rtol=1e-12, err_msg=f"trial {trial} {key}")


@pytest.mark.parametrize("variant", ["videos", "float64_responses", "data_key"])
def test_nan_rows_are_the_rows_of_each_sequence_holding_a_nan(filled, variant):
    spec = spec_of(variant)
    source = generated(spec)
    with scandb.connect(filled) as db:
        stored = dict(db.run("SELECT modality, rows FROM nan_rows WHERE scan_key = ?", [spec.key])[1])
        sequences = {r[0] for r in db.run("SELECT name FROM modalities WHERE scan_key = ? AND kind = 'sequence'",
                                          [spec.key])[1]}
    assert set(stored) == sequences
    for name, rows in stored.items():
        member = next(m for m in (f"{name}/data.mem", f"{name}/data.npy") if m in source.arrays)
        data = source.arrays[member]
        want = [i for i in range(data.shape[0]) if any(np.isnan(float(v)) for v in data[i])]
        assert rows == want, name
    assert any(stored.values())  # the blinks are there


def test_revision_0015_fills_the_gaps_and_area_sums_of_sessions_ingested_before_it(filled, tmp_path):
    from scandb.catalog.database import Database

    from .test_migrations import downgrade

    copy = copy_database(filled, tmp_path)
    queries = ["SELECT * FROM nan_rows ORDER BY ALL",
               "SELECT * FROM area_frame_responses ORDER BY ALL",
               "SELECT * FROM scan_digests WHERE part IN ('nan_rows', 'area_frame_responses') ORDER BY ALL"]
    with Database(copy) as db:
        at_ingest = [db.conn.execute(q).fetchall() for q in queries]
    assert all(at_ingest)
    downgrade(copy, "0014")
    with Database(copy) as db:
        assert db.revision() == "0014" and "nan_rows" not in db.tables()
        assert db.conn.execute("SELECT count(*) FROM area_frame_responses").fetchone()[0] == 0
    with Database(copy, read_only=False) as db:
        db.upgrade()
        assert [db.conn.execute(q).fetchall() for q in queries] == at_ingest
    with scandb.connect(copy) as db:
        assert db.verify().found == []


def test_the_readme_session_queries_answer_what_they_say(filled, sessions):
    from pathlib import Path
    import re

    section = (Path(__file__).resolve().parents[1] / "README.md").read_text().split("## experanto sessions", 1)[1]
    blocks = re.findall(r"```sql\n(.*?)```", section.split("\n## ", 1)[0], flags=re.S)
    per_video, running = [b for b in blocks if "trial_means" in b]
    spec = spec_of("videos")
    with scandb.connect(filled) as db:
        shown = db.sql(per_video).fetchall()
        ours = [r for r in shown if r[0] == spec.key]
        assert len(ours) == spec.n_test_stimuli and {r[2] for r in ours} == {spec.n_repeats}
        split = db.sql(running).fetchall()
        with_treadmill = db.sql("SELECT count(*) FROM trial_means WHERE modality = 'treadmill' "
                                "AND mean[1] IS NOT NULL").fetchone()[0]
        assert sum(r[2] for r in split) == with_treadmill > 0
        over_time = db.sql(next(b for b in blocks if "area_frame_responses" in b)).fetchall()
        shown_to_v1 = {r[0] for r in db.sql(
            "SELECT image_hash FROM trials JOIN scans USING (scan_key) WHERE kind = 'experanto' AND tier = 'oracle' "
            "AND scan_key IN (SELECT scan_key FROM neurons WHERE area = 'V1')").fetchall()}
        assert {r[0] for r in over_time} == shown_to_v1 and len(shown_to_v1) > spec.n_test_stimuli
        assert {r[2] for r in over_time if r[1] == 1} == {spec.n_repeats}
