"""transactions by the transaction they relate to (a sale's stamps, promotions and
invitation reward; a refund's reversals of them): found by index, not by a scan

Revision ID: 0019_promotion_indexes
Revises: 0018_personal_offers
Create Date: 2026-12-10 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019_promotion_indexes"
down_revision: str | None = "0018_personal_offers"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Most transactions relate to none: the index holds only those that do.
    op.create_index(
        "ix_transactions_related_id",
        "transactions",
        ["related_id"],
        postgresql_where=sa.text("related_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_transactions_related_id", table_name="transactions")
