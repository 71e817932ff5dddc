"""The relational model, defined once in SQLAlchemy Core.

Migrations in ``migrations/`` build exactly these tables (a test compares DuckDB's catalog
of a migrated database with ``metadata.create_all``). Every child table carries the
readable ``scan_key`` so it can be filtered by scan directly.

There are no foreign keys: DuckDB checks them against rows deleted earlier in the same
transaction, so replacing or removing a scan atomically (delete its rows, then the
``scans`` row, in one transaction) would fail, and updating a parent's list column counts
as a delete. Ingest writes a scan's rows in one transaction and ``scandb verify`` checks
that every row belongs to a scan.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()


def _scan_key(primary_key: bool = True) -> sa.Column:
    return sa.Column("scan_key", sa.String, primary_key=primary_key, nullable=False)


scans = sa.Table(
    "scans", metadata,
    sa.Column("scan_key", sa.String, primary_key=True, comment="animal-session-scan, e.g. 26872-17-20"),
    sa.Column("name", sa.String, nullable=False, comment="full folder name of the scan"),
    sa.Column("animal_id", sa.BigInteger),
    sa.Column("session", sa.BigInteger),
    sa.Column("scan_idx", sa.BigInteger),
    sa.Column("kind", sa.String, nullable=False),
    sa.Column("n_trials", sa.Integer, nullable=False),
    sa.Column("n_neurons", sa.Integer, nullable=False),
    sa.Column("image_shape", sa.ARRAY(sa.Integer), nullable=False),
    sa.Column("image_dtype", sa.String, nullable=False),
    sa.Column("response_dtype", sa.String, nullable=False, comment="dtype in the source files"),
    sa.Column("behavior_dtype", sa.String, nullable=False),
    sa.Column("pupil_center_dtype", sa.String, nullable=False),
    sa.Column("source_name", sa.String, nullable=False),
    sa.Column("source_size", sa.BigInteger, nullable=False),
    sa.Column("source_sha256", sa.String, nullable=False),
    sa.Column("ingested_at", sa.DateTime, nullable=False),
    sa.Column("scandb_version", sa.String, nullable=False),
    sa.Column("content_sha256", sa.String,
              comment="sha256 over the scan's member names and bytes: equal for a zip and its unzipped folder"),
)

neurons = sa.Table(
    "neurons", metadata,
    _scan_key(),
    sa.Column("neuron_idx", sa.Integer, primary_key=True, autoincrement=False,
              comment="0-based position in the response arrays"),
    sa.Column("unit_id", sa.BigInteger, nullable=False),
    sa.Column("area", sa.String),
    sa.Column("layer", sa.String),
    sa.Column("x", sa.Double),
    sa.Column("y", sa.Double),
    sa.Column("z", sa.Double),
    sa.Column("extra", sa.JSON, comment="every other meta/neurons array, by file name"),
)

trials = sa.Table(
    "trials", metadata,
    _scan_key(),
    sa.Column("trial_id", sa.Integer, primary_key=True, autoincrement=False,
              comment="the file number i of data/<key>/i.npy"),
    sa.Column("tier", sa.String, nullable=False),
    sa.Column("image_id", sa.BigInteger, nullable=False),
    sa.Column("image_class", sa.String),
    sa.Column("trial_idx", sa.BigInteger, comment="presentation order, when numeric"),
    sa.Column("trial_hash", sa.String, comment="presentation key, when the scan hashes it"),
    sa.Column("timestamp", sa.DateTime, comment="parsed from frame_trial_ts"),
    sa.Column("image_hash", sa.String, nullable=False),
    sa.Column("extra", sa.JSON, comment="every other meta/trials array, by file name"),
    sa.Column("n_frames", sa.Integer, comment="dynamic trials: valid length, the first all-NaN response frame"),
    sa.Column("responses_withheld", sa.Boolean, comment="a test-tier trial whose responses are all exactly zero"),
    sa.Column("behavior_withheld", sa.Boolean, comment="behavior and pupil position all exactly zero"),
)

stimulus_trials = sa.Table(
    "stimulus_trials", metadata,
    _scan_key(),
    sa.Column("trial_id", sa.Integer, primary_key=True, autoincrement=False,
              comment="the trial's position in the screen's trials (its trials row)"),
    sa.Column("trial_key", sa.String, nullable=False, comment="the trial's yml name, e.g. 00001"),
    sa.Column("stimulus_name", sa.String, comment="the trial's stimulus_name, when given"),
    sa.Column("stimulus_kind", sa.String, nullable=False, comment="image, video, blank or invalid"),
    sa.Column("stimulus_type", sa.String, comment="stim_type, e.g. stimulus.Clip"),
    sa.Column("first_frame", sa.Integer, nullable=False, comment="index of the first screen frame"),
    sa.Column("onset_time", sa.Double, nullable=False, comment="seconds, the first frame's onset"),
    sa.Column("end_time", sa.Double, nullable=False, comment="seconds, the next trial's onset "
                                             "(the last frame's for the last trial)"),
    sa.Column("valid_trial", sa.Boolean, comment="the yml's valid_trial, when given"),
    sa.Column("stimulus_file", sa.String, comment="the session file with the pixels "
                                                  "(e.g. screen/data/00001.npy); NULL for blanks"),
)
"""An experanto session's screen trials beyond ``trials`` (which has their tier, image and
frame count): stimulus, frames and times on the session's clock."""

