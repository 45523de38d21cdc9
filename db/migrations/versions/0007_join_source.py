"""members.source: where a member joined from (a poster, a campaign link, a referral)

Revision ID: 0007_join_source
Revises: 0006_outbox
Create Date: 2026-12-02 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_join_source"
down_revision: str | None = "0006_outbox"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # NULL: joined with a plain /start (or before sources were recorded).
    op.add_column("members", sa.Column("source", sa.String(length=60), nullable=True))


def downgrade() -> None:
    op.drop_column("members", "source")
