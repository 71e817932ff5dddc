"""scandb report: the numbers behind each figure agree with references computed here from
the source files, every figure renders, and the HTML page stands alone."""

from __future__ import annotations

import base64
import io
import re
from collections import Counter

import numpy as np
import pytest

from scandb.api import connect
from scandb.catalog.database import Database
from scandb.errors import UsageError
from scandb.ingest import ingest
from scandb.report import numbers
from scandb.synthetic import ScanSpec, generate, write_zip

from .scans import spec_for, write
from .hostile import run_cli

pytest.importorskip("matplotlib")

RESPONSIVE = ScanSpec(animal_id=51001, session=3, scan_idx=4, seed=5, n_trials=300, n_neurons=30,
                      image_shape=(1, 36, 64), n_test_images=6, responsive=True)
HASHED = spec_for("hashed_trial_idx", animal_id=51002, n_trials=40, n_neurons=10, seed=6)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    directory = tmp_path_factory.mktemp("report")
    path = directory / "lab.duckdb"
    with Database(path, read_only=False) as db:
        db.ensure_schema()
        ingest(db, write_zip(generate(RESPONSIVE), directory / f"{RESPONSIVE.name}.zip"))
        ingest(db, write(HASHED, directory))
    return path


@pytest.fixture(scope="module")
def files():
    return generate(RESPONSIVE).arrays


def reference_oracle(arrays: dict, n_trials: int) -> np.ndarray:
    """Per neuron: pairs (repeat, mean of the image's other repeats), correlated over all pairs."""
    tiers = arrays["meta/trials/tiers.npy"]
    image_ids = arrays["meta/trials/frame_image_id.npy"]
    responses = np.stack([arrays[f"data/responses/{i}.npy"] for i in range(n_trials)]).astype(np.float64)
    pairs_a, pairs_b = [], []
    for image in np.unique(image_ids[tiers == "test"]):
        rows = np.flatnonzero((tiers == "test") & (image_ids == image))
        for r in rows:
            others = [o for o in rows if o != r]
            pairs_a.append(responses[r])
            pairs_b.append(responses[others].mean(axis=0))
    a, b = np.array(pairs_a), np.array(pairs_b)
    return np.array([np.corrcoef(a[:, k], b[:, k])[0, 1] for k in range(a.shape[1])])


def test_oracle_matches_a_reference_computed_from_the_source_files(lab, files):
    with connect(lab) as db:
        frame = db.oracle(RESPONSIVE.key)
    expected = reference_oracle(files, RESPONSIVE.n_trials)
    np.testing.assert_allclose(frame["oracle"].to_numpy(), expected, rtol=1e-5, atol=1e-6)
    assert list(frame["neuron_idx"]) == list(range(RESPONSIVE.n_neurons))
    assert list(frame["area"]) == list(files["meta/neurons/area.npy"])
    assert 0.2 < np.nanmedian(expected) < 0.7  # image-driven neurons: repeats agree


def test_oracle_of_noise_is_near_zero_and_constant_neurons_give_nan():
    responses = np.random.default_rng(0).normal(size=(200, 5))
    responses[:, 4] = 1.0
    out = numbers._column_correlation(responses, np.roll(responses, 1, axis=0))
    assert np.all(np.abs(out[:4]) < 0.2) and np.isnan(out[4])


def test_counts_behind_the_bar_charts(lab, files):
    with connect(lab) as db:
        per_tier = numbers.trials_per_tier(db, RESPONSIVE.key)
        per_area_layer = numbers.neurons_per_area_layer(db, RESPONSIVE.key)
    assert per_tier == dict(Counter(files["meta/trials/tiers.npy"].tolist()))
    pairs = zip(files["meta/neurons/area.npy"].tolist(), files["meta/neurons/layer.npy"].tolist())
    assert per_area_layer == dict(Counter(pairs))


