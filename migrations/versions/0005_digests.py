"""Per-scan content digests, and responses_long filtered by image reads only that image.

- scan_digests: each scan's rows (table by table) and response matrix file, hashed as
  ingest records them (scandb/maintenance/digests.py), so ``scandb verify`` finds any row
  or file changed since. Filled here for scans already in the database: what they hold
  now is taken as their content.
- responses_long takes image_id from responses (see scandb/catalog/views.py). Rows of
  scans ingested before revision 0003 stay in trial order (this revision does not rewrite
  them): such scans get the image-sorted layout only when removed and ingested again.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

from scandb.catalog.views import create_responses_long
from scandb.maintenance.digests import database_folder, record_all_digests
from scandb.store.folder import Folder

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "scan_digests",
        sa.Column("scan_key", sa.String, primary_key=True, nullable=False),
        sa.Column("part", sa.String, primary_key=True),
        sa.Column("method", sa.String, nullable=False),
        sa.Column("digest", sa.String, nullable=False),
        sa.Column("n_rows", sa.BigInteger, nullable=False),
    )
    op.execute(create_responses_long("0005"))
    record_all_digests(*_rows_and_files())


def downgrade() -> None:
    op.execute(create_responses_long("0003"))
    op.drop_table("scan_digests")


def _rows_and_files():
    """The connection, and the folder this revision's store paths are relative to."""
    conn = op.get_bind().connection.driver_connection
    return conn, Folder(database_folder(conn))
