"""stamps: the lapse reminders of stamp cards, once per card's cycle

Revision ID: 0013_stamps
Revises: 0012_rewards
Create Date: 2026-12-06 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_stamps"
down_revision: str | None = "0012_rewards"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# A member is told once per card's cycle that its stamps are about to lapse: the cycle is
# named by the transaction that started it (the card's last fill or lapse; 0 for the first
# card), so a new card can be reminded again and a job run twice reminds once.
def upgrade() -> None:
    op.create_table(
        "stamp_reminders",
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("cycle", sa.BigInteger(), nullable=False),
        sa.Column("reminded_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_stamp_reminders_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("account_id", "cycle", name=op.f("pk_stamp_reminders")),
    )


def downgrade() -> None:
    op.drop_table("stamp_reminders")
