"""Per-neuron repeat reliability.

- neuron_quality: one row per (scan, neuron, tier of repeated stimuli: ``test`` for static
  scans, ``oracle`` for video scans) with the oracle correlation (jackknife and
  conservative), explainable variance and SNR as neuralpredictors computes them over the
  tier's released repeats (``scandb/quality.py``), and ``n_repeats``. Ingest writes it from
  this revision on; here it is filled for the scans already in the database, from each
  scan's response matrix (or its ``responses`` rows), and its digest is recorded for each
  scan. No other table changes, so no other digest does.

The downgrade drops the table and its digests.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

from scandb.maintenance.digests import record_table_digests, store_folder
from scandb.quality import fill_stored

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "neuron_quality",
        sa.Column("scan_key", sa.String, primary_key=True, nullable=False),
        sa.Column("neuron_idx", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("tier", sa.String, primary_key=True),
        sa.Column("n_repeats", sa.Integer, nullable=False),
        sa.Column("oracle_correlation", sa.Double),
        sa.Column("oracle_correlation_conservative", sa.Double),
        sa.Column("explainable_variance", sa.Double),
        sa.Column("snr", sa.Double),
    )
    conn = op.get_bind().connection.driver_connection
    folder = store_folder(conn)
    for (scan_key,) in conn.execute("SELECT scan_key FROM scans ORDER BY 1").fetchall():
        fill_stored(conn, folder, scan_key)
    record_table_digests(conn, ["neuron_quality"])


def downgrade() -> None:
    op.execute("DELETE FROM scan_digests WHERE part = 'neuron_quality'")
    op.drop_table("neuron_quality")