def test_positions_and_response_distribution_come_from_the_source(lab, files):
    with connect(lab) as db:
        cells = numbers.neurons(db, RESPONSIVE.key)
        distribution = numbers.response_distribution(db, RESPONSIVE.key, cells.area)
        means = numbers.mean_response_by_tier(db, RESPONSIVE.key)
    coords = files["meta/neurons/cell_motor_coordinates.npy"]
    np.testing.assert_array_equal(np.column_stack([cells.x, cells.y, cells.z]), coords)
    responses = np.stack([files[f"data/responses/{i}.npy"] for i in range(RESPONSIVE.n_trials)])
    areas, tiers = files["meta/neurons/area.npy"], files["meta/trials/tiers.npy"]
    for area in np.unique(areas):
        values = responses[:, areas == area].ravel()
        np.testing.assert_array_equal(distribution.histograms[area], np.histogram(values[values > 0],
                                                                                  numbers.LOG_BINS)[0])
        assert distribution.zero_fraction[area] == pytest.approx((values == 0).mean())
        for tier in np.unique(tiers):
            expected = responses[tiers == tier][:, areas == area].astype(np.float64).mean()
            assert means[(area, tier)] == pytest.approx(expected, rel=1e-5)


def test_response_distribution_samples_large_scans_evenly(lab):
    with connect(lab) as db:
        cells = numbers.neurons(db, RESPONSIVE.key)
        sampled = numbers.response_distribution(db, RESPONSIVE.key, cells.area, sample=50)
    assert sampled.n_trials == 50


def test_behavior_follows_presentation_order_or_file_order_when_hashed(lab, files):
    with connect(lab) as db:
        ordered = numbers.behavior_over_order(db, RESPONSIVE.key)
        hashed = numbers.behavior_over_order(db, HASHED.key)
    order = files["meta/trials/trial_idx.npy"]
    first = int(np.argsort(order)[0])
    assert ordered.by == "trial_idx" and list(ordered.order) == sorted(order.tolist())
    assert ordered.values["running_speed"][0] == pytest.approx(float(files[f"data/behavior/{first}.npy"][2]))
    assert ordered.values["pupil_y"][0] == pytest.approx(float(files[f"data/pupil_center/{first}.npy"][1]))
    assert hashed.by == "trial_id" and list(hashed.order) == list(range(HASHED.n_trials))


@pytest.mark.parametrize("spec", [RESPONSIVE, HASHED], ids=["responsive", "hashed_trial_idx"])
def test_every_figure_renders_and_the_page_embeds_them(lab, tmp_path, spec):
    with connect(lab) as db:
        result = db.report(spec.key, tmp_path / "report")
    assert list(result.figures) == ["neurons_per_area_layer", "neuron_positions", "trials_per_tier",
                                    "responses_per_area", "behavior_over_order", "oracle_per_area"]
    page = result.html.read_text()
    embedded = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(embedded) == len(result.figures)
    for name, path in result.figures.items():
        png = path.read_bytes()
        assert png.startswith(PNG_MAGIC) and len(png) > 5_000, name
        assert base64.b64decode(embedded[list(result.figures).index(name)]) == png
    assert "src=\"http" not in page and "<script" not in page


def test_figure_sizes_are_those_drawn(lab, tmp_path):
    import matplotlib.image

    with connect(lab) as db:
        result = db.report(RESPONSIVE.key, tmp_path)
    height, width = matplotlib.image.imread(io.BytesIO(result.figures["trials_per_tier"].read_bytes())).shape[:2]
    assert (width, height) == (660, 385)  # 6 x 3.5 inches at 110 dpi


def test_unknown_scan_is_one_line_and_writes_nothing(lab, tmp_path):
    with connect(lab) as db, pytest.raises(UsageError, match="no scan 'nope'"):
        db.report("nope", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_report_writes_the_page(lab, tmp_path):
    result = run_cli("report", RESPONSIVE.key, "--out", str(tmp_path / "r"), "--db", str(lab))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{RESPONSIVE.key}: 6 figures and {tmp_path / 'r' / 'report.html'}"
    missing = run_cli("report", RESPONSIVE.key, "--db", str(lab))
    assert missing.returncode == 2 and "--out" in missing.stderr
