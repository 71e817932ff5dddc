"""Models and scores: predictions stored as a run, scored per neuron exactly as the Sensorium
scorers score them. Every expected score is computed here, with neuralpredictors' functions
and the scorers' steps written out, on the scans' own source arrays."""

from __future__ import annotations

import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import scandb
from scandb.errors import UsageError
from scandb.synthetic import ScanSpec, VideoSpec, generate, generate_dynamic, write_zip

from .conftest import digest_database
from .hostile import run_cli
from .reference_loaders import import_neuralpredictors

STATIC = ScanSpec(animal_id=24411, seed=61, n_trials=60, n_neurons=17, n_test_images=3, responsive=True)
VIDEO = VideoSpec(animal_id=29911, seed=62, n_trials=24, n_neurons=9, n_frames=90, min_length=60)
SKIP = 50
"""The 2023 scorer's frames skipped at the start of each trial."""


def np_functions():
    return import_neuralpredictors("neuralpredictors.measures.np_functions")


# -- what the source files hold, and predictions made from them ------------------------------


def source_responses(arrays: dict, trials) -> np.ndarray:
    return np.stack([arrays[f"data/responses/{t}.npy"] for t in trials])


def valid_length(response: np.ndarray) -> int:
    """A video trial's frames before the first all-NaN one."""
    ended = np.isnan(response).all(axis=0)
    return int(np.argmax(ended)) if ended.any() else response.shape[1]


def static_predictions(trials: np.ndarray, seed: int = 0) -> np.ndarray:
    arrays = generate(STATIC).arrays
    rng = np.random.default_rng(seed)
    truth = source_responses(arrays, trials)
    return (0.6 * truth + rng.normal(scale=truth.std(), size=truth.shape)).astype(np.float32)


def video_predictions(trials: np.ndarray, seed: int = 1) -> np.ndarray:
    arrays = generate_dynamic(VIDEO).arrays
    rng = np.random.default_rng(seed)
    truth = np.nan_to_num(source_responses(arrays, trials))
    out = (0.5 * truth + rng.normal(size=truth.shape)).astype(np.float32)
    out[:, :, :SKIP] = np.nan  # a model's burn-in: the scorer skips these frames
    return out


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """A database with a static and a video scan, and model 'cnn' predicting every trial of
    both, the selection in a shuffled order."""
    directory = tmp_path_factory.mktemp("scoring")
    zips = [write_zip(generate(STATIC), directory / f"{STATIC.name}.zip"),
            write_zip(generate_dynamic(VIDEO), directory / f"{VIDEO.name}.zip")]
    path = directory / "lab.duckdb"
    rng = np.random.default_rng(5)
    static_trials = rng.permutation(STATIC.n_trials)
    video_trials = rng.permutation(VIDEO.n_trials)
    selection = [(STATIC.key, int(t)) for t in static_trials] + [(VIDEO.key, int(t)) for t in video_trials]
    given = {STATIC.key: static_predictions(static_trials), VIDEO.key: video_predictions(video_trials)}
    with scandb.connect(path, read_only=False) as db:
        db.ingest(zips)
        result = db.add_predictions("cnn", selection, given, config={"lr": 3e-4, "seed": 1})
    return {"path": path, "zips": zips, "result": result, "given": given,
            "trials": {STATIC.key: static_trials, VIDEO.key: video_trials}, "directory": directory}


def stored_scores(path, model: str, scan: str, tier: str) -> dict[str, np.ndarray]:
    with scandb.connect(path) as db:
        frame = db.scores(model, scan=scan, tier=tier)
    assert frame["neuron_idx"].tolist() == list(range(len(frame)))
    return {c: frame[c].to_numpy(dtype=np.float64, na_value=np.nan) if c not in ("tier", "area", "layer",
            "model", "scan_key") else frame[c].to_numpy() for c in frame.columns}


# -- the scorers' steps, written out (sensorium/utility/metrics.py; sensorium_2023 scores.py) ---


