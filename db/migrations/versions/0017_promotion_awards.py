"""promotions at the till: what each sale got (promotion_awards); longer use keys

Revision ID: 0017_promotion_awards
Revises: 0015_promotions
Create Date: 2026-12-08 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017_promotion_awards"
down_revision: str | None = "0015_promotions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A use key is the promotion's slug and the partner's ("new-partner@bakery"): two slugs
    # of up to 30 characters and an "@".
    op.alter_column(
        "promotion_uses",
        "promotion",
        type_=sa.String(length=80),
        existing_type=sa.String(length=40),
        existing_nullable=False,
    )
    # What each promotion gave one sale, in the documented order (`position`), so a replay
    # says what the posting said and a refund finds what to take back: the points (posted
    # as the `promotion` transaction `transaction_id`), the stamps, the voucher.
    op.create_table(
        "promotion_awards",
        sa.Column("sale_id", sa.BigInteger(), nullable=False),
        sa.Column("promotion", sa.String(length=30), nullable=False),
        sa.Column("position", sa.SmallInteger(), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("stamps", sa.Integer(), nullable=False),
        sa.Column("transaction_id", sa.BigInteger(), nullable=True),
        sa.Column("voucher_id", sa.BigInteger(), nullable=True),
        sa.CheckConstraint(
            "points >= 0 AND stamps >= 0", name=op.f("ck_promotion_awards_not_negative")
        ),
        sa.CheckConstraint(
            "(points > 0) = (transaction_id IS NOT NULL)",
            name=op.f("ck_promotion_awards_points_posted"),
        ),
        sa.ForeignKeyConstraint(
            ["sale_id"], ["transactions.id"], name=op.f("fk_promotion_awards_sale_id_transactions")
        ),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["transactions.id"],
            name=op.f("fk_promotion_awards_transaction_id_transactions"),
        ),
        sa.ForeignKeyConstraint(
            ["voucher_id"], ["vouchers.id"], name=op.f("fk_promotion_awards_voucher_id_vouchers")
        ),
        sa.PrimaryKeyConstraint("sale_id", "promotion", name=op.f("pk_promotion_awards")),
    )


def downgrade() -> None:
    op.drop_table("promotion_awards")
    op.alter_column(
        "promotion_uses",
        "promotion",
        type_=sa.String(length=40),
        existing_type=sa.String(length=80),
        existing_nullable=False,
    )
