"""scandb report's model section: with models scored on a scan, per-area bars, per neuron
against the oracle ceiling and model against model, each a PNG embedded in the page; the
per-area table equals means computed here from db.scores(); without models the report is
as before."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser

import numpy as np
import pytest

import scandb
from scandb.catalog.database import Database
from scandb.ingest import ingest
from scandb.report import numbers
from scandb.synthetic import ScanSpec, VideoSpec, generate, generate_dynamic, write_zip

pytest.importorskip("matplotlib")

STATIC = ScanSpec(animal_id=52001, seed=61, n_trials=40, n_neurons=12, n_test_images=3, responsive=True,
                  image_shape=(1, 18, 32))
VIDEO = VideoSpec(animal_id=52002, seed=62, n_trials=12, n_neurons=7, n_frames=90, min_length=60,
                  video_shape=(18, 32))
BARE = ScanSpec(animal_id=52003, seed=63, n_trials=20, n_neurons=6, n_test_images=2, responsive=True,
                image_shape=(1, 18, 32))
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
BEFORE = ["neurons_per_area_layer", "neuron_positions", "trials_per_tier", "responses_per_area",
          "behavior_over_order", "oracle_per_area"]
MODEL_FIGURES = ["model_scores_per_area", "model_vs_oracle", "model_vs_model"]


def static_responses(arrays: dict, n_trials: int) -> np.ndarray:
    return np.stack([arrays[f"data/responses/{i}.npy"] for i in range(n_trials)]).astype(np.float64)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    directory = tmp_path_factory.mktemp("report_models")
    path = directory / "lab.duckdb"
    with Database(path, read_only=False) as db:
        db.ensure_schema()
        ingest(db, write_zip(generate(STATIC), directory / f"{STATIC.name}.zip"))
        ingest(db, write_zip(generate_dynamic(VIDEO), directory / f"{VIDEO.name}.zip"))
        ingest(db, write_zip(generate(BARE), directory / f"{BARE.name}.zip"))
    rng = np.random.default_rng(7)
    responses = static_responses(generate(STATIC).arrays, STATIC.n_trials)
    video = generate_dynamic(VIDEO).arrays
    video_responses = np.stack([video[f"data/responses/{i}.npy"] for i in range(VIDEO.n_trials)])
    with scandb.connect(path, read_only=False) as db:
        every = f"SELECT scan_key, trial_id FROM trials WHERE scan_key = '{STATIC.key}' ORDER BY trial_id"
        db.add_predictions("close", every, responses + rng.normal(scale=0.3, size=responses.shape))
        db.add_predictions("noise", every, rng.normal(size=responses.shape))
        videos = f"SELECT scan_key, trial_id FROM trials WHERE scan_key = '{VIDEO.key}' ORDER BY trial_id"
        db.add_predictions("video-cnn", videos, np.nan_to_num(video_responses) + rng.normal(
            scale=0.5, size=video_responses.shape))
    return path


class Tables(HTMLParser):
    """The rows of the page's model table, as lists of cell texts."""

    def __init__(self):
        super().__init__()
        self.rows, self.inside = [], False

    def handle_starttag(self, tag, attrs):
        if tag == "table" and ("class", "models") in attrs:
            self.inside = True
        elif self.inside and tag == "tr":
            self.rows.append([])
        elif self.inside and tag in ("td", "th"):
            self.rows[-1].append("")

    def handle_endtag(self, tag):
        if tag == "table":
            self.inside = False

    def handle_data(self, data):
        if self.inside and self.rows and self.rows[-1]:
            self.rows[-1][-1] += data


def model_table(page: str) -> list[list[str]]:
    parser = Tables()
    parser.feed(page)
    return parser.rows


def check_embedded(result) -> str:
    page = result.html.read_text()
    embedded = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([^"]+)"', page)
    assert [name for name, _ in embedded] == list(result.figures)
    for name, data in embedded:
        png = result.figures[name].read_bytes()
        assert png.startswith(PNG_MAGIC) and len(png) > 5_000, name
        assert base64.b64decode(data) == png
    return page


def test_static_scan_with_two_models_gets_every_model_figure_and_the_table_of_db_scores(lab, tmp_path):
    with scandb.connect(lab) as db:
        result = db.report(STATIC.key, tmp_path / "report")
        scores = db.scores(["close", "noise"], scan=STATIC.key, tier="test")
    assert list(result.figures) == BEFORE + MODEL_FIGURES
    page = check_embedded(result)
    assert "close" in page and "noise" in page and "test tier" in page
    rows = model_table(page)
    assert rows[0] == ["area", "neurons", "close", "noise"]
    areas = sorted(set(generate(STATIC).arrays["meta/neurons/area.npy"].tolist()))
    assert [row[0] for row in rows[1:]] == areas + ["all"]
    for row in rows[1:]:
        chosen = scores if row[0] == "all" else scores[scores["area"] == row[0]]
        assert int(row[1]) == len(chosen) // 2
        for model, shown in zip(["close", "noise"], row[2:]):
            expected = chosen.loc[chosen["model"] == model, "single_trial_correlation"].mean()
            assert abs(float(shown) - expected) <= 5e-5, (row[0], model)
    # responses plus a little noise predict far better than noise: the page's numbers say so
    all_row = rows[-1]
    assert float(all_row[2]) > 0.5 > abs(float(all_row[3]))


def test_the_scatters_plot_each_neurons_scores_and_the_best_model_goes_on_x(lab):
    with scandb.connect(lab) as db:
        shown = numbers.model_scores(db, STATIC.key)
        scores = db.scores(["close", "noise"], scan=STATIC.key, tier="test")
    assert shown.tier == "test" and shown.models == ["close", "noise"]
    for model in shown.models:
        expected = scores[scores["model"] == model].sort_values("neuron_idx")["single_trial_correlation"]
        np.testing.assert_allclose(shown.correlation[model], expected.to_numpy(), rtol=0, atol=1e-12)
    assert shown.best() == "close"  # responses plus a little noise, against noise


def test_video_scan_with_one_model_has_no_model_against_model(lab, tmp_path):
    with scandb.connect(lab) as db:
        result = db.report(VIDEO.key, tmp_path / "report")
        scores = db.scores("video-cnn", scan=VIDEO.key, tier="oracle")
    assert list(result.figures) == BEFORE + ["mean_response_over_frames", "model_scores_per_area",
                                             "model_vs_oracle"]
    page = check_embedded(result)
    assert "video-cnn" in page and "oracle tier" in page
    rows = model_table(page)
    assert rows[0] == ["area", "neurons", "video-cnn"]
    assert len(rows) == len(set(scores["area"])) + 2
    for row in rows[1:]:
        chosen = scores if row[0] == "all" else scores[scores["area"] == row[0]]
        assert int(row[1]) == len(chosen)
        assert abs(float(row[2]) - chosen["single_trial_correlation"].mean()) <= 5e-5


def test_without_models_the_report_is_as_before(lab, tmp_path):
    with scandb.connect(lab) as db:
        result = db.report(BARE.key, tmp_path / "report")
    assert list(result.figures) == BEFORE
    page = result.html.read_text()
    assert "<table" not in page and 'id="models"' not in page
    assert not list((tmp_path / "report").glob("model_*.png"))
