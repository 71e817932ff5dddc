"""Files kept after a removal or replacement in a database file.

- released_files: the store files (images by hash, response matrices by path, meta files by name) a removed or
  replaced scan used and no scan uses any more, with when that happened. They stay on disk
  for readers that started before (a training job's workers), until ``scandb gc --older-than
  DAYS`` deletes those released more than DAYS ago. A lake keeps them through its snapshots
  instead and leaves this table empty. No scan's rows change, so no digest does.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "released_files",
        sa.Column("store", sa.String, nullable=False),
        sa.Column("key", sa.String, nullable=False),
        sa.Column("released_by", sa.String, nullable=False),
        sa.Column("released_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("released_files")