def sensorium_static(responses, predictions, image_ids) -> dict[str, np.ndarray]:
    with warnings.catch_warnings():  # FEV of images shown once: NaN, with numpy's warnings
        warnings.simplefilter("ignore", RuntimeWarning)
        return _sensorium_static(responses, predictions, image_ids)


def _sensorium_static(responses, predictions, image_ids) -> dict[str, np.ndarray]:
    f = np_functions()
    images = np.unique(image_ids)
    split = lambda x: [x[image_ids == i] for i in images]  # noqa: E731  (the scorer's split_images)
    means = lambda x: np.vstack([g.mean(axis=0, keepdims=True) for g in split(x)])  # noqa: E731
    fev, feve = f.fev(split(responses), split(predictions), return_exp_var=True)
    return {"single_trial_correlation": f.corr(predictions, responses, axis=0),
            "correlation_to_average": f.corr(means(responses), means(predictions), axis=0),
            "fev": fev, "feve": feve}


def sensorium_2023(responses: list[np.ndarray], predictions: list[np.ndarray]) -> np.ndarray:
    """``get_correlations``: each trial's (N, T) from frame 50, concatenated, corr, NaN -> 0."""
    f = np_functions()
    target = np.concatenate([r[:, SKIP:] for r in responses], axis=1).T
    output = np.concatenate([p[:, SKIP:] for p in predictions], axis=1).T
    correlation = f.corr(target, output, axis=0)
    correlation[np.isnan(correlation)] = 0
    return correlation


# -- scores -------------------------------------------------------------------------------------


@pytest.mark.parametrize("tier", ["test", "validation", "train"])
def test_static_scores_equal_the_sensorium_scorer_on_the_source_arrays(scored, tier):
    arrays = generate(STATIC).arrays
    tiers, ids = arrays["meta/trials/tiers.npy"], arrays["meta/trials/frame_image_id.npy"]
    trials = scored["trials"][STATIC.key]
    rows = np.flatnonzero(tiers[trials] == tier)
    rows = rows[np.argsort(trials[rows])]  # the scorer orders trials by their index
    responses = source_responses(arrays, trials[rows])  # float32, as the scorer gets them
    predictions = scored["given"][STATIC.key][rows]
    want = sensorium_static(responses, predictions, ids[trials[rows]])
    got = stored_scores(scored["path"], "cnn", STATIC.key, tier)
    assert set(got["n_trials"]) == {len(rows)}
    for metric in ("single_trial_correlation", "correlation_to_average"):  # the same bits
        np.testing.assert_array_equal(got[metric], want[metric].astype(np.float64), err_msg=metric)
    if tier == "test":  # every test image is repeated
        for metric in ("fev", "feve"):
            np.testing.assert_array_equal(got[metric], want[metric].astype(np.float64), err_msg=metric)
        assert np.mean(got["single_trial_correlation"]) > 0.2  # predictions made from the responses
    else:  # each image once: the scorer's FEV is NaN, stored as NULL
        assert np.isnan(want["fev"]).all() and np.isnan(got["fev"]).all() and np.isnan(got["feve"]).all()


@pytest.mark.parametrize("tier", ["oracle", "train"])
def test_video_scores_equal_the_2023_scorer_on_the_source_arrays(scored, tier):
    arrays = generate_dynamic(VIDEO).arrays
    tiers = arrays["meta/trials/tiers.npy"]
    trials = scored["trials"][VIDEO.key]
    rows = np.flatnonzero(tiers[trials] == tier)
    responses, predictions = [], []
    for row in rows:
        response = arrays[f"data/responses/{trials[row]}.npy"]
        length = valid_length(response)  # the 2023 loader's clips end with the trial
        responses.append(response[:, :length].astype(np.float32))
        predictions.append(scored["given"][VIDEO.key][row][:, :length])
    got = stored_scores(scored["path"], "cnn", VIDEO.key, tier)
    # the scorer computes in float32 over every frame at once; scandb accumulates in float64
    np.testing.assert_allclose(got["single_trial_correlation"], sensorium_2023(responses, predictions),
                               rtol=1e-5, atol=1e-6)
    assert np.isnan(got["correlation_to_average"]).all()  # the 2023 scorer defines no other metric