trial_means = sa.Table(
    "trial_means", metadata,
    _scan_key(),
    sa.Column("trial_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("modality", sa.String, primary_key=True, comment="a sequence: responses, eye_tracker, treadmill, ..."),
    sa.Column("n_samples", sa.Integer, nullable=False, comment="samples of the modality's grid in the window"),
    sa.Column("mean", sa.ARRAY(sa.Double), nullable=False,
              comment="per signal (neuron, channel) the mean over [onset_time, end_time), each signal at its "
                      "phase shift, NaN samples left out; NaN where none is finite"),
)
"""An experanto session's sequences averaged over each stimulus trial (``session/windows.py``)."""

nan_rows = sa.Table(
    "nan_rows", metadata,
    _scan_key(),
    sa.Column("modality", sa.String, primary_key=True, comment="a sequence: responses, eye_tracker, treadmill, ..."),
    sa.Column("rows", sa.ARRAY(sa.BigInteger), nullable=False,
              comment="sorted indexes of the rows with a NaN in any signal (empty: none)"),
)
"""Per sequence of an experanto session, its gaps, found at ingest (``session/gaps.py``)."""

modalities = sa.Table(
    "modalities", metadata,
    _scan_key(),
    sa.Column("name", sa.String, primary_key=True, comment="the modality's folder, e.g. responses"),
    sa.Column("kind", sa.String, nullable=False, comment="sequence, screen, time_interval or spikes"),
    sa.Column("sampling_rate", sa.Double, comment="Hz (sequences); NULL otherwise"),
    sa.Column("start_time", sa.Double, nullable=False, comment="seconds on the session's clock"),
    sa.Column("end_time", sa.Double, nullable=False),
    sa.Column("n_samples", sa.BigInteger, comment="rows (sequences), frames (screen), spikes, intervals"),
    sa.Column("n_signals", sa.Integer, comment="columns (sequences), neurons (spikes), labels (intervals)"),
    sa.Column("dtype", sa.String, comment="of the stored array"),
    sa.Column("phase_shifts", sa.ARRAY(sa.Double), comment="seconds per signal; NULL without phase shifts"),
    sa.Column("path", sa.String, comment="the data as .npy, bit for bit: its key in the store (sessions/<sha256>.npy)"),
    sa.Column("meta", sa.JSON, comment="the modality's meta.yml"),
)
"""An experanto session's modalities, each on its own clock (docs/architecture.md, Sessions)."""

time_intervals = sa.Table(
    "time_intervals", metadata,
    _scan_key(),
    sa.Column("modality", sa.String, primary_key=True),
    sa.Column("label", sa.String, primary_key=True),
    sa.Column("interval_idx", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("start_time", sa.Double, nullable=False),
    sa.Column("end_time", sa.Double, nullable=False, comment="half-open [start_time, end_time)"),
)
"""The rows of an experanto session's time_interval modalities, as stored (reversed ones too)."""

frame_behavior = sa.Table(
    "frame_behavior", metadata,
    _scan_key(),
    sa.Column("trial_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("pupil_dilation", sa.ARRAY(sa.Double), nullable=False, comment="per frame, T values, NaN padded"),
    sa.Column("running_speed", sa.ARRAY(sa.Double), nullable=False),
    sa.Column("pupil_x", sa.ARRAY(sa.Double), nullable=False),
    sa.Column("pupil_y", sa.ARRAY(sa.Double), nullable=False),
)

area_frame_responses = sa.Table(
    "area_frame_responses", metadata,
    sa.Column("scan_key", sa.String, nullable=False),
    sa.Column("trial_id", sa.Integer, nullable=False),
    sa.Column("area", sa.String),
    sa.Column("layer", sa.String),
    sa.Column("n_neurons", sa.Integer, nullable=False),
    sa.Column("response_sum", sa.ARRAY(sa.Double), nullable=False,
              comment="per valid frame, the sum of these neurons' responses"),
)

behavior = sa.Table(
    "behavior", metadata,
    _scan_key(),
    sa.Column("trial_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("pupil_dilation", sa.Double, nullable=False),
    sa.Column("pupil_dilation_derivative", sa.Double, nullable=False),
    sa.Column("running_speed", sa.Double, nullable=False),
    sa.Column("pupil_x", sa.Double, nullable=False),
    sa.Column("pupil_y", sa.Double, nullable=False),
)

responses = sa.Table(
    "responses", metadata,
    _scan_key(),
    sa.Column("trial_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("response", sa.ARRAY(sa.REAL), nullable=False,
              comment="float32, element k belongs to neuron_idx k"),
    sa.Column("image_id", sa.BigInteger, comment="the trial's image id; a scan's rows are stored sorted by it"),
)

images = sa.Table(
    "images", metadata,
    sa.Column("image_hash", sa.String, primary_key=True, comment="sha256 of dtype, shape and pixels"),
    sa.Column("path", sa.String, nullable=False, comment=".npy file (or the pack holding it): its key in the store, relative to the store folder"),
    sa.Column("shape", sa.ARRAY(sa.Integer), nullable=False),
    sa.Column("dtype", sa.String, nullable=False),
    sa.Column("n_bytes", sa.BigInteger, nullable=False),
    sa.Column("pack_offset", sa.BigInteger,
              comment="where the .npy file begins inside the pack at path (a store on a bucket); NULL: path is the file"),
    sa.Column("pack_length", sa.BigInteger, comment="the .npy file's length inside the pack"),
)

statistics = sa.Table(
    "statistics", metadata,
    _scan_key(),
    sa.Column("variable", sa.String, primary_key=True),
    sa.Column("source", sa.String, primary_key=True, comment="'all' or the stimulus-frame folder, as spelled"),
    sa.Column("stat", sa.String, primary_key=True),
    sa.Column("dtype", sa.String, nullable=False),
    sa.Column("shape", sa.ARRAY(sa.Integer), nullable=False),
    sa.Column("data", sa.ARRAY(sa.Double),
              comment="values, flattened in C order; NULL when the member is kept as a file (scan_files.stored_as)"),
)

scan_files = sa.Table(
    "scan_files", metadata,
    _scan_key(),
    sa.Column("path", sa.String, primary_key=True, comment="relative to the scan root, e.g. meta/trials/tiers.npy"),
    sa.Column("dtype", sa.String, comment="for .npy files"),
    sa.Column("shape", sa.ARRAY(sa.Integer), comment="for .npy files"),
    sa.Column("content", sa.LargeBinary, comment="the file, byte for byte; NULL when kept as a file (stored_as)"),
    sa.Column("stored_as", sa.String,
              comment="the file in the store, relative to the store folder, named by the sha256 of its bytes "
                      "(a dynamic scan's time-resolved statistics); NULL when content holds it"),
)

response_matrices = sa.Table(
    "response_matrices", metadata,
    sa.Column("scan_key", sa.String, primary_key=True),
    sa.Column("path", sa.String, nullable=False,
              comment="(n_trials, n_neurons) float32 .npy, row = trial_id: its key in the store, relative to the store folder"),
    sa.Column("n_trials", sa.Integer, nullable=False),
    sa.Column("n_neurons", sa.Integer, nullable=False),
)

area_responses = sa.Table(
    "area_responses", metadata,
    sa.Column("scan_key", sa.String, nullable=False),
    sa.Column("trial_id", sa.Integer, nullable=False),
    sa.Column("area", sa.String),
    sa.Column("layer", sa.String),
    sa.Column("n_neurons", sa.Integer, nullable=False),
    sa.Column("response_sum", sa.Double, nullable=False, comment="sum of the trial's responses of these neurons"),
)

neuron_quality = sa.Table(
    "neuron_quality", metadata,
    _scan_key(),
    sa.Column("neuron_idx", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("tier", sa.String, primary_key=True,
              comment="the tier of repeated stimuli: 'test' (static scans), 'oracle' (video scans)"),
    sa.Column("n_repeats", sa.Integer, nullable=False,
              comment="trials used: released repeats of stimuli shown at least twice; 0 when none (withheld)"),
    sa.Column("oracle_correlation", sa.Double, comment="leave-one-out, as neuralpredictors' oracle_corr_jackknife"),
    sa.Column("oracle_correlation_conservative", sa.Double, comment="as oracle_corr_conservative"),
    sa.Column("explainable_variance", sa.Double, comment="as explainable_var"),
    sa.Column("snr", sa.Double, comment="as snr (on the Anscombe transform)"),
)
"""Per-neuron repeat reliability, computed at ingest (``scandb/quality.py`` says how); NULL
where undefined or when the tier's responses are withheld."""

models = sa.Table(
    "models", metadata,
    sa.Column("name", sa.String, primary_key=True, comment="what add_predictions was called with, e.g. cnn-v3"),
    sa.Column("config", sa.JSON, comment="the configuration given, as JSON"),
    sa.Column("config_hash", sa.String, nullable=False,
              comment="sha256 of the configuration as JSON with sorted keys: equal configs, equal hashes"),
    sa.Column("created_at", sa.DateTime, nullable=False, comment="UTC"),
    sa.Column("created_by", sa.String, nullable=False, comment="user@host"),
    sa.Column("scandb_version", sa.String, nullable=False),
)
"""A model's run: its predictions are in ``predictions``, its scores in ``neuron_scores``."""

predictions = sa.Table(
    "predictions", metadata,
    sa.Column("model", sa.String, primary_key=True),
    _scan_key(),
    sa.Column("trial_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("prediction", sa.ARRAY(sa.REAL),
              comment="static trials: float32, element k predicts neuron_idx k; NULL for video trials"),
    sa.Column("row", sa.Integer, comment="video trials: the row of prediction_matrices.path; NULL for static ones"),
)

prediction_matrices = sa.Table(
    "prediction_matrices", metadata,
    sa.Column("model", sa.String, primary_key=True),
    _scan_key(),
    sa.Column("path", sa.String, nullable=False,
              comment="(n_rows, T, n_neurons) float32 .npy, time-major as the response matrix, NaN after each "
                      "trial's end: its key in the store, named by the sha256 of its bytes"),
    sa.Column("n_rows", sa.Integer, nullable=False),
    sa.Column("n_frames", sa.Integer, nullable=False),
    sa.Column("n_neurons", sa.Integer, nullable=False),
)
"""A model's predictions of a video scan's trials, one file per (model, scan)."""

neuron_scores = sa.Table(
    "neuron_scores", metadata,
    sa.Column("model", sa.String, primary_key=True),
    _scan_key(),
    sa.Column("neuron_idx", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("tier", sa.String, primary_key=True),
    sa.Column("n_trials", sa.Integer, nullable=False, comment="the tier's predicted trials the scores use"),
    sa.Column("single_trial_correlation", sa.Double,
              comment="static: corr(prediction, response) over the trials; video: over the frames after the first "
                      "50 of each trial, concatenated, NaN as 0 (the 2023 scorer)"),
    sa.Column("correlation_to_average", sa.Double,
              comment="static: corr of the per-image means over repeats; NULL for video scans"),
    sa.Column("fev", sa.Double, comment="static: fraction of explainable variance, over images shown twice or more"),
    sa.Column("feve", sa.Double, comment="static: fraction of explainable variance explained by the model"),
)
"""Each model's score per neuron and tier, computed when its predictions are added
(``scandb/scoring/metrics.py`` says how, exactly as the Sensorium scorers do)."""

scan_digests = sa.Table(
    "scan_digests", metadata,
    _scan_key(),
    sa.Column("part", sa.String, primary_key=True,
              comment="a table (its rows of this scan) or 'response matrix' (the file)"),
    sa.Column("method", sa.String, nullable=False,
              comment="'sha256' for files; for tables 'duckdb-hash-sum' and DuckDB's hash() of a fixed probe row"),
    sa.Column("digest", sa.String, nullable=False),
    sa.Column("n_rows", sa.BigInteger, nullable=False),
)

released_files = sa.Table(
    "released_files", metadata,
    sa.Column("store", sa.String, nullable=False, comment="'images', 'matrices', 'meta', 'predictions' or 'sessions'"),
    sa.Column("key", sa.String, nullable=False, comment="an image's hash or a response matrix's path"),
    sa.Column("released_by", sa.String, nullable=False, comment="'removed <scan>' or 'replaced <scan>'"),
    sa.Column("released_at", sa.DateTime, nullable=False, comment="UTC; 'scandb gc --older-than DAYS' deletes "
                                                                  "files released more than DAYS ago"),
)
"""Store files no scan uses any more, kept for readers that started before (a database file;
a lake keeps them through its snapshots)."""

def delete_scan_rows(conn, scan_key: str) -> None:
    """Delete every row of one scan, ``scans`` row included (inside the caller's transaction)."""
    from . import registry

    for table in (*registry.owned(), "scans"):
        conn.execute(f"DELETE FROM {table} WHERE scan_key = ?", [scan_key])
