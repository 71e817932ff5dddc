"""Training on experanto sessions: SessionDataset against the written-out reference of
ChunkDataset's rules (chunk starts and items, read from the session folders), pickling and
DataLoader workers, train's random starts, and SessionLoader's interleaving and resuming."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import pytest

from scandb.catalog.database import Database
from scandb.errors import UsageError
from scandb.ingest import ingest
from tests import experanto_reference as reference
from tests.experanto_sessions import make_session

torch = pytest.importorskip("torch")
from scandb.torchdata import ScanDataset, SessionDataset, SessionLoader  # noqa: E402

SESSIONS = {
    "videos": ("videos", {}),
    "images": ("images", {"animal_id": 29601, "seed": 1, "n_neurons": 9}),
    "colour": ("colour", {"animal_id": 29602, "seed": 2}),
    "tiers": ("tiers_and_spikes", {"animal_id": 29603, "seed": 3}),
    "no_optional": ("no_optional_modalities", {"animal_id": 29604, "seed": 4}),
}
"""name -> (fixture variant, spec changes): distinct keys; the images session has fewer neurons."""
KEYS = {"videos": "29515-10-12", "images": "29601-10-12", "colour": "29602-10-12", "tiers": "29603-10-12",
        "no_optional": "29604-10-12"}
SMALL = {"screen": {"interpolation": {"rescale_size": [18, 32]}}}
"""The default config with small frames: the reference normalises one element at a time."""
SHORT = {"screen": {"chunk_size": 15, "interpolation": {"rescale_size": [9, 16]}}, "responses": {"chunk_size": 4},
         "eye_tracker": {"chunk_size": 15}, "treadmill": {"chunk_size": 15}}
"""Half-second chunks: many per tier, so the loader tests have batches to interleave."""
SCREEN_SMALL = {"rescale": True, "rescale_size": [18, 32]}


def reference_config(config: dict | None, names=reference.CHUNK_CONFIG) -> dict:
    """The reference's config for one of the configs above."""
    changes = {}
    for name, settings in (config or {}).items():
        change = {k: v for k, v in settings.items() if k != "interpolation"}
        if "interpolation" in settings:
            change["interpolation"] = {**reference.CHUNK_CONFIG[name]["interpolation"], **settings["interpolation"]}
        changes[name] = change
    full = reference.chunk_config(**changes)
    return {name: full[name] for name in names}


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    root = tmp_path_factory.mktemp("training")
    folders = {}
    for name, (variant, changes) in SESSIONS.items():
        (root / name).mkdir()
        folders[name] = make_session(root / name, variant, **changes)
    path = root / "db" / "lab.duckdb"
    path.parent.mkdir()
    with Database(path, read_only=False) as db:
        db.ensure_schema()
        for folder in folders.values():
            ingest(db, folder)
    return {"db": path, "folders": folders}


@pytest.mark.parametrize("name", ["videos", "images", "colour", "tiers"])
@pytest.mark.parametrize("tier", ["train", "oracle"])
def test_chunk_starts_are_chunkdatasets(filled, name, tier):
    ours = SessionDataset(filled["db"], KEYS[name], tier, config=SMALL)
    expected = reference.valid_chunk_starts(filled["folders"][name], reference.CHUNK_CONFIG, {"tier": tier})
    assert len(expected) > 0
    np.testing.assert_array_equal(ours.starts, expected)
    assert len(ours) == len(expected)


@pytest.mark.parametrize("tier", ["train", "validation", "oracle"])
def test_short_chunks_and_other_conditions_are_chunkdatasets(filled, tier):
    folder = filled["folders"]["videos"]
    ours = SessionDataset(filled["db"], KEYS["videos"], tier, config=SHORT)
    expected = reference.valid_chunk_starts(folder, reference_config(SHORT), {"tier": tier})
    assert len(expected) > 0
    np.testing.assert_array_equal(ours.starts, expected)
    condition = [{"tier": "oracle", "valid_trial": True}, {"tier": "train", "modality": "video"}]
    ours = SessionDataset(filled["db"], KEYS["videos"], None, config=SHORT, valid_condition=condition,
                          include_blanks=False)
    expected = reference.valid_chunk_starts(folder, reference_config(SHORT), condition, include_blanks=False)
    assert len(expected) > 0
    np.testing.assert_array_equal(ours.starts, expected)