def test_tiers_with_withheld_responses_are_not_scored_and_a_note_says_so(scored):
    arrays = generate_dynamic(VIDEO).arrays
    withheld = sorted({str(t) for t in arrays["meta/trials/tiers.npy"] if "test" in str(t)})
    assert withheld  # the fixture has zero-filled test tiers
    with scandb.connect(scored["path"]) as db:
        tiers = set(db.scores("cnn", scan=VIDEO.key, tier=None)["tier"])
    assert tiers == {"oracle", "train", "none"}
    note = next(n for n in scored["result"].notes if n.startswith(VIDEO.key))
    assert all(t in note for t in withheld) and "withheld" in note


def test_predictions_come_back_bit_for_bit_in_trial_order(scored):
    with scandb.connect(scored["path"]) as db:
        for scan, given in scored["given"].items():
            order = np.argsort(scored["trials"][scan])
            trial_ids, values = db.predictions("cnn", scan)
            assert trial_ids.tolist() == sorted(scored["trials"][scan].tolist())
            want = given[order]
            if scan == VIDEO.key:  # kept up to each trial's end, NaN after it
                arrays = generate_dynamic(VIDEO).arrays
                for i, t in enumerate(trial_ids):
                    want[i, :, valid_length(arrays[f"data/responses/{t}.npy"]):] = np.nan
                want = want[:, :, :values.shape[2]]
            assert values.dtype == np.float32
            assert values.tobytes() == want.tobytes()


def test_the_model_row_keeps_its_config_and_an_order_free_hash(scored):
    with scandb.connect(scored["path"]) as db:
        models = db.models()
    row = models.set_index("name").loc["cnn"]
    assert row["n_trials"] == STATIC.n_trials + VIDEO.n_trials and row["n_scans"] == 2
    assert "@" in row["created_by"] and row["scandb_version"] == scandb.__version__
    import hashlib
    import json
    assert json.loads(row["config"]) == {"lr": 3e-4, "seed": 1}
    assert row["config_hash"] == hashlib.sha256(b'{"lr":0.0003,"seed":1}').hexdigest()


# -- refusals -----------------------------------------------------------------------------------


def refusals(selection_static, n):
    good = static_predictions(np.arange(n))
    with_nan = good.copy()
    with_nan[3, 2] = np.nan
    return {
        "a neuron short": (selection_static, good[:, :-1], {}, "expected"),
        "NaN": (selection_static, with_nan, {}, "NaN"),
        "a trial outside the scan": ([(STATIC.key, 0), (STATIC.key, STATIC.n_trials)], good[:2], {}, "trial"),
        "a name already used": (selection_static, good, {"model": "cnn"}, "replace=True"),
        "a trial twice": ([(STATIC.key, 1), (STATIC.key, 1)], good[:2], {}, "twice"),
        "a bad name": (selection_static, good, {"model": "no spaces"}, "model name"),
        "a config JSON cannot hold": (selection_static, good, {"config": {"f": object()}}, "JSON"),
        "an array for two scans": ([(STATIC.key, 0), (VIDEO.key, 0)], good[:2], {}, "dict"),
        "a dict missing a scan": ([(STATIC.key, 0), (VIDEO.key, 0)], {STATIC.key: good[:1]}, {}, VIDEO.key),
    }


@pytest.mark.parametrize("case", list(refusals(None, 10)))
def test_bad_predictions_are_one_usage_error_and_change_nothing(scored, tmp_path, case):
    path = tmp_path / "lab.duckdb"
    shutil.copy(scored["path"], path)
    shutil.copytree(scored["path"].with_suffix(".images"), path.with_suffix(".images"))
    before = digest_database(path)
    n = 10
    selection, values, options, said = refusals([(STATIC.key, t) for t in range(n)], n)[case]
    model = options.pop("model", "other")
    with scandb.connect(path, read_only=False) as db, pytest.raises(UsageError) as raised:
        db.add_predictions(model, selection, values, **options)
    assert said in str(raised.value) and "\n" not in str(raised.value)
    assert digest_database(path) == before


