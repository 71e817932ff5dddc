"""Content digest: scans.content_sha256, over the scan's member names and bytes.

A zip and the folder it unzips to hold the same scan but not the same container bytes:
ingest compares this digest to recognise the same scan in another container. Scans
ingested before this revision have none (NULL); their source sha256 still applies.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("scans", sa.Column("content_sha256", sa.String))


def downgrade() -> None:
    op.drop_column("scans", "content_sha256")
