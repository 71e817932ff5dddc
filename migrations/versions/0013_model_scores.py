"""Models next to the data: their predictions and scores.

- models: one row per model run (name, configuration as JSON and its order-free hash,
  when, by whom, scandb's version);
- predictions: per (model, scan, trial) the predicted responses of a static trial
  (``FLOAT[]``), or the row of the video trial in the model's prediction matrix;
- prediction_matrices: per (model, video scan) the store file of its predictions;
- neuron_scores: per (model, scan, neuron, tier) the Sensorium metrics.

All four start empty (``ScanDB.add_predictions`` fills them); no other table changes, so no
digest does. The downgrade drops them.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "models",
        sa.Column("name", sa.String, primary_key=True),
        sa.Column("config", sa.JSON),
        sa.Column("config_hash", sa.String, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("created_by", sa.String, nullable=False),
        sa.Column("scandb_version", sa.String, nullable=False),
    )
    op.create_table(
        "predictions",
        sa.Column("model", sa.String, primary_key=True),
        sa.Column("scan_key", sa.String, primary_key=True, nullable=False),
        sa.Column("trial_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("prediction", sa.ARRAY(sa.REAL)),
        sa.Column("row", sa.Integer),
    )
    op.create_table(
        "prediction_matrices",
        sa.Column("model", sa.String, primary_key=True),
        sa.Column("scan_key", sa.String, primary_key=True, nullable=False),
        sa.Column("path", sa.String, nullable=False),
        sa.Column("n_rows", sa.Integer, nullable=False),
        sa.Column("n_frames", sa.Integer, nullable=False),
        sa.Column("n_neurons", sa.Integer, nullable=False),
    )
    op.create_table(
        "neuron_scores",
        sa.Column("model", sa.String, primary_key=True),
        sa.Column("scan_key", sa.String, primary_key=True, nullable=False),
        sa.Column("neuron_idx", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("tier", sa.String, primary_key=True),
        sa.Column("n_trials", sa.Integer, nullable=False),
        sa.Column("single_trial_correlation", sa.Double),
        sa.Column("correlation_to_average", sa.Double),
        sa.Column("fev", sa.Double),
        sa.Column("feve", sa.Double),
    )


def downgrade() -> None:
    for table in ("neuron_scores", "prediction_matrices", "predictions", "models"):
        op.drop_table(table)