def test_nan_inside_a_video_trial_is_refused_naming_the_frame(scored, tmp_path):
    values = video_predictions(np.arange(3))
    values[1, 4, SKIP + 2] = np.nan
    with scandb.connect(scored["path"], read_only=False) as db, pytest.raises(UsageError, match=f"frame {SKIP + 2}"):
        db.add_predictions("other", np.arange(3), values, scan=VIDEO.key)


def test_replace_swaps_a_run_and_remove_and_gc_free_its_video_file(scored, tmp_path):
    path = tmp_path / "lab.duckdb"
    with scandb.connect(path, read_only=False) as db:
        db.ingest(scored["zips"])
        trials = np.arange(VIDEO.n_trials)
        first = db.add_predictions("vid", trials, video_predictions(trials, seed=3), scan=VIDEO.key)
        assert first.status == "added"
        old_file = db.sql("SELECT path FROM prediction_matrices").fetchone()[0]
        second = db.add_predictions("vid", trials, video_predictions(trials, seed=4), scan=VIDEO.key, replace=True)
        assert second.status == "replaced"
        new_file = db.sql("SELECT path FROM prediction_matrices").fetchone()[0]
        assert old_file != new_file
        store = db.database.image_dir
        assert (store / old_file).exists()  # released: a reader that started before still reads it
        db.gc(0)
        assert not (store / old_file).exists() and (store / new_file).exists()
        static = np.arange(STATIC.n_trials)
        db.add_predictions("cnn", static, static_predictions(static), scan=STATIC.key)
        again = db.add_predictions("cnn", static, static_predictions(static, seed=2), scan=STATIC.key, replace=True)
        assert again.status == "replaced"
        assert db.predictions("cnn", STATIC.key)[1].tobytes() == static_predictions(static, seed=2).tobytes()
        assert db.remove_predictions("vid") == VIDEO.n_trials
        assert db.sql("SELECT count(*) FROM neuron_scores WHERE model = 'vid'").fetchone()[0] == 0
        assert db.models()["name"].tolist() == ["cnn"]
        db.gc(0)
        assert not (store / new_file).exists()
        assert db.verify().exit_code == 0


def test_removing_a_scan_removes_its_predictions_and_scores(scored, tmp_path):
    path = tmp_path / "lab.duckdb"
    with scandb.connect(path, read_only=False) as db:
        db.ingest(scored["zips"])
        db.add_predictions("both", [(STATIC.key, 0), (STATIC.key, 1), (VIDEO.key, 0)],
                           {STATIC.key: static_predictions(np.arange(2)), VIDEO.key: video_predictions(np.arange(1))})
        db.remove(VIDEO.key)
        left = db.sql("SELECT DISTINCT scan_key FROM predictions UNION SELECT DISTINCT scan_key FROM neuron_scores "
                      "UNION SELECT scan_key FROM prediction_matrices").fetchall()
        assert left == [(STATIC.key,)]
        assert db.verify().exit_code == 0


def test_a_damaged_predictions_file_is_found_by_verify(scored, tmp_path):
    path = tmp_path / "lab.duckdb"
    with scandb.connect(path, read_only=False) as db:
        db.ingest(scored["zips"][1:])
        db.add_predictions("vid", np.arange(2), video_predictions(np.arange(2)), scan=VIDEO.key)
        key = db.sql("SELECT path FROM prediction_matrices").fetchone()[0]
    with open(path.with_suffix(".images") / key, "r+b") as f:
        f.seek(-4, 2)
        f.write(np.float32(1.5).tobytes())  # the last value was NaN (after the trial's end)
    run = run_cli("verify", "--db", str(path))
    assert run.code == 5 and "predictions file" in run.out and "does not match its hash" in run.out


# -- the command line: an .npz and the 2023 submission Parquet ------------------------------------


