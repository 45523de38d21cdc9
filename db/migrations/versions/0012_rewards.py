"""rewards: stamp cards, a catalogue with vouchers, discounts, gifts and charities

Revision ID: 0012_rewards
Revises: 0010_ledger_speed
Create Date: 2026-12-05 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_rewards"
down_revision: str | None = "0010_ledger_speed"
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

# ledger_sale as in 0010, reading the member's wallet (kind 'member') now that a member also
# has stamps accounts.
LEDGER_SALE = """
CREATE OR REPLACE FUNCTION ledger_sale(
    p_member bigint, p_slug text, p_kind text, p_key text, p_digest text, p_staff bigint,
    p_amount numeric, p_paid numeric, p_receipt text, p_now timestamptz, p_redeem bigint,
    p_tiers text[], p_earned bigint[], p_expires timestamptz, p_referral_min numeric,
    p_post_hold text, p_since timestamptz)
RETURNS TABLE (id bigint, telegram_id bigint, card_number text, first_name text,
               language text, tier text, marketing_consent boolean, referred_by_id bigint,
               wallet_id bigint, balance bigint, joined_at timestamptz, partner_id bigint,
               partner_slug text, partner_name text, issued_id bigint, redeemed_id bigint,
               tx_id bigint, posted boolean, earned bigint, spend numeric)
LANGUAGE plpgsql AS $$
DECLARE
    m record;
    p record;
    v_tx bigint;
    v_earned bigint;
    v_balance bigint;
    v_spend numeric;
    v_head jsonb;
    v_lots jsonb;
    r record;
BEGIN
    -- The member row before any account (see lock_members): a deletion under way is
    -- waited for, and then the member is no longer found.
    SELECT mm.id, mm.telegram_id, mm.card_number, mm.first_name, mm.language, mm.tier,
           mm.marketing_consent, mm.referred_by_id, w.id AS wallet_id, w.balance, mm.joined_at
    INTO m
    FROM members AS mm JOIN accounts AS w ON w.member_id = mm.id AND w.kind = 'member'
    WHERE mm.id = p_member AND mm.deleted_at IS NULL
    FOR KEY SHARE OF mm;
    SELECT pp.id, pp.slug, pp.name, issued.id AS issued_id, redeemed.id AS redeemed_id
    INTO p
    FROM partners AS pp
    JOIN accounts AS issued ON issued.partner_id = pp.id AND issued.kind = 'partner_issued'
    JOIN accounts AS redeemed
        ON redeemed.partner_id = pp.id AND redeemed.kind = 'partner_redeemed'
    WHERE pp.slug = p_slug AND pp.active;
    IF m.id IS NOT NULL AND p.id IS NOT NULL THEN
        INSERT INTO transactions (kind, idempotency_key, fingerprint, member_id, partner_id,
                                  staff_id, amount, paid, receipt, created_at)
        VALUES (p_kind, p_key, p_digest, m.id, p.id, p_staff, p_amount, p_paid, p_receipt,
                p_now)
        ON CONFLICT (idempotency_key) DO NOTHING
        RETURNING transactions.id INTO v_tx;
    END IF;
    IF v_tx IS NOT NULL AND NOT (m.referred_by_id IS NOT NULL AND p_amount >= p_referral_min)
    THEN
        v_earned := coalesce(p_earned[array_position(p_tiers, m.tier::text)], p_earned[1]);
        v_head := jsonb_build_object('id', v_tx);
        IF p_post_hold IS NOT NULL THEN
            v_head := v_head || jsonb_build_object('post_hold', p_post_hold);
        END IF;
        v_lots := '[]'::jsonb;
        IF p_redeem <> 0 THEN
            v_lots := v_lots || jsonb_build_object('member', m.id, 'points', -p_redeem);
        END IF;
        IF v_earned <> 0 THEN
            v_lots := v_lots || jsonb_build_object(
                'member', m.id, 'points', v_earned, 'earned_at', p_now,
                'expires_at', p_expires);
        END IF;
        SELECT * INTO r FROM ledger_post(
            v_head,
            jsonb_build_array(
                jsonb_build_object('account', m.wallet_id, 'amount', -p_redeem),
                jsonb_build_object('account', p.redeemed_id, 'amount', p_redeem),
                jsonb_build_object('account', p.issued_id, 'amount', -v_earned),
                jsonb_build_object('account', m.wallet_id, 'amount', v_earned)),
            v_lots);
        v_balance := r.posted_balances[array_position(r.posted_accounts, m.wallet_id)];
        IF p_since IS NOT NULL THEN
            SELECT coalesce(sum(CASE WHEN t.kind = 'reverse' THEN -t.paid ELSE t.paid END), 0)
            INTO v_spend
            FROM transactions AS t
            WHERE t.member_id = m.id AND t.kind IN ('earn', 'redeem', 'reverse')
              AND t.created_at > p_since;
        END IF;
    END IF;
    RETURN QUERY SELECT m.id, m.telegram_id, m.card_number::text, m.first_name::text,
        m.language::text, m.tier::text, m.marketing_consent, m.referred_by_id, m.wallet_id,
        coalesce(v_balance, m.balance), m.joined_at, p.id, p.slug::text, p.name::text,
        p.issued_id, p.redeemed_id, v_tx, v_balance IS NOT NULL, v_earned, v_spend;
