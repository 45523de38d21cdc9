"""discounts: a sale records the discount of the member's tier (ledger_sale checks it)

Revision ID: 0014_discounts
Revises: 0013_stamps
Create Date: 2026-12-06 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from db.migrate import earlier_migration

revision: str = "0014_discounts"
down_revision: str | None = "0013_stamps"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_SIGNATURE = (
    "ledger_sale(bigint, text, text, text, text, bigint, numeric, numeric, text, timestamptz,"
    " bigint, text[], bigint[], timestamptz, numeric, text, timestamptz)"
)
NEW_SIGNATURE = OLD_SIGNATURE.removesuffix(")") + ", numeric, numeric[])"

# ledger_sale as 0012 left it (0011's, reading the wallet by kind), plus the sale's discount: `p_discount` is the money off the till
# showed the cashier, `p_discounts` the discount the same amount gets at each tier of
# `p_tiers` (as `p_earned` gives the points). The transaction row records the discount, and
# the sale is refused (constraint name `discount_shown`) when the member's tier, read here,
# gives another discount than the one shown. A sale without a discount passes 0 and zeros.
LEDGER_SALE = """
CREATE OR REPLACE FUNCTION ledger_sale(
    p_member bigint, p_slug text, p_kind text, p_key text, p_digest text, p_staff bigint,
    p_amount numeric, p_paid numeric, p_receipt text, p_now timestamptz, p_redeem bigint,
    p_tiers text[], p_earned bigint[], p_expires timestamptz, p_referral_min numeric,
    p_post_hold text, p_since timestamptz, p_discount numeric, p_discounts numeric[])
RETURNS TABLE (id bigint, telegram_id bigint, card_number text, first_name text,
               language text, tier text, marketing_consent boolean, referred_by_id bigint,
               wallet_id bigint, balance bigint, joined_at timestamptz, partner_id bigint,
               partner_slug text, partner_name text, issued_id bigint, redeemed_id bigint,
               tx_id bigint, posted boolean, earned bigint, spend numeric)
LANGUAGE plpgsql AS $$
DECLARE
    m record;
    v_tx bigint;
    v_earned bigint;
    v_balance bigint;
    v_spend numeric;
    v_accounts bigint[];
    v_amounts bigint[];
    r record;
