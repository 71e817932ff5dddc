"""The relational model of scandb 0.1: scans, neurons, trials, behavior, responses,
images, statistics and every other file of a scan.

No foreign keys (see scandb/schema.py): DuckDB would refuse to replace or remove a scan
in one transaction.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _scan_key() -> sa.Column:
    return sa.Column("scan_key", sa.String, primary_key=True, nullable=False)


def upgrade() -> None:
    op.create_table(
        "scans",
        sa.Column("scan_key", sa.String, primary_key=True),
        sa.Column("name", sa.String, nullable=False),
        sa.Column("animal_id", sa.BigInteger),
        sa.Column("session", sa.BigInteger),
        sa.Column("scan_idx", sa.BigInteger),
        sa.Column("kind", sa.String, nullable=False),
        sa.Column("n_trials", sa.Integer, nullable=False),
        sa.Column("n_neurons", sa.Integer, nullable=False),
        sa.Column("image_shape", sa.ARRAY(sa.Integer), nullable=False),
        sa.Column("image_dtype", sa.String, nullable=False),
        sa.Column("response_dtype", sa.String, nullable=False),
        sa.Column("behavior_dtype", sa.String, nullable=False),
        sa.Column("pupil_center_dtype", sa.String, nullable=False),
        sa.Column("source_name", sa.String, nullable=False),
        sa.Column("source_size", sa.BigInteger, nullable=False),
        sa.Column("source_sha256", sa.String, nullable=False),
        sa.Column("ingested_at", sa.DateTime, nullable=False),
        sa.Column("scandb_version", sa.String, nullable=False),
    )
    op.create_table(
        "neurons",
        _scan_key(),
        sa.Column("neuron_idx", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("unit_id", sa.BigInteger, nullable=False),
        sa.Column("area", sa.String),
        sa.Column("layer", sa.String),
        sa.Column("x", sa.Double),
        sa.Column("y", sa.Double),
        sa.Column("z", sa.Double),
        sa.Column("extra", sa.JSON),
    )
    op.create_table(
        "trials",
        _scan_key(),
        sa.Column("trial_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("tier", sa.String, nullable=False),
        sa.Column("image_id", sa.BigInteger, nullable=False),
        sa.Column("image_class", sa.String),
        sa.Column("trial_idx", sa.BigInteger),
        sa.Column("trial_hash", sa.String),
        sa.Column("timestamp", sa.DateTime),
        sa.Column("image_hash", sa.String, nullable=False),
        sa.Column("extra", sa.JSON),
    )
    op.create_table(
        "behavior",
        _scan_key(),
        sa.Column("trial_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("pupil_dilation", sa.Double, nullable=False),
        sa.Column("pupil_dilation_derivative", sa.Double, nullable=False),
        sa.Column("running_speed", sa.Double, nullable=False),
        sa.Column("pupil_x", sa.Double, nullable=False),
        sa.Column("pupil_y", sa.Double, nullable=False),
    )
    op.create_table(
        "responses",
        _scan_key(),
        sa.Column("trial_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("response", sa.ARRAY(sa.REAL), nullable=False),
    )
    op.create_table(
        "images",
        sa.Column("image_hash", sa.String, primary_key=True),
        sa.Column("path", sa.String, nullable=False),
        sa.Column("shape", sa.ARRAY(sa.Integer), nullable=False),
        sa.Column("dtype", sa.String, nullable=False),
        sa.Column("n_bytes", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "statistics",
        _scan_key(),
        sa.Column("variable", sa.String, primary_key=True),
        sa.Column("source", sa.String, primary_key=True),
        sa.Column("stat", sa.String, primary_key=True),
        sa.Column("dtype", sa.String, nullable=False),
        sa.Column("shape", sa.ARRAY(sa.Integer), nullable=False),
        sa.Column("data", sa.ARRAY(sa.Double), nullable=False),
    )
    op.create_table(
        "scan_files",
        _scan_key(),
        sa.Column("path", sa.String, primary_key=True),
        sa.Column("dtype", sa.String),
        sa.Column("shape", sa.ARRAY(sa.Integer)),
        sa.Column("content", sa.LargeBinary, nullable=False),
    )


def downgrade() -> None:
    for table in ("scan_files", "statistics", "images", "responses", "behavior", "trials", "neurons", "scans"):
        op.drop_table(table)