END $$
"""
LEDGER_SALE_BEFORE = """
CREATE OR REPLACE FUNCTION ledger_sale(
    p_member bigint, p_slug text, p_kind text, p_key text, p_digest text, p_staff bigint,
    p_amount numeric, p_paid numeric, p_receipt text, p_now timestamptz, p_redeem bigint,
    p_tiers text[], p_earned bigint[], p_expires timestamptz, p_referral_min numeric,
    p_post_hold text, p_since timestamptz)
RETURNS TABLE (id bigint, telegram_id bigint, card_number text, first_name text,
               language text, tier text, marketing_consent boolean, referred_by_id bigint,
               wallet_id bigint, balance bigint, joined_at timestamptz, partner_id bigint,
               partner_slug text, partner_name text, issued_id bigint, redeemed_id bigint,
               tx_id bigint, posted boolean, earned bigint, spend numeric)
LANGUAGE plpgsql AS $$
DECLARE
    m record;
    p record;
    v_tx bigint;
    v_earned bigint;
    v_balance bigint;
    v_spend numeric;
    v_head jsonb;
    v_lots jsonb;
    r record;
BEGIN
    -- The member row before any account (see lock_members): a deletion under way is
    -- waited for, and then the member is no longer found.
    SELECT mm.id, mm.telegram_id, mm.card_number, mm.first_name, mm.language, mm.tier,
           mm.marketing_consent, mm.referred_by_id, w.id AS wallet_id, w.balance, mm.joined_at
    INTO m
    FROM members AS mm JOIN accounts AS w ON w.member_id = mm.id
    WHERE mm.id = p_member AND mm.deleted_at IS NULL
    FOR KEY SHARE OF mm;
    SELECT pp.id, pp.slug, pp.name, issued.id AS issued_id, redeemed.id AS redeemed_id
    INTO p
    FROM partners AS pp
    JOIN accounts AS issued ON issued.partner_id = pp.id AND issued.kind = 'partner_issued'
    JOIN accounts AS redeemed
        ON redeemed.partner_id = pp.id AND redeemed.kind = 'partner_redeemed'
    WHERE pp.slug = p_slug AND pp.active;
    IF m.id IS NOT NULL AND p.id IS NOT NULL THEN
        INSERT INTO transactions (kind, idempotency_key, fingerprint, member_id, partner_id,
                                  staff_id, amount, paid, receipt, created_at)
        VALUES (p_kind, p_key, p_digest, m.id, p.id, p_staff, p_amount, p_paid, p_receipt,
                p_now)
        ON CONFLICT (idempotency_key) DO NOTHING
        RETURNING transactions.id INTO v_tx;
    END IF;
    IF v_tx IS NOT NULL AND NOT (m.referred_by_id IS NOT NULL AND p_amount >= p_referral_min)
    THEN
        v_earned := coalesce(p_earned[array_position(p_tiers, m.tier::text)], p_earned[1]);
        v_head := jsonb_build_object('id', v_tx);
        IF p_post_hold IS NOT NULL THEN
            v_head := v_head || jsonb_build_object('post_hold', p_post_hold);
        END IF;
        v_lots := '[]'::jsonb;
        IF p_redeem <> 0 THEN
            v_lots := v_lots || jsonb_build_object('member', m.id, 'points', -p_redeem);
        END IF;
        IF v_earned <> 0 THEN
            v_lots := v_lots || jsonb_build_object(
                'member', m.id, 'points', v_earned, 'earned_at', p_now,
                'expires_at', p_expires);
        END IF;
        SELECT * INTO r FROM ledger_post(
            v_head,
            jsonb_build_array(
                jsonb_build_object('account', m.wallet_id, 'amount', -p_redeem),
                jsonb_build_object('account', p.redeemed_id, 'amount', p_redeem),
                jsonb_build_object('account', p.issued_id, 'amount', -v_earned),
                jsonb_build_object('account', m.wallet_id, 'amount', v_earned)),
            v_lots);
        v_balance := r.posted_balances[array_position(r.posted_accounts, m.wallet_id)];
        IF p_since IS NOT NULL THEN
            SELECT coalesce(sum(CASE WHEN t.kind = 'reverse' THEN -t.paid ELSE t.paid END), 0)
            INTO v_spend
            FROM transactions AS t
            WHERE t.member_id = m.id AND t.kind IN ('earn', 'redeem', 'reverse')
              AND t.created_at > p_since;
        END IF;
    END IF;
    RETURN QUERY SELECT m.id, m.telegram_id, m.card_number::text, m.first_name::text,
        m.language::text, m.tier::text, m.marketing_consent, m.referred_by_id, m.wallet_id,
        coalesce(v_balance, m.balance), m.joined_at, p.id, p.slug::text, p.name::text,
        p.issued_id, p.redeemed_id, v_tx, v_balance IS NOT NULL, v_earned, v_spend;
END $$
"""


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
    op.execute(LEDGER_SALE)


def downgrade() -> None:
    op.execute(LEDGER_SALE_BEFORE)
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
