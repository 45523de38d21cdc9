"""ledger: a sale in one statement (ledger_sale)

Revision ID: 0010_ledger_speed
Revises: 0009_ledger_writer
Create Date: 2026-12-04 10:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010_ledger_speed"
down_revision: str | None = "0009_ledger_writer"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A sale at the till in one round trip (db/usecases/purchases.py post_purchase): what took
# one statement to read the member and the partner and open the transaction row, and a
# second to post it, is one call. The posting itself is ledger_post's (still the one writer
# of entries and lots, with every trigger and constraint behind it); this function only
# chooses the legs and lots the use case chose before:
#   wallet -redeem, partner_redeemed +redeem, partner_issued -earned, wallet +earned;
#   lots: the redeemed points first (from the lots the member had), then the earned lot.
# `p_earned[i]` is what the sale earns at tier `p_tiers[i]` (computed by the program's
# rules in Python; an unknown tier earns as the first). Nothing is posted (posted = false)
# when the member or partner is missing (their columns are NULL), when the key was already
# taken (tx_id NULL: a replay), or when the sale may pay an invitation reward (the member
# was invited and amount >= p_referral_min): then the row is opened and the caller posts
# it, as before, with the reward's legs. `spend` is the member's trailing spend since
# `p_since` (NULL: not read), after the posting.
LEDGER_SALE = """
CREATE FUNCTION ledger_sale(
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


def upgrade() -> None:
    op.execute(LEDGER_SALE)


def downgrade() -> None:
    op.execute(
        "DROP FUNCTION ledger_sale(bigint, text, text, text, text, bigint, numeric, numeric,"
        " text, timestamptz, bigint, text[], bigint[], timestamptz, numeric, text, timestamptz)"
    )
