"""promotions: their uses per member, personal offers told, members' birthdays

Revision ID: 0015_promotions
Revises: 0014_discounts
Create Date: 2026-12-07 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015_promotions"
down_revision: str | None = "0014_discounts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_TX_KINDS = (
    "('earn', 'redeem', 'reverse', 'expire', 'referral', 'welcome', 'adjust', 'stamp',"
    " 'card_filled', 'stamps_lapsed', 'voucher', 'gift', 'donation')"
)
TX_KINDS = OLD_TX_KINDS.removesuffix(")") + ", 'promotion')"
OLD_BACKING = (
    "(source = 'catalogue') = (hold_key IS NOT NULL)"
    " AND (source = 'catalogue' OR funder_id IS NOT NULL OR points = 0)"
)
# A promotion's voucher may be funded by the program itself (no funder partner).
BACKING = (
    "(source = 'catalogue') = (hold_key IS NOT NULL)"
    " AND (source IN ('catalogue', 'promotion') OR funder_id IS NOT NULL OR points = 0)"
)


def _replace_check(table: str, name: str, condition: str) -> None:
    op.drop_constraint(op.f(f"ck_{table}_{name}"), table, type_="check")
    op.create_check_constraint(op.f(f"ck_{table}_{name}"), table, condition)


def upgrade() -> None:
    _replace_check("transactions", "kind", f"kind IN {TX_KINDS}")
    _replace_check("vouchers", "backing", BACKING)
    op.add_column("members", sa.Column("birthday", sa.Date(), nullable=True))
    op.add_column(
        "members", sa.Column("birthday_set_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.create_table(
        "promotion_uses",
        sa.Column("promotion", sa.String(length=40), nullable=False),
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.Column("uses", sa.Integer(), nullable=False),
        sa.CheckConstraint("uses > 0", name=op.f("ck_promotion_uses_uses_positive")),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_promotion_uses_member_id_members")
        ),
        sa.PrimaryKeyConstraint("promotion", "member_id", name=op.f("pk_promotion_uses")),
    )
    op.create_table(
        "promotion_notices",
        sa.Column("promotion", sa.String(length=40), nullable=False),
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.Column("occasion", sa.String(length=40), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_promotion_notices_member_id_members")
        ),
        sa.PrimaryKeyConstraint(
            "promotion", "member_id", "occasion", name=op.f("pk_promotion_notices")
        ),
    )


def downgrade() -> None:
    op.drop_table("promotion_notices")
    op.drop_table("promotion_uses")
    op.drop_column("members", "birthday_set_at")
    op.drop_column("members", "birthday")
    _replace_check("vouchers", "backing", OLD_BACKING)
    _replace_check("transactions", "kind", f"kind IN {OLD_TX_KINDS}")
