"""Opening experanto sessions (folders and tars): what is read, and bad input refused in one line."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pytest

from scandb.errors import BadScanError
from scandb.session import open_session
from tests.experanto_sessions import generated, make_session, spec_for


def test_session_key_as_experanto_derives_it(tmp_path):
    spec = spec_for("videos")
    assert open_session(make_session(tmp_path / "a", "videos")).key == "29515-10-12"
    assert open_session(make_session(tmp_path / "b", "data_key")).key == "session-29515-10-12"
    no_meta = make_session(tmp_path / "c", "no_meta_json")
    assert open_session(no_meta).key == no_meta.name == spec.folder_name
    (no_meta / "meta.json").write_text(json.dumps({"notes": "no key"}))
    assert open_session(no_meta).key == "29515-10-12"  # the dynamic…-Video part of the folder name


@pytest.mark.parametrize("tar", [False, True])
def test_modalities_hold_the_written_arrays_bit_for_bit(tmp_path, tar):
    spec = spec_for("videos")
    arrays = generated(spec).arrays
    with open_session(make_session(tmp_path, "videos", tar=tar)) as session:
        responses = session.modalities["responses"]
        assert (responses.kind, responses.sampling_rate, responses.n_signals) == ("sequence", 10.0, spec.n_neurons)
        assert responses.dtype == np.float32
        assert isinstance(responses.data, np.memmap)
        np.testing.assert_array_equal(responses.data, arrays["responses/data.mem"])
        np.testing.assert_array_equal(responses.phase_shifts, arrays["responses/meta/phase_shifts.npy"])
        np.testing.assert_array_equal(session.modalities["treadmill"].data, arrays["treadmill/data.npy"])
        eye = session.modalities["eye_tracker"]
        assert eye.sampling_rate == 20.0 and eye.n_signals == 4 and np.isnan(eye.data).any()  # blinks
        assert eye.start_time < responses.start_time < session.screen.start_time
        np.testing.assert_array_equal(session.screen.timestamps, arrays["screen/timestamps.npy"])
        if tar:
            assert str(responses.data.filename).endswith(".tar")  # mapped inside the tar, nothing extracted


def test_neurons_metadata_one_row_per_column(tmp_path):
    arrays = generated(spec_for("videos")).arrays
    with open_session(make_session(tmp_path / "a", "videos")) as session:
        neurons = session.neurons()
        np.testing.assert_array_equal(neurons["unit_ids"], arrays["responses/meta/unit_ids.npy"])
        assert neurons["coordinates"].shape == (12, 3)
        assert list(neurons["area"][:2]) == ["V1", "LM"] and neurons["layer"][1] == "L4"
        assert neurons["cell_ids"] is None
    with open_session(make_session(tmp_path / "b", "float64_responses")) as session:
        assert all(v is None for v in session.neurons().values())


def test_stimulus_trials(tmp_path):
    spec = spec_for("stimuli_names")
    with open_session(make_session(tmp_path, "stimuli_names")) as session:
        trials = session.trials
        timestamps = session.screen.timestamps
    n_stimuli = spec.n_train + spec.n_validation + spec.n_test_stimuli * spec.n_repeats
    assert len(trials) == 2 * n_stimuli + 1
    assert [t.modality for t in trials[:3]] == ["blank", "video", "blank"]
    assert trials[0].tier == "blank"  # no tier key: ChunkDataset's "blank"
    assert sorted({t.tier for t in trials}) == ["blank", "oracle", "train", "validation"]
    oracle = [t for t in trials if t.tier == "oracle"]
    assert len(oracle) == spec.n_test_stimuli * spec.n_repeats
    assert len({t.stimulus_name for t in oracle}) == spec.n_test_stimuli
    assert len({t.data_file for t in oracle}) == spec.n_test_stimuli  # repeats share one file
    video = trials[1]
    assert (video.first_frame, video.n_frames, video.stimulus_type) == (1, 24, "stimulus.Clip")
    assert video.onset == timestamps[1] and video.end == timestamps[25]
    assert trials[3].valid is False and trials[1].valid is True and trials[0].valid is None
    assert video.extra["image_name"] == video.stimulus_name and "trial_idx" in video.extra


def test_a_stale_combined_meta_cache_wins_over_the_yml_files(tmp_path):
    root = make_session(tmp_path, "data_key")  # written with combined_meta.json
    cache = json.loads((root / "screen/combined_meta.json").read_text())
    cache["00001"]["tier"] = "stale"
    (root / "screen/combined_meta.json").write_text(json.dumps(cache))
    with open_session(root) as session:
        assert session.trials[1].tier == "stale"


def test_time_intervals_and_spikes(tmp_path):
    arrays = generated(spec_for("tiers_and_spikes")).arrays
    with open_session(make_session(tmp_path, "tiers_and_spikes")) as session:
        tiers = session.time_intervals["tiers"]
        spikes = session.modalities["spikes"]
    assert list(tiers) == ["oracle", "train", "validation"]
    np.testing.assert_array_equal(tiers["train"], arrays["tiers/train.npy"])
    assert spikes.n_signals == 12 and len(spikes.spikes) == len(arrays["spikes/spikes.npy"])


def test_missing_optional_modalities(tmp_path):
    with open_session(make_session(tmp_path, "no_optional_modalities")) as session:
        assert set(session.modalities) == {"screen", "responses"}


# -- bad input: one line, naming the file and the problem ---------------------------------


def refused(path, *fragments):
    with pytest.raises(BadScanError) as info:
        open_session(path).close()
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_missing_and_wrong_sized_files(tmp_path):
    root = make_session(tmp_path, "videos")
    (root / "screen/data/00003.npy").unlink()
    refused(root, "screen/data/00003.npy", "missing")
    root = make_session(tmp_path / "b", "videos")
    with open(root / "responses/data.mem", "ab") as f:
        f.write(b"\0" * 4)
    refused(root, "responses/data.mem", "meta.yml's shape")
    root = make_session(tmp_path / "c", "videos")
    (root / "responses/meta.yml").unlink()
    refused(root, "responses/meta.yml", "missing")


def test_wrong_shapes(tmp_path):
    root = make_session(tmp_path, "videos")
    np.save(root / "screen/data/00001.npy", np.zeros((23, 18, 32), np.uint8))
    refused(root, "screen/data/00001.npy", "shape (23, 18, 32)")
    root = make_session(tmp_path / "b", "videos")
    np.save(root / "responses/meta/phase_shifts.npy", np.zeros(5))
    refused(root, "responses/meta/phase_shifts.npy", "shape (12,)")
    root = make_session(tmp_path / "c", "videos")
    np.save(root / "eye_tracker/meta/means.npy", np.zeros(3))
    refused(root, "eye_tracker/meta/means.npy", "3 values for 4 signals")


def test_frames_that_do_not_add_up(tmp_path):
    root = make_session(tmp_path, "videos")
    timestamps = np.load(root / "screen/timestamps.npy")
    np.save(root / "screen/timestamps.npy", timestamps[:-1])
    refused(root, "screen/timestamps.npy", "frames add up to")


def test_end_time_past_the_data(tmp_path):
    root = make_session(tmp_path, "videos")
    meta = (root / "treadmill/meta.yml").read_text()
    end = next(line for line in meta.splitlines() if line.startswith("end_time"))
    (root / "treadmill/meta.yml").write_text(meta.replace(end, f"end_time: {float(end.split()[1]) + 1.0}"))
    refused(root, "treadmill/meta.yml", "past the data")


def test_non_monotonic_timestamps(tmp_path):
    root = make_session(tmp_path, "videos")
    timestamps = np.load(root / "screen/timestamps.npy")
    timestamps[10], timestamps[11] = timestamps[11], timestamps[10]
    np.save(root / "screen/timestamps.npy", timestamps)
    refused(root, "screen/timestamps.npy", "not strictly increasing (at frame 11)")


def test_pickled_npy_is_refused_without_unpickling(tmp_path):
    root = make_session(tmp_path, "videos")
    np.save(root / "responses/meta/phase_shifts.npy", np.array([object()] * 12, dtype=object), allow_pickle=True)
    refused(root, "responses/meta/phase_shifts.npy", "pickle")


def test_unknown_modality_and_bad_yaml(tmp_path):
    root = make_session(tmp_path, "videos")
    (root / "treadmill/meta.yml").write_text("modality: wheel\n")
    refused(root, "treadmill/meta.yml", "'wheel' is unknown")
    (root / "treadmill/meta.yml").write_text("modality: [sequence\n")
    refused(root, "treadmill/meta.yml", "not valid YAML")


def _tar_with(path, members):
    with tarfile.open(path, "w") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


@pytest.mark.parametrize("name,kind,problem", [
    ("../escape.yml", tarfile.REGTYPE, "escapes the session"),
    ("/etc/passwd", tarfile.REGTYPE, "absolute path"),
    ("session/link", tarfile.SYMTYPE, "link in tar"),
    ("session/hard", tarfile.LNKTYPE, "link in tar"),
    ("session/dev", tarfile.CHRTYPE, "not a regular file"),
])
def test_hostile_tar_members_are_refused(tmp_path, name, kind, problem):
    good = tarfile.TarInfo("session/meta.json")
    good.size = 2
    bad = tarfile.TarInfo(name)
    bad.type = kind
    if kind == tarfile.REGTYPE:
        bad.size = 1
    else:
        bad.linkname = "/etc/passwd"
    path = _tar_with(tmp_path / "hostile.tar", [(good, b"{}"), (bad, b"x" if kind == tarfile.REGTYPE else None)])
    refused(path, "hostile.tar", problem)


def test_compressed_tar_and_duplicates_are_refused(tmp_path):
    folder = make_session(tmp_path, "videos")
    with tarfile.open(tmp_path / "s.tar.gz", "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    refused(tmp_path / "s.tar.gz", "not an uncompressed tar")
    info = tarfile.TarInfo("s/meta.json")
    info.size = 2
    refused(_tar_with(tmp_path / "dup.tar", [(info, b"{}"), (info, b"{}")]), "appears twice")


def test_not_a_session(tmp_path):
    refused(tmp_path / "nothing", "no such file or folder")
    (tmp_path / "empty").mkdir()
    refused(tmp_path / "empty", "no modality folders")
