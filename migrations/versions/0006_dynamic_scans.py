"""Dynamic (video) scans and withheld data.

- trials.n_frames: a dynamic trial's valid length (its first all-NaN response frame);
  NULL for static trials.
- trials.responses_withheld / behavior_withheld: a test-tier trial whose responses are all
  exactly zero (released competition data), a trial whose behavior and pupil position are
  all exactly zero. Filled here for the scans already in the database, whose digests are
  then recorded again (the trials rows changed).
- frame_behavior: a dynamic trial's behavior and pupil position over its T frames.
- area_frame_responses: per dynamic trial and (area, layer), the response sum of each
  valid frame, for SQL over time without reading the responses.
- trials_full keeps trials without a behavior row (dynamic ones) and shows the new columns.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

from scandb.catalog.views import create_trials_full
from scandb.maintenance.digests import database_folder, record_all_digests
from scandb.store.folder import Folder

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

BACKFILL = """
    UPDATE trials t SET
        responses_withheld = coalesce((SELECT t.tier LIKE '%test%'
                                              AND list_min(r.response) = 0 AND list_max(r.response) = 0
                                       FROM responses r
                                       WHERE r.scan_key = t.scan_key AND r.trial_id = t.trial_id), false),
        behavior_withheld = coalesce((SELECT b.pupil_dilation = 0 AND b.pupil_dilation_derivative = 0
                                             AND b.running_speed = 0 AND b.pupil_x = 0 AND b.pupil_y = 0
                                      FROM behavior b
                                      WHERE b.scan_key = t.scan_key AND b.trial_id = t.trial_id), false)
"""


def upgrade() -> None:
    op.execute("DROP VIEW trials_full")
    op.add_column("trials", sa.Column("n_frames", sa.Integer))
    op.add_column("trials", sa.Column("responses_withheld", sa.Boolean))
    op.add_column("trials", sa.Column("behavior_withheld", sa.Boolean))
    op.create_table(
        "frame_behavior",
        sa.Column("scan_key", sa.String, primary_key=True, nullable=False),
        sa.Column("trial_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("pupil_dilation", sa.ARRAY(sa.Double), nullable=False),
        sa.Column("running_speed", sa.ARRAY(sa.Double), nullable=False),
        sa.Column("pupil_x", sa.ARRAY(sa.Double), nullable=False),
        sa.Column("pupil_y", sa.ARRAY(sa.Double), nullable=False),
    )
    op.create_table(
        "area_frame_responses",
        sa.Column("scan_key", sa.String, nullable=False),
        sa.Column("trial_id", sa.Integer, nullable=False),
        sa.Column("area", sa.String),
        sa.Column("layer", sa.String),
        sa.Column("n_neurons", sa.Integer, nullable=False),
        sa.Column("response_sum", sa.ARRAY(sa.Double), nullable=False),
    )
    op.execute(BACKFILL)
    op.execute(create_trials_full("0006"))
    record_all_digests(*_rows_and_files())


def downgrade() -> None:
    op.execute("DROP VIEW trials_full")
    op.drop_table("area_frame_responses")
    op.drop_table("frame_behavior")
    op.drop_column("trials", "behavior_withheld")
    op.drop_column("trials", "responses_withheld")
    op.drop_column("trials", "n_frames")
    op.execute(create_trials_full("0002"))
    record_all_digests(*_rows_and_files())


def _rows_and_files():
    """The connection, and the folder this revision's store paths are relative to."""
    conn = op.get_bind().connection.driver_connection
    return conn, Folder(database_folder(conn))