def test_cli_npz_and_submission_parquet_store_the_same_run_as_the_api(scored, tmp_path):
    path = tmp_path / "lab.duckdb"
    shutil.copy(scored["path"], path)
    shutil.copytree(scored["path"].with_suffix(".images"), path.with_suffix(".images"))
    trials, values = scored["trials"][VIDEO.key], scored["given"][VIDEO.key]
    npz = tmp_path / "predictions.npz"
    np.savez(npz, scan_key=np.array([VIDEO.key] * len(trials)), trial_id=trials, predictions=values)
    run = run_cli("predictions", "add", "from-npz", str(npz), "--db", str(path), "--config", '{"seed": 2}')
    assert run.code == 0, run
    assert run.out.startswith(f"from-npz: added predictions of {len(trials)} trials in 1 scan")

    arrays = generate_dynamic(VIDEO).arrays
    units = arrays["meta/neurons/unit_ids.npy"]
    shuffled = np.random.default_rng(9).permutation(VIDEO.n_neurons)
    rows = []
    for row, trial in enumerate(trials):
        end = valid_length(arrays[f"data/responses/{trial}.npy"])
        rows.append(values[row][shuffled, SKIP:end].tolist())  # as submission.py writes: frames 50..end
    submission = tmp_path / "predictions_file_live_test_main_track.parquet.brotli"
    pq.write_table(pa.table({"mouse": [VIDEO.name] * len(trials), "trial_indices": trials.tolist(),
                             "prediction": rows, "neuron_ids": [units[shuffled].astype(np.uint32)] * len(trials)}),
                   submission, compression="brotli")
    run = run_cli("predictions", "add", "from-parquet", str(submission), "--db", str(path))
    assert run.code == 0, run

    with scandb.connect(path) as db:
        for model in ("from-npz", "from-parquet"):
            for tier in ("oracle", "train"):
                a = db.scores("cnn", scan=VIDEO.key, tier=tier)["single_trial_correlation"].to_numpy()
                b = db.scores(model, scan=VIDEO.key, tier=tier)["single_trial_correlation"].to_numpy()
                np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)
    listed = run_cli("predictions", "list", "--db", str(path), "--csv")
    assert listed.code == 0 and {"cnn", "from-npz", "from-parquet"} <= {line.split(",")[0] for line in
                                                                       listed.out.splitlines()[1:]}
    board = run_cli("scores", "--db", str(path), "--by", "scan", "--tier", "oracle", "--csv")
    assert board.code == 0, board
    header, *lines = board.out.splitlines()
    assert header.startswith("model,tier,scan_key,neurons,single_trial_correlation")
    assert len(lines) == 3
    removed = run_cli("predictions", "remove", "from-npz", "--db", str(path))
    assert removed.code == 0 and "removed predictions of" in removed.out


@pytest.mark.parametrize("args, code, said", [
    (("predictions", "add", "x", "{db}"), 3, "neither an .npz nor a Parquet file"),
    (("predictions", "add", "x", "missing.npz"), 2, "no such file"),
    (("predictions", "add", "x", "{npz}", "--config", "{{"), 2, "--config: not JSON"),
    (("predictions", "remove", "nope"), 2, "no model 'nope'"),
    (("scores", "nope"), 2, "no model 'nope'"),
    (("scores", "cnn", "--tier", "final_test_main"), 2, "no scores of tier 'final_test_main'"),
])
def test_cli_mistakes_are_one_line_and_change_nothing(scored, tmp_path, args, code, said):
    path = tmp_path / "lab.duckdb"
    shutil.copy(scored["path"], path)
    shutil.copytree(scored["path"].with_suffix(".images"), path.with_suffix(".images"))
    npz = tmp_path / "p.npz"
    np.savez(npz, scan_key=np.array([STATIC.key]), trial_id=np.array([0]), predictions=np.zeros((1, 3)))
    before = digest_database(path)
    run = run_cli(*[a.format(db=path, npz=npz) for a in args], "--db", str(path))
    assert run.code == code, run
    assert len(run.err_lines) == 1 and said in run.err_lines[0]
    assert digest_database(path) == before


# -- a lake -------------------------------------------------------------------------------------


