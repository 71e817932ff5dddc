"""Fast paths: per-scan response matrices on disk, and per-(trial, area, layer) sums.

- response_matrices: where each scan's (n_trials, n_neurons) float32 matrix lives;
  scans ingested before this revision have none, and are read from SQL instead.
- area_responses: the sum and count of responses per trial and (area, layer), so the mean
  response per area across scans is a small aggregate instead of a scan of every value.
  Filled here for scans already in the database.
- responses.image_id: each scan's responses are inserted sorted by image, so DuckDB skips
  the row groups of other images when a query filters responses by image_id.
- responses_long redefined as unnest + join on neuron_idx: the first definition indexed
  every trial's list once per neuron, minutes per full-size scan (BENCHMARKS.md, Numbers
  behind the code: responses_long).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

from scandb.catalog.views import create_responses_long

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("responses", sa.Column("image_id", sa.BigInteger))
    op.execute("UPDATE responses r SET image_id = t.image_id FROM trials t "
               "WHERE t.scan_key = r.scan_key AND t.trial_id = r.trial_id")
    op.create_table(
        "response_matrices",
        sa.Column("scan_key", sa.String, primary_key=True),
        sa.Column("path", sa.String, nullable=False),
        sa.Column("n_trials", sa.Integer, nullable=False),
        sa.Column("n_neurons", sa.Integer, nullable=False),
    )
    op.create_table(
        "area_responses",
        sa.Column("scan_key", sa.String, nullable=False),
        sa.Column("trial_id", sa.Integer, nullable=False),
        sa.Column("area", sa.String),
        sa.Column("layer", sa.String),
        sa.Column("n_neurons", sa.Integer, nullable=False),
        sa.Column("response_sum", sa.Double, nullable=False),
    )
    op.execute(create_responses_long("0003"))
    op.execute("""
        INSERT INTO area_responses
        SELECT r.scan_key, r.trial_id, n.area, n.layer, count(*), sum(r.response[n.neuron_idx + 1])
        FROM responses r JOIN neurons n USING (scan_key)
        GROUP BY ALL
    """)


def downgrade() -> None:
    op.execute(create_responses_long("0002"))
    op.drop_table("area_responses")
    op.drop_table("response_matrices")
    op.drop_column("responses", "image_id")