def test_the_nan_filter_takes_out_chunks_near_blinks(filled):
    folder = filled["folders"]["videos"]
    everything = [{"tier": "train"}, {"tier": "validation"}, {"tier": "oracle"}]
    unfiltered = {name: {**settings, "filters": {"nan_filter": None}} for name, settings in SHORT.items()
                  if name != "screen"}
    ours = SessionDataset(filled["db"], KEYS["videos"], config={**SHORT, **unfiltered}, valid_condition=everything)
    no_filters = reference_config(SHORT)
    for settings in no_filters.values():
        settings.pop("nan_filter", None)
    np.testing.assert_array_equal(ours.starts, reference.valid_chunk_starts(folder, no_filters, everything))
    filtered = SessionDataset(filled["db"], KEYS["videos"], config=SHORT, valid_condition=everything).starts
    np.testing.assert_array_equal(filtered, reference.valid_chunk_starts(folder, reference_config(SHORT),
                                                                         everything))
    assert set(filtered) < set(ours.starts)  # the blinks do take chunks out


def test_a_dataset_takes_the_gaps_from_sql_without_reading_the_matrices(filled, monkeypatch):
    """The rows with a NaN were found at ingest (table nan_rows): making a dataset never scans
    a sequence, and its filtered starts are still ChunkDataset's."""
    from scandb.session import gaps

    def no_scan(data):
        raise AssertionError("a sequence was scanned for NaN while making the dataset")

    monkeypatch.setattr(gaps, "nan_rows", no_scan)
    everything = [{"tier": "train"}, {"tier": "validation"}, {"tier": "oracle"}]
    dataset = SessionDataset(filled["db"], KEYS["videos"], config=SHORT, valid_condition=everything)
    np.testing.assert_array_equal(dataset.starts, reference.valid_chunk_starts(
        filled["folders"]["videos"], reference_config(SHORT), everything))


def assert_same_item(ours: dict, expected: dict):
    assert set(ours) == set(expected)
    for name, values in expected.items():
        if name == "timestamps":
            assert set(ours[name]) == set(values)
            for device, times in values.items():
                got = ours[name][device].numpy()
                assert got.dtype == times.dtype == np.float32
                np.testing.assert_array_equal(got, times, err_msg=device)
            continue
        got = ours[name].numpy()
        assert got.dtype == values.dtype, name
        assert got.shape == values.shape, name
        np.testing.assert_array_equal(got, values, err_msg=name)


