"""responses_long with the trial's withheld flags.

- responses_long gains ``responses_withheld`` and ``behavior_withheld`` from trials (see
  scandb/catalog/views.py), so a mean over it can skip the zeros a competition release
  wrote in place of withheld test responses. No table changes, so no digest does.

Revision ID: 0010
Revises: 0008
Create Date: 2026-12-02
"""

from alembic import op

from scandb.catalog.views import create_responses_long

revision = "0010"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(create_responses_long("0010"))


def downgrade() -> None:
    op.execute(create_responses_long("0005"))
