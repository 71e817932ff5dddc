"""experanto sessions beside the scans.

- modalities: per session, each modality folder (name, kind, sampling rate, start and end
  time, samples, signals, dtype, phase shifts, its array's store key, its meta.yml);
- stimulus_trials: per session trial (its ``trials`` row has tier, image and frames) the
  stimulus name, kind and type, first frame, onset and end time, valid flag and the file
  with its pixels. A table of its own rather than columns of ``trials``: DuckDB refuses to
  commit an ALTER of a table updated earlier in the same transaction, which revision 0006
  does when a database older than it is upgraded in one go;
- time_intervals: the rows of a session's time_interval modalities;
- trial_means: per session trial and sequence modality, each signal's mean over the trial's
  window (``scandb/session/windows.py``);
- trials_full shows the stimulus columns (NULL for scans' trials).

No existing row changes; the new tables' (empty) digests are recorded for every scan. The
downgrade refuses a database holding sessions (remove them first).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

from scandb.catalog.views import create_trials_full
from scandb.maintenance.digests import record_table_digests

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

NEW_TABLES = ("modalities", "stimulus_trials", "time_intervals", "trial_means")


def upgrade() -> None:
    op.create_table(
        "modalities",
        sa.Column("scan_key", sa.String, primary_key=True, nullable=False),
        sa.Column("name", sa.String, primary_key=True),
        sa.Column("kind", sa.String, nullable=False),
        sa.Column("sampling_rate", sa.Double),
        sa.Column("start_time", sa.Double, nullable=False),
        sa.Column("end_time", sa.Double, nullable=False),
        sa.Column("n_samples", sa.BigInteger),
        sa.Column("n_signals", sa.Integer),
        sa.Column("dtype", sa.String),
        sa.Column("phase_shifts", sa.ARRAY(sa.Double)),
        sa.Column("path", sa.String),
        sa.Column("meta", sa.JSON),
    )
    op.create_table(
        "stimulus_trials",
        sa.Column("scan_key", sa.String, primary_key=True, nullable=False),
        sa.Column("trial_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("trial_key", sa.String, nullable=False),
        sa.Column("stimulus_name", sa.String),
        sa.Column("stimulus_kind", sa.String, nullable=False),
        sa.Column("stimulus_type", sa.String),
        sa.Column("first_frame", sa.Integer, nullable=False),
        sa.Column("onset_time", sa.Double, nullable=False),
        sa.Column("end_time", sa.Double, nullable=False),
        sa.Column("valid_trial", sa.Boolean),
        sa.Column("stimulus_file", sa.String),
    )
    op.create_table(
        "time_intervals",
        sa.Column("scan_key", sa.String, primary_key=True, nullable=False),
        sa.Column("modality", sa.String, primary_key=True),
        sa.Column("label", sa.String, primary_key=True),
        sa.Column("interval_idx", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("start_time", sa.Double, nullable=False),
        sa.Column("end_time", sa.Double, nullable=False),
    )
    op.create_table(
        "trial_means",
        sa.Column("scan_key", sa.String, primary_key=True, nullable=False),
        sa.Column("trial_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("modality", sa.String, primary_key=True),
        sa.Column("n_samples", sa.Integer, nullable=False),
        sa.Column("mean", sa.ARRAY(sa.Double), nullable=False),
    )
    op.execute(create_trials_full("0014"))
    record_table_digests(op.get_bind().connection.driver_connection, list(NEW_TABLES))


def downgrade() -> None:
    conn = op.get_bind().connection.driver_connection
    sessions = conn.execute("SELECT count(*) FROM scans WHERE kind = 'experanto'").fetchone()[0]
    if sessions:
        raise RuntimeError(f"the database holds {sessions} experanto sessions, which revision 0013 cannot; "
                           "remove them first ('scandb remove KEY')")
    op.execute(create_trials_full("0006"))
    for table in NEW_TABLES:
        op.drop_table(table)
    conn.execute("DELETE FROM scan_digests WHERE part IN ('modalities', 'stimulus_trials', 'time_intervals', 'trial_means')")
