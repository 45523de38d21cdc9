"""personal offers in the campaign outbox: a row is a campaign's message or a personal
promotion's (its promotion and what to say), delivered at the same global rate

Revision ID: 0018_personal_offers
Revises: 0017_promotion_awards
Create Date: 2026-12-08 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0018_personal_offers"
down_revision: str | None = "0017_promotion_awards"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("outbox", sa.Column("promotion", sa.String(length=40), nullable=True))
    op.add_column(
        "outbox",
        sa.Column("params", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    )
    op.alter_column("outbox", "campaign_id", existing_type=sa.BigInteger(), nullable=True)
    op.create_check_constraint(
        op.f("ck_outbox_campaign_or_promotion"),
        "outbox",
        "(campaign_id IS NULL) <> (promotion IS NULL)",
    )


def downgrade() -> None:
    op.execute("DELETE FROM outbox WHERE campaign_id IS NULL")
    op.drop_constraint(op.f("ck_outbox_campaign_or_promotion"), "outbox", type_="check")
    op.alter_column("outbox", "campaign_id", existing_type=sa.BigInteger(), nullable=False)
    op.drop_column("outbox", "params")
    op.drop_column("outbox", "promotion")