@pytest.mark.parametrize("name", ["videos", "images", "colour", "tiers"])
def test_items_are_chunkdatasets(filled, name):
    dataset = SessionDataset(filled["db"], KEYS[name], "oracle", config=SMALL)
    config = reference_config(SMALL)
    for index in (0, len(dataset) // 2, len(dataset) - 1):
        expected = reference.chunk(filled["folders"][name], dataset.starts[index], config)
        assert_same_item(dataset[index], expected)
    channels = 3 if name == "colour" else 1
    assert dataset[0]["screen"].shape == (channels, 60, 18, 32)


def test_the_default_config_gives_chunkdatasets_shapes(filled):
    dataset = SessionDataset(filled["db"], KEYS["videos"])
    item = dataset[len(dataset) // 2]
    shapes = {name: tuple(values.shape) for name, values in item.items() if name != "timestamps"}
    assert shapes == {"screen": (1, 60, 144, 256), "responses": (16, 12), "eye_tracker": (60, 4),
                      "treadmill": (60, 1)}
    assert item["screen"].dtype == torch.float32
    assert {name: tuple(t.shape) for name, t in item["timestamps"].items()} == {
        "screen": (60,), "responses": (16,), "eye_tracker": (60,), "treadmill": (60,)}
    folder = filled["folders"]["videos"]
    raw_screen = reference.chunk_config(screen={"normalization": None})  # normalised below, all at once
    expected = reference.chunk(folder, dataset.starts[len(dataset) // 2], raw_screen)
    mean, std = (np.float32(np.load(folder / "screen" / "meta" / f"{stat}.npy")) for stat in ("means", "stds"))
    expected["screen"] = (expected["screen"] - mean) / std
    assert_same_item(item, expected)


def test_a_session_without_the_optional_modalities_is_refused_unless_left_out(filled):
    with pytest.raises(UsageError, match="no 'eye_tracker' modality"):
        SessionDataset(filled["db"], KEYS["no_optional"])
    dataset = SessionDataset(filled["db"], KEYS["no_optional"], "oracle", config=SMALL,
                             modalities=("screen", "responses"))
    folder = filled["folders"]["no_optional"]
    config = reference_config(SMALL, names=("screen", "responses"))
    np.testing.assert_array_equal(dataset.starts, reference.valid_chunk_starts(folder, config, {"tier": "oracle"}))
    assert_same_item(dataset[1], reference.chunk(folder, dataset.starts[1], config))


def test_refusals_are_one_line(filled):
    with pytest.raises(UsageError, match="'stim_type' is unknown"):
        SessionDataset(filled["db"], KEYS["videos"], valid_condition={"stim_type": "stimulus.Clip"})
    with pytest.raises(UsageError, match="SessionDataset"):
        ScanDataset(filled["db"], "SELECT scan_key, trial_id FROM trials")
    with pytest.raises(UsageError, match="SessionDataset"):
        ScanDataset(filled["db"], "SELECT scan_key FROM scans WHERE kind = 'experanto'")
    with pytest.raises(UsageError, match="sample_stride"):
        SessionDataset(filled["db"], KEYS["videos"], sample_stride=0)
    with pytest.raises(UsageError, match="has no trials of tier 'test' \\(its tiers: .*train"):
        SessionDataset(filled["db"], KEYS["videos"], tier="test")


def test_a_dataset_pickles_small_and_holds_no_database(filled, tmp_path):
    dataset = SessionDataset(filled["db"], KEYS["videos"], "oracle", config=SMALL)
    expected = as_numpy(dataset[3])
    dataset.session  # opened: its memory maps are not pickled
    data = pickle.dumps(dataset)
    assert len(data) < 200_000
    assert_same_item(pickle.loads(data)[3], expected)
    with Database(filled["db"], read_only=False) as db:  # a writer gets the file while the dataset lives
        db.conn.execute("SELECT count(*) FROM scans").fetchone()
    assert_same_item(dataset[3], expected)


def as_numpy(item: dict) -> dict:
    out = {name: values.numpy() for name, values in item.items() if name != "timestamps"}
    out["timestamps"] = {name: t.numpy() for name, t in item["timestamps"].items()}
    return out


def batches_of(loader) -> list:
    return [(key, {n: (v if n == "timestamps" else v.clone()) for n, v in batch.items()}) for key, batch in loader]


def assert_same_batches(a: list, b: list):
    assert [key for key, _ in a] == [key for key, _ in b]
    for (_, x), (_, y) in zip(a, b):
        for name in x:
            if name == "timestamps":
                for device in x[name]:
                    assert torch.equal(x[name][device], y[name][device])
            else:
                assert torch.equal(x[name], y[name]), name


def test_two_workers_give_what_no_worker_gives(filled):
    dataset = SessionDataset(filled["db"], KEYS["videos"], "oracle", config=SHORT)
    zero = list(torch.utils.data.DataLoader(dataset, batch_size=16, num_workers=0))
    two = list(torch.utils.data.DataLoader(dataset, batch_size=16, num_workers=2))
    assert len(zero) == len(two) == -(-len(dataset) // 16) > 1
    assert_same_batches([("s", b) for b in zero], [("s", b) for b in two])
    assert zero[0]["screen"].shape == (16, 1, 15, 9, 16)


def test_train_starts_are_random_valid_starts(filled):
    folder = filled["folders"]["videos"]
    valid = reference.valid_chunk_starts(folder, reference_config(SHORT), {"tier": "train"})
    dataset = SessionDataset(filled["db"], KEYS["videos"], "train", config=SHORT, sample_stride=3)
    np.testing.assert_array_equal(dataset.starts, valid)
    epochs = [dataset.starts[dataset.epoch_indexes(seed=5, epoch=e)] for e in range(3)]
    for starts in epochs:
        assert len(starts) == len(valid) // 3
        assert len(set(starts)) == len(starts) and set(starts) <= set(valid)
        assert np.any(np.diff(starts) < 0)  # not in time order
    assert set(epochs[0]) != set(epochs[1])
    np.testing.assert_array_equal(epochs[0], dataset.starts[dataset.epoch_indexes(seed=5, epoch=0)])
    oracle = SessionDataset(filled["db"], KEYS["videos"], "oracle", config=SHORT, sample_stride=3)
    np.testing.assert_array_equal(oracle.starts[oracle.epoch_indexes(seed=5, epoch=1)], oracle.starts[::3])
    # the chunk a train index gives starts at a valid start: its screen times say so
    responses_start = reference._meta(folder / "responses")["start_time"]
    index = int(dataset.epoch_indexes(seed=5, epoch=0)[0])
    np.testing.assert_array_equal(dataset[index]["timestamps"]["screen"][0].numpy(),
                                  np.float32(np.round(valid[index], 5) - responses_start))


@pytest.fixture(scope="module")
def three(filled):
    """Three sessions' train chunks (the images session has 9 neurons, the others 12)."""
    return {KEYS[n]: SessionDataset(filled["db"], KEYS[n], "train", config=SHORT, sample_stride=3)
            for n in ("videos", "images", "tiers")}


def test_sessions_are_interleaved_each_seen_once_before_any_repeats(three):
    loader = SessionLoader(three, batch_size=8, seed=1)
    yielded = []
    for key, batch in loader:
        assert batch["responses"].shape[-1] == three[key].n_neurons  # the batch is that session's
        yielded.append(key)
    counts = {key: -(-(len(d) // 3) // 8) for key, d in three.items()}  # sample_stride=3
    assert len(yielded) == len(loader) == sum(counts.values())
    assert len(set(counts.values())) > 1  # sessions of different lengths
    position, rounds = 0, 0
    while position < len(yielded):
        left = {key for key, n in counts.items() if n > rounds}
        assert sorted(yielded[position:position + len(left)]) == sorted(left), rounds  # each once
        position, rounds = position + len(left), rounds + 1
    orders = {tuple(yielded[i:i + 3]) for i in range(0, 3 * min(counts.values()), 3)}
    assert len(orders) > 1  # the order within a round is shuffled
    plan = [(loader.keys[n], batch) for n, batch in loader.plan(0)]
    assert [key for key, _ in plan] == yielded
    for key, dataset in three.items():  # a third of a session's chunks, each once
        chunks = [i for k, batch in plan if k == key for i in batch]
        assert len(set(chunks)) == len(chunks) == len(dataset) // 3


def test_resuming_from_a_saved_state_gives_the_remaining_batches(three):
    first = SessionLoader(three, batch_size=16, seed=3)
    whole = batches_of(first) + batches_of(first)[:3]  # epoch 0, then the start of epoch 1
    assert first.plan(0) != first.plan(1)  # train chunks are drawn again each epoch
    stopped = SessionLoader(three, batch_size=16, seed=3)
    taken = []
    for key, batch in stopped:
        taken.append((key, batch))
        if len(taken) == 5:
            break
    state = pickle.loads(pickle.dumps(stopped.state_dict()))
    assert state["position"] == 5 and state["epoch"] == 0
    resumed = SessionLoader(three, batch_size=16, seed=3, num_workers=2)
    resumed.load_state_dict(state)
    rest = batches_of(resumed)
    assert len(rest) == len(first) - 5
    assert_same_batches(taken + rest, whole[:len(first)])
    assert_same_batches(batches_of(resumed)[:3], whole[len(first):])  # then epoch 1 as the first loader's
    other = SessionLoader({k: three[k] for k in list(three)[:2]}, batch_size=16, seed=3)
    with pytest.raises(UsageError, match="other sessions"):
        other.load_state_dict(state)


def test_per_session_makes_one_dataset_per_session(filled):
    datasets = SessionDataset.per_session(
        filled["db"], "SELECT scan_key FROM scans WHERE kind = 'experanto' AND scan_key <> ? ORDER BY scan_key",
        "oracle", params=[KEYS["no_optional"]], config=SHORT)
    assert list(datasets) == sorted(k for n, k in KEYS.items() if n != "no_optional")
    assert {d.n_neurons for d in datasets.values()} == {9, 12}
    assert len({d.snapshot for d in datasets.values()}) == 1


def test_the_readme_training_example_runs(filled):
    section = (Path(__file__).resolve().parents[1] / "README.md").read_text().split("## experanto sessions", 1)[1]
    section = section.split("\n## ", 1)[0]
    block = next(b for b in re.findall(r"```python\n(.*?)```", section, flags=re.S) if "SessionLoader" in b)
    namespace = {}
    block = block.replace("num_workers=2", "num_workers=0")  # the workers are tested above
    exec(block.replace('"lab.duckdb"', repr(str(filled["db"]))).replace(
        "SELECT scan_key FROM scans WHERE kind = 'experanto'",
        f"SELECT scan_key FROM scans WHERE kind = 'experanto' AND scan_key <> '{KEYS['no_optional']}'"), namespace)
    assert namespace["state"]["position"] == 1
    assert namespace["item"]["screen"].shape == (1, 60, 144, 256)


def test_a_chunk_sampler_resumes_mid_epoch(filled):
    dataset = SessionDataset(filled["db"], KEYS["videos"], "train", config=SHORT, sample_stride=2)
    sampler = dataset.sampler(seed=4)
    first = list(sampler) + list(sampler)  # two epochs: different draws
    assert len(first) == 2 * (len(dataset) // 2) and first[:len(first) // 2] != first[len(first) // 2:]
    stopped = dataset.sampler(seed=4)
    taken = []
    for index in stopped:
        taken.append(index)
        if len(taken) == 7:
            break
    resumed = dataset.sampler(seed=4)
    resumed.load_state_dict(stopped.state_dict())
    assert taken + list(resumed) + list(resumed) == first
    loaded = torch.utils.data.DataLoader(dataset, batch_size=8, sampler=dataset.sampler(seed=4))
    expected = np.round(dataset.starts[first[:8]], 5)
    responses_start = reference._meta(filled["folders"]["videos"] / "responses")["start_time"]
    np.testing.assert_array_equal(next(iter(loaded))["timestamps"]["screen"][:, 0].numpy(),
                                  (expected - responses_start).astype(np.float32))



def test_offsets_and_linear_interpolation_are_chunkdatasets(filled):
    config = {**SMALL, "responses": {"offset": 0.1}, "eye_tracker": {"offset": 0.05, "interpolation": {
        "interpolation_mode": "linear"}}}
    dataset = SessionDataset(filled["db"], KEYS["videos"], "oracle", config=config)
    expected_config = reference_config(config)
    for index in (0, len(dataset) - 1):
        assert_same_item(dataset[index], reference.chunk(filled["folders"]["videos"], dataset.starts[index],
                                                         expected_config))
    assert dataset[0]["eye_tracker"].dtype == torch.float64  # linear interpolation is float64 in experanto