BEGIN
    -- The member row before any account (see lock_members): a deletion under way is
    -- waited for, and then the member is no longer found.
    -- With the partner and its accounts in the same statement (NULL when it is not there).
    SELECT mm.id, mm.telegram_id, mm.card_number, mm.first_name, mm.language, mm.tier,
           mm.marketing_consent, mm.referred_by_id, w.id AS wallet_id, w.balance, mm.joined_at,
           p.id AS partner_id, p.slug, p.name, p.issued_id, p.redeemed_id
    INTO m
    FROM members AS mm JOIN accounts AS w ON w.member_id = mm.id AND w.kind = 'member'
    LEFT JOIN LATERAL (
        SELECT pp.id, pp.slug, pp.name, issued.id AS issued_id, redeemed.id AS redeemed_id
        FROM partners AS pp
        JOIN accounts AS issued
            ON issued.partner_id = pp.id AND issued.kind = 'partner_issued'
        JOIN accounts AS redeemed
            ON redeemed.partner_id = pp.id AND redeemed.kind = 'partner_redeemed'
        WHERE pp.slug = p_slug AND pp.active
    ) AS p ON true
    WHERE mm.id = p_member AND mm.deleted_at IS NULL
    FOR KEY SHARE OF mm;
    IF m.id IS NOT NULL AND m.partner_id IS NOT NULL THEN
        INSERT INTO transactions (kind, idempotency_key, fingerprint, member_id, partner_id,
                                  staff_id, amount, paid, receipt, created_at, discount)
        VALUES (p_kind, p_key, p_digest, m.id, m.partner_id, p_staff, p_amount, p_paid, p_receipt,
                p_now, nullif(p_discount, 0))
        ON CONFLICT (idempotency_key) DO NOTHING
        RETURNING transactions.id INTO v_tx;
    END IF;
    -- The discount the till showed must be the one of the tier read here (the tier the sale
    -- earns at), else nothing is written: the statement fails. Checked after the insert,
    -- so that a replay (the key posted already, perhaps by the very sale that moved the
    -- member up a tier) still finds its sale instead of a refusal.
    IF v_tx IS NOT NULL AND p_discount IS DISTINCT FROM
        coalesce(p_discounts[array_position(p_tiers, m.tier::text)], p_discounts[1], 0)
    THEN
        RAISE EXCEPTION 'member % is at tier %, whose discount is not the % shown',
            m.id, m.tier, p_discount
            USING ERRCODE = 'check_violation', CONSTRAINT = 'discount_shown';
    END IF;
    IF v_tx IS NOT NULL AND NOT (m.referred_by_id IS NOT NULL AND p_amount >= p_referral_min)
    THEN
        v_earned := coalesce(p_earned[array_position(p_tiers, m.tier::text)], p_earned[1]);
        IF p_since IS NOT NULL THEN
            SELECT coalesce(sum(CASE WHEN t.kind = 'reverse' THEN -t.paid ELSE t.paid END), 0)
            INTO v_spend
            FROM transactions AS t
            WHERE t.member_id = m.id AND t.kind IN ('earn', 'redeem', 'reverse')
              AND t.created_at > p_since;
        END IF;
        v_accounts := ARRAY[m.wallet_id, m.wallet_id];
        v_amounts := ARRAY[-p_redeem, v_earned];
        IF p_redeem <> 0 THEN
            v_accounts := v_accounts || m.redeemed_id;
            v_amounts := v_amounts || p_redeem;
        END IF;
        IF v_earned <> 0 THEN
            v_accounts := v_accounts || m.issued_id;
            v_amounts := v_amounts || -v_earned;
        END IF;
        -- The redeemed points come from the lots the member had, then the earned lot.
        SELECT * INTO r FROM ledger_post(
            v_tx, p_post_hold, v_accounts, v_amounts, NULL,
            ARRAY[m.id, m.id], ARRAY[-p_redeem, v_earned], NULL, NULL, NULL,
            ARRAY[NULL, p_now]::timestamptz[], ARRAY[NULL, p_expires]::timestamptz[]);
        v_balance := r.posted_balances[array_position(r.posted_accounts, m.wallet_id)];
    END IF;
    RETURN QUERY SELECT m.id, m.telegram_id, m.card_number::text, m.first_name::text,
        m.language::text, m.tier::text, m.marketing_consent, m.referred_by_id, m.wallet_id,
        coalesce(v_balance, m.balance), m.joined_at, m.partner_id, m.slug::text, m.name::text,
        m.issued_id, m.redeemed_id, v_tx, v_balance IS NOT NULL, v_earned, v_spend;
END $$
"""


def upgrade() -> None:
    # The discount the cashier was shown on a redemption request, posted when the member
    # confirms (checked against their tier then, as any sale's).
    op.add_column(
        "redemption_requests",
        sa.Column("discount_percent", sa.Numeric(5, 2), server_default="0", nullable=False),
    )
    op.create_check_constraint(
        op.f("ck_redemption_requests_discount_percent"),
        "redemption_requests",
        "discount_percent >= 0 AND discount_percent < 100",
    )
    op.execute(f"DROP FUNCTION {OLD_SIGNATURE}")
    op.execute(LEDGER_SALE)


def downgrade() -> None:
    op.execute(f"DROP FUNCTION {NEW_SIGNATURE}")
    op.execute(
        earlier_migration("0012_rewards")._sale_by_wallet_kind()
    )  # ledger_sale as 0012 left it
    op.drop_constraint(
        op.f("ck_redemption_requests_discount_percent"), "redemption_requests", type_="check"
    )
    op.drop_column("redemption_requests", "discount_percent")
