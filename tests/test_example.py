"""``scandb example`` writes data an analysis can be checked on: full-size images, a test
set that grows with the trials, neurons that respond to the images, keys that never collide."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import click
import numpy as np
import pytest

from scandb.cli import cli

from .hostile import run_cli


def write(directory: Path, *options: str) -> list[Path]:
    result = run_cli("example", str(directory), *options)
    assert result.returncode == 0, result.stderr
    return [Path(line) for line in result.stdout.split()]


def read_scan(path: Path) -> dict[str, np.ndarray]:
    """Tiers, image ids, the first image and the stacked responses, read straight from the zip."""
    with zipfile.ZipFile(path) as zf:
        root = zf.namelist()[0].split("/")[0]

        def load(name: str) -> np.ndarray:
            return np.load(io.BytesIO(zf.read(f"{root}/{name}")))
        tiers = load("meta/trials/tiers.npy")
        return {"tiers": tiers, "image_ids": load("meta/trials/frame_image_id.npy"),
                "image": load("data/images/0.npy"),
                "responses": np.stack([load(f"data/responses/{i}.npy") for i in range(len(tiers))])}


def repeat_reliability(responses: np.ndarray, image_ids: np.ndarray) -> np.ndarray:
    """Per neuron: correlation of each test trial with the mean of the other repeats of its image."""
    single, others = [], []
    for image in np.unique(image_ids):
        rows = responses[image_ids == image]
        total = rows.sum(axis=0)
        single.append(rows)
        others.append((total - rows) / (len(rows) - 1))
    x, y = np.concatenate(single), np.concatenate(others)
    x, y = x - x.mean(axis=0), y - y.mean(axis=0)
    return (x * y).sum(axis=0) / np.sqrt((x ** 2).sum(axis=0) * (y ** 2).sum(axis=0) + 1e-12)


def test_defaults_are_full_size_images_and_a_tenth_test_trials(tmp_path):
    (path,) = write(tmp_path / "ex", "--count", "1", "--trials", "300", "--neurons", "40", "--seed", "1")
    scan = read_scan(path)
    assert scan["image"].shape == (1, 144, 256) and scan["image"].dtype == np.uint8
    test = scan["tiers"] == "test"
    assert test.sum() == 30
    assert sorted(np.unique(scan["image_ids"][test], return_counts=True)[1]) == [10, 10, 10]
    assert scan["responses"].shape == (300, 40)


def test_the_test_set_grows_with_the_trials_and_images_take_their_size(tmp_path):
    (path,) = write(tmp_path / "ex", "--count", "1", "--trials", "1000", "--neurons", "5", "--image-size", "36", "64")
    scan = read_scan(path)
    test = scan["tiers"] == "test"
    assert test.sum() == 100 and len(np.unique(scan["image_ids"][test])) == 10
    assert scan["image"].shape == (1, 36, 64)


def test_neurons_respond_to_the_images(tmp_path):
    (path,) = write(tmp_path / "ex", "--count", "1", "--trials", "600", "--neurons", "60", "--seed", "3")
    scan = read_scan(path)
    test = scan["tiers"] == "test"
    reliability = repeat_reliability(scan["responses"][test], scan["image_ids"][test])
    assert 0.2 < np.median(reliability) < 0.8
    shuffled = np.random.default_rng(0).permutation(scan["image_ids"][test])
    assert abs(np.median(repeat_reliability(scan["responses"][test], shuffled))) < 0.15
    assert (scan["responses"] >= 0).all() and 0.05 < (scan["responses"] == 0).mean() < 0.9


def test_keys_differ_between_calls_unless_seeded(tmp_path):
    options = ("--count", "2", "--trials", "20", "--neurons", "5", "--image-size", "16", "16")
    first, second = write(tmp_path / "a", *options), write(tmp_path / "b", *options)
    assert not {p.name for p in first} & {p.name for p in second}
    ingested = run_cli("ingest", "--db", str(tmp_path / "both.duckdb"), *map(str, first + second))
    assert ingested.returncode == 0 and "4 scans: 4 ingested" in ingested.stdout
    seeded = write(tmp_path / "c", *options, "--seed", "7"), write(tmp_path / "d", *options, "--seed", "7")
    assert [p.name for p in seeded[0]] == [p.name for p in seeded[1]]
    for a, b in zip(*seeded):
        assert np.array_equal(read_scan(a)["responses"], read_scan(b)["responses"])


def all_commands(group: click.Group = cli):
    return [(name, command) for name, command in group.commands.items()]


@pytest.mark.parametrize("name,command", all_commands(), ids=[n for n, _ in all_commands()])
def test_every_command_and_option_has_help(name, command):
    assert (command.help or "").strip(), f"scandb {name} has no help"
    for param in command.params:
        if isinstance(param, click.Option):
            assert (param.help or "").strip(), f"scandb {name} {param.opts[0]} has no help"


def test_experanto_examples_are_sessions_with_their_own_clocks_blinks_and_repeated_test_videos(tmp_path):
    """What the help promises, read from the tars with tarfile, yaml and numpy alone."""
    import tarfile

    import yaml

    run = run_cli("example", str(tmp_path), "--kind", "experanto", "--count", "2", "--neurons", "7", "--seed", "4")
    assert run.returncode == 0, run.stderr
    tars = sorted(tmp_path.glob("*.tar"))
    assert len(tars) == 2 and [str(t) for t in tars] == sorted(run.stdout.split())
    for path in tars:
        with tarfile.open(path) as tar:
            tar.extractall(tmp_path / path.stem, filter="data")
        root = next((tmp_path / path.stem).iterdir())
        meta = {m: yaml.safe_load((root / m / "meta.yml").read_text())
                for m in ("responses", "eye_tracker", "treadmill", "screen")}
        assert [meta[m]["sampling_rate"] for m in ("responses", "eye_tracker", "treadmill")] == [30.0, 20.0, 100.0]
        assert len({meta[m]["start_time"] for m in meta}) == 4  # every modality on its own clock
        assert meta["responses"]["n_signals"] == 7
        shifts = np.load(root / "responses" / "meta" / "phase_shifts.npy")
        assert shifts.shape == (7,) and len(set(shifts.tolist())) > 1
        eye = np.memmap(root / "eye_tracker" / "data.mem", dtype=meta["eye_tracker"]["dtype"], mode="r",
                        shape=(meta["eye_tracker"]["n_timestamps"], meta["eye_tracker"]["n_signals"]))
        assert np.isnan(eye).any() and not np.isnan(eye).all()  # blinks
        trials = [yaml.safe_load(p.read_text()) for p in sorted((root / "screen" / "meta").glob("*.yml"))]
        test = [t for t in trials if t.get("tier") == "oracle"]
        assert len(test) == 2 * 5 and len({t["condition_hash"] for t in test}) == 2  # 2 videos shown 5 times
        assert {t["num_frames"] for t in test} == {60}
