"""club: memberships, their payments (Stars, card, till), the club's welcome points, payments
that bought nothing

Revision ID: 0021_club
Revises: 0020_sale_speed
Create Date: 2026-12-08 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021_club"
down_revision: str | None = "0020_sale_speed"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_TX_KINDS = (
    "('earn', 'redeem', 'reverse', 'expire', 'referral', 'welcome', 'adjust', 'stamp',"
    " 'card_filled', 'stamps_lapsed', 'voucher', 'gift', 'donation', 'promotion')"
)
TX_KINDS = OLD_TX_KINDS.removesuffix(")") + ", 'club')"


def _replace_check(table: str, name: str, condition: str) -> None:
    op.drop_constraint(op.f(f"ck_{table}_{name}"), table, type_="check")
    op.create_check_constraint(op.f(f"ck_{table}_{name}"), table, condition)


def upgrade() -> None:
    _replace_check("transactions", "kind", f"kind IN {TX_KINDS}")
    op.add_column(
        "rewarded_identities",
        sa.Column("club", sa.Boolean(), server_default="false", nullable=False),
    )
    op.create_table(
        "club_memberships",
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.Column("joined_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("renews", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("subscription_charge_id", sa.String(length=200), nullable=True),
        sa.Column("subscription_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("welcomed", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("reminded_for", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lapse_told_for", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_club_memberships_member_id_members")
        ),
        sa.PrimaryKeyConstraint("member_id", name=op.f("pk_club_memberships")),
    )
    op.create_index("ix_club_memberships_ends_at", "club_memberships", ["ends_at"])
    op.create_table(
        "club_payments",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("charge_id", sa.String(length=200), nullable=False),
        sa.Column("provider_charge_id", sa.String(length=200), nullable=True),
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.Column("method", sa.String(length=8), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount", sa.Numeric(14, 2), nullable=False),
        sa.Column("partner_id", sa.BigInteger(), nullable=True),
        sa.Column("staff_id", sa.BigInteger(), nullable=True),
        sa.Column("recurring", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("joined", sa.Boolean(), nullable=False),
        sa.Column("welcome_points", sa.Integer(), server_default="0", nullable=False),
        sa.Column("period_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("period_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("refunded_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "method IN ('stars', 'card', 'till')", name=op.f("ck_club_payments_method")
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_club_payments_amount_positive")),
        sa.CheckConstraint(
            "(method = 'till') = (partner_id IS NOT NULL)",
            name=op.f("ck_club_payments_till_partner"),
        ),
        sa.CheckConstraint(
            "(method = 'stars') = (currency = 'XTR')", name=op.f("ck_club_payments_stars_currency")
        ),
        sa.CheckConstraint("period_until > period_from", name=op.f("ck_club_payments_period")),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_club_payments_member_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["partners.id"], name=op.f("fk_club_payments_partner_id_partners")
        ),
        sa.ForeignKeyConstraint(
            ["staff_id"], ["staff.id"], name=op.f("fk_club_payments_staff_id_staff")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_club_payments")),
        sa.UniqueConstraint("charge_id", name=op.f("uq_club_payments_charge_id")),
    )
    op.create_index("ix_club_payments_created_at", "club_payments", ["created_at"])
    op.create_index("ix_club_payments_member_id", "club_payments", ["member_id"])
    op.create_table(
        "club_unclaimed",
        sa.Column("charge_id", sa.String(length=200), nullable=False),
        sa.Column("method", sa.String(length=8), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount", sa.Numeric(14, 2), nullable=False),
        sa.Column("reason", sa.String(length=20), nullable=False),
        sa.Column("refunded", sa.Boolean(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("method IN ('stars', 'card')", name=op.f("ck_club_unclaimed_method")),
        sa.CheckConstraint("amount > 0", name=op.f("ck_club_unclaimed_amount_positive")),
        sa.PrimaryKeyConstraint("charge_id", name=op.f("pk_club_unclaimed")),
    )


def downgrade() -> None:
    op.drop_table("club_unclaimed")
    op.drop_table("club_payments")
    op.drop_table("club_memberships")
    op.drop_column("rewarded_identities", "club")
    _replace_check("transactions", "kind", f"kind IN {OLD_TX_KINDS}")
