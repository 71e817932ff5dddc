"""Views and macros for shell users: plain SQL, so they work in the DuckDB shell.

- trials_full: trials with behavior, pupil position and the image's path and shape;
- scan_images: the images each scan shows (images are shared, so they carry no scan key);
- responses_long: one row per (trial, neuron) with the neuron's area and layer;
- response_at(response, neuron_idx): one neuron's value, with a 0-based index.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from alembic import op

from scandb.catalog.views import CREATE_RESPONSE_AT, CREATE_SCAN_IMAGES, create_responses_long, create_trials_full

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(create_trials_full("0002"))
    op.execute(CREATE_SCAN_IMAGES)
    op.execute(CREATE_RESPONSE_AT)
    op.execute(create_responses_long("0002"))


def downgrade() -> None:
    op.execute("DROP VIEW responses_long")
    op.execute("DROP MACRO response_at")
    op.execute("DROP VIEW scan_images")
    op.execute("DROP VIEW trials_full")
