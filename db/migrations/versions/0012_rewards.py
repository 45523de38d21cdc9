"""rewards: stamp cards, a catalogue with vouchers, discounts, gifts and charities

Revision ID: 0012_rewards
Revises: 0011_ledger_statement_triggers
Create Date: 2026-12-05 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from db.migrate import earlier_migration

revision: str = "0012_rewards"
down_revision: str | None = "0011_ledger_statement_triggers"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_ACCOUNT_KINDS = "('member', 'partner_issued', 'partner_redeemed', 'program', 'breakage')"
# `stamps`: a member's stamps on one card (unit stamps:<card>); `stamp_pool`: where a card's
# stamps come from and go back to when the card fills or its stamps lapse.
ACCOUNT_KINDS = (
    "('member', 'stamps', 'partner_issued', 'partner_redeemed', 'program', 'breakage',"
    " 'stamp_pool')"
)
OLD_TX_KINDS = "('earn', 'redeem', 'reverse', 'expire', 'referral', 'welcome', 'adjust')"
TX_KINDS = (
    "('earn', 'redeem', 'reverse', 'expire', 'referral', 'welcome', 'adjust', 'stamp',"
    " 'card_filled', 'stamps_lapsed', 'voucher', 'gift', 'donation')"
)

# ledger_sale as 0011 made it, reading the member's wallet by its kind ('member') now that a
# member also has stamps accounts: the one change to its text.
_WALLET_JOIN = "FROM members AS mm JOIN accounts AS w ON w.member_id = mm.id\n"


def _sale_before() -> str:
    return str(earlier_migration("0011_ledger_statement_triggers").LEDGER_SALE)


def _sale_by_wallet_kind() -> str:
    before = _sale_before()
    assert _WALLET_JOIN in before
    return before.replace(_WALLET_JOIN, _WALLET_JOIN.replace("\n", " AND w.kind = 'member'\n"))


def _replace_check(table: str, name: str, condition: str) -> None:
    op.drop_constraint(op.f(f"ck_{table}_{name}"), table, type_="check")
    op.create_check_constraint(op.f(f"ck_{table}_{name}"), table, condition)


def upgrade() -> None:
    op.add_column(
        "partners",
        sa.Column("kind", sa.String(length=10), server_default="business", nullable=False),
    )
    op.create_check_constraint(
        op.f("ck_partners_kind"), "partners", "kind IN ('business', 'charity')"
    )

    _replace_check("accounts", "kind", f"kind IN {ACCOUNT_KINDS}")
    _replace_check(
        "accounts", "wallet_not_negative", "kind NOT IN ('member', 'stamps') OR balance >= 0"
    )
    _replace_check(
        "accounts",
        "owner",
        "(kind IN ('member', 'stamps')) = (member_id IS NOT NULL)"
        " AND (kind IN ('partner_issued', 'partner_redeemed')) = (partner_id IS NOT NULL)"
        " AND (kind IN ('stamps', 'stamp_pool')) = (unit <> 'points')",
    )
    op.drop_index("uq_accounts_member", table_name="accounts")
    op.create_index(
        "uq_accounts_member",
        "accounts",
        ["member_id"],
        unique=True,
        postgresql_where="kind = 'member'",
    )
    op.create_index(
        "uq_accounts_member_unit",
        "accounts",
        ["member_id", "unit"],
        unique=True,
        postgresql_where="kind = 'stamps'",
    )
    op.drop_index("uq_accounts_system_kind", table_name="accounts")
    op.create_index(
        "uq_accounts_system_kind",
        "accounts",
        ["kind", "unit"],
        unique=True,
        postgresql_where="member_id IS NULL AND partner_id IS NULL",
    )

    _replace_check("transactions", "kind", f"kind IN {TX_KINDS}")
    # A discount (a tier's money off) is recorded with its sale: `amount` is what the
    # cashier typed, `discount` what was taken off it, `paid` the money paid after points.
    op.add_column("transactions", sa.Column("discount", sa.Numeric(14, 2), nullable=True))
    op.create_check_constraint(
        op.f("ck_transactions_discount_within_amount"),
        "transactions",
        "discount IS NULL OR (discount > 0 AND discount < amount AND paid <= amount - discount)",
    )

    op.create_table(
        "rewards",
        sa.Column("slug", sa.String(length=40), nullable=False),
        sa.Column("issued", sa.BigInteger(), server_default="0", nullable=False),
        sa.CheckConstraint("issued >= 0", name=op.f("ck_rewards_issued_not_negative")),
        sa.PrimaryKeyConstraint("slug", name=op.f("pk_rewards")),
    )
    op.create_table(
        "vouchers",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("code", sa.String(length=12), nullable=False),
        sa.Column("reward", sa.String(length=40), nullable=False),
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.Column("partner_id", sa.BigInteger(), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("funder_id", sa.BigInteger(), nullable=True),
        sa.Column("hold_key", sa.String(length=200), nullable=True),
        sa.Column("source", sa.String(length=12), nullable=False),
        sa.Column("source_tx_id", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.String(length=10), server_default="open", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("staff_id", sa.BigInteger(), nullable=True),
        sa.Column("transaction_id", sa.BigInteger(), nullable=True),
        sa.CheckConstraint("points >= 0", name=op.f("ck_vouchers_points_not_negative")),
        sa.CheckConstraint(
            "status IN ('open', 'claimed', 'expired', 'voided')", name=op.f("ck_vouchers_status")
        ),
        sa.CheckConstraint(
            "source IN ('catalogue', 'stamp_card', 'promotion')", name=op.f("ck_vouchers_source")
        ),
        sa.CheckConstraint(
            "(source = 'catalogue') = (hold_key IS NOT NULL)"
            " AND (source = 'catalogue' OR funder_id IS NOT NULL OR points = 0)",
            name=op.f("ck_vouchers_backing"),
        ),
        sa.CheckConstraint(
            "(status = 'open') = (resolved_at IS NULL)", name=op.f("ck_vouchers_resolution")
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_vouchers_member_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["partners.id"], name=op.f("fk_vouchers_partner_id_partners")
        ),
        sa.ForeignKeyConstraint(
            ["funder_id"], ["partners.id"], name=op.f("fk_vouchers_funder_id_partners")
        ),
        sa.ForeignKeyConstraint(
            ["source_tx_id"],
            ["transactions.id"],
            name=op.f("fk_vouchers_source_tx_id_transactions"),
        ),
        sa.ForeignKeyConstraint(
            ["staff_id"], ["staff.id"], name=op.f("fk_vouchers_staff_id_staff")
        ),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["transactions.id"],
            name=op.f("fk_vouchers_transaction_id_transactions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vouchers")),
        sa.UniqueConstraint("code", name=op.f("uq_vouchers_code")),
        sa.UniqueConstraint("hold_key", name=op.f("uq_vouchers_hold_key")),
    )
    op.create_index(
        "ix_vouchers_open_member", "vouchers", ["member_id"], postgresql_where="status = 'open'"
    )
    op.create_index(
        "ix_vouchers_open_expiry", "vouchers", ["expires_at"], postgresql_where="status = 'open'"
    )
    op.create_index("ix_vouchers_reward_member", "vouchers", ["reward", "member_id"])
    op.create_table(
        "gifts",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("code", sa.String(length=24), nullable=False),
        sa.Column("giver_id", sa.BigInteger(), nullable=False),
        sa.Column("receiver_id", sa.BigInteger(), nullable=True),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("hold_key", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=10), server_default="open", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("transaction_id", sa.BigInteger(), nullable=True),
        sa.CheckConstraint("points > 0", name=op.f("ck_gifts_points_positive")),
        sa.CheckConstraint(
            "status IN ('open', 'accepted', 'returned')", name=op.f("ck_gifts_status")
        ),
        sa.CheckConstraint(
            "(status = 'accepted') = (receiver_id IS NOT NULL AND transaction_id IS NOT NULL)"
            " AND (status = 'open') = (resolved_at IS NULL)",
            name=op.f("ck_gifts_resolution"),
        ),
        sa.CheckConstraint(
            "receiver_id IS NULL OR receiver_id <> giver_id", name=op.f("ck_gifts_not_to_oneself")
        ),
        sa.ForeignKeyConstraint(
            ["giver_id"], ["members.id"], name=op.f("fk_gifts_giver_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["receiver_id"], ["members.id"], name=op.f("fk_gifts_receiver_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["transactions.id"],
            name=op.f("fk_gifts_transaction_id_transactions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gifts")),
        sa.UniqueConstraint("code", name=op.f("uq_gifts_code")),
        sa.UniqueConstraint("hold_key", name=op.f("uq_gifts_hold_key")),
    )
    op.create_index("ix_gifts_giver_created", "gifts", ["giver_id", "created_at"])
    op.create_index(
        "ix_gifts_open_expiry", "gifts", ["expires_at"], postgresql_where="status = 'open'"
    )
    op.execute(_sale_by_wallet_kind())


def downgrade() -> None:
    op.execute(_sale_before())
    op.drop_index("ix_gifts_open_expiry", table_name="gifts", postgresql_where="status = 'open'")
    op.drop_index("ix_gifts_giver_created", table_name="gifts")
    op.drop_table("gifts")
    op.drop_index("ix_vouchers_reward_member", table_name="vouchers")
    op.drop_index(
        "ix_vouchers_open_expiry", table_name="vouchers", postgresql_where="status = 'open'"
    )
    op.drop_index(
        "ix_vouchers_open_member", table_name="vouchers", postgresql_where="status = 'open'"
    )
    op.drop_table("vouchers")
    op.drop_table("rewards")
    op.drop_constraint(
        op.f("ck_transactions_discount_within_amount"), "transactions", type_="check"
    )
    op.drop_column("transactions", "discount")
    _replace_check("transactions", "kind", f"kind IN {OLD_TX_KINDS}")
    op.drop_index("uq_accounts_system_kind", table_name="accounts")
    op.create_index(
        "uq_accounts_system_kind",
        "accounts",
        ["kind"],
        unique=True,
        postgresql_where="member_id IS NULL AND partner_id IS NULL",
    )
    op.drop_index("uq_accounts_member_unit", table_name="accounts")
    op.drop_index("uq_accounts_member", table_name="accounts")
    op.create_index(
        "uq_accounts_member",
        "accounts",
        ["member_id"],
        unique=True,
        postgresql_where="member_id IS NOT NULL",
    )
    _replace_check(
        "accounts",
        "owner",
        "(kind = 'member') = (member_id IS NOT NULL)"
        " AND (kind IN ('partner_issued', 'partner_redeemed')) = (partner_id IS NOT NULL)",
    )
    _replace_check("accounts", "wallet_not_negative", "kind <> 'member' OR balance >= 0")
    _replace_check("accounts", "kind", f"kind IN {OLD_ACCOUNT_KINDS}")
    op.drop_constraint(op.f("ck_partners_kind"), "partners", type_="check")
    op.drop_column("partners", "kind")