def test_on_a_lake_a_run_is_one_snapshot_and_older_snapshots_keep_removed_runs(scored, lake, fill_lake):
    fill_lake(lake, *scored["zips"])
    trials = scored["trials"][STATIC.key]
    selection = [(scan, int(t)) for scan in (STATIC.key, VIDEO.key) for t in scored["trials"][scan]]
    with scandb.connect(lake.url, read_only=False) as db:
        before = db.snapshot
        db.add_predictions("cnn", selection, scored["given"])
        after = db.snapshot
        assert after == before + 1 and db.snapshots()[-1].change.startswith("predictions cnn")
        got = db.scores("cnn", tier=None)
        video_file = db.database.image_dir / db.sql("SELECT path FROM prediction_matrices").fetchone()[0]
        db.remove_predictions("cnn")
        assert db.models().empty
        assert video_file.exists()  # the snapshot before still references it
    with scandb.connect(scored["path"]) as db:
        want = db.scores("cnn", tier=None)
    assert got.equals(want)  # the same scores in a file and on a lake, static and video
    with scandb.connect(lake.url, snapshot=after) as db:
        assert db.models()["name"].tolist() == ["cnn"]
        assert db.predictions("cnn", STATIC.key)[1].tobytes() == \
            scored["given"][STATIC.key][np.argsort(trials)].tobytes()
        video = db.predictions("cnn", VIDEO.key)[1]
        given = scored["given"][VIDEO.key][np.argsort(scored["trials"][VIDEO.key])][:, :, :video.shape[2]]
        kept = ~np.isnan(video)  # frames 50 to each trial's end
        assert kept.sum() > 0 and video[kept].tobytes() == given[kept].tobytes()


# -- the README's questions, run as written --------------------------------------------------------

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_queries() -> list[str]:
    section = README.read_text().split("## Scoring models", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sql\n(.*?)```", section, flags=re.S)


def test_the_readme_leaderboard_queries_answer_what_they_say(scored, tmp_path):
    path = tmp_path / "lab.duckdb"
    shutil.copy(scored["path"], path)
    shutil.copytree(scored["path"].with_suffix(".images"), path.with_suffix(".images"))
    trials = scored["trials"][STATIC.key]
    good = scored["given"][STATIC.key]
    poor = static_predictions(trials, seed=7) * 0.1 + np.random.default_rng(8).normal(size=good.shape)
    with scandb.connect(path, read_only=False) as db:
        db.add_predictions("cnn-v3", trials, good, scan=STATIC.key)
        db.add_predictions("lnp-v1", trials, poor.astype(np.float32), scan=STATIC.key)
    per_area, ranked, beats = readme_queries()
    with scandb.connect(path) as db:
        scores = {m: db.scores(m, scan=STATIC.key) for m in ("cnn-v3", "lnp-v1")}
        rows = db.sql(per_area).fetchall()
        want = scores["cnn-v3"].groupby("area")["single_trial_correlation"].mean()
        got = {area: value for model, area, mice, neurons, value in rows if model == "cnn-v3"}
        assert got == {area: round(v, 3) for area, v in want.items()}

        ranking = db.sql(ranked).fetchall()
        quality = db.sql("SELECT scan_key, neuron_idx, tier FROM neuron_quality "
                         "WHERE oracle_correlation IS NOT NULL").df()
        assert len(quality) < 500  # every reliable neuron of these small scans
        means = {m: db.scores(m, tier=None).merge(quality, on=["scan_key", "neuron_idx", "tier"])
                 ["single_trial_correlation"] for m in ("cnn", "cnn-v3", "lnp-v1")}
        assert [(r[0], r[1], r[2]) for r in ranking] == sorted(
            ((m, len(v), round(v.mean(), 3)) for m, v in means.items()), key=lambda r: -r[2])
        assert ranking[-1][0] == "lnp-v1"  # the poor model ranks last

        winners = db.sql(beats).fetchall()
        a = scores["cnn-v3"].set_index("neuron_idx")["single_trial_correlation"]
        b = scores["lnp-v1"].set_index("neuron_idx")["single_trial_correlation"]
        assert sorted(r[1] for r in winners) == sorted(a.index[a > b].tolist())
        assert 0 < len(winners) <= STATIC.n_neurons
