"""sale speed: a sale that needs nothing else is its own database transaction

Revision ID: 0020_sale_speed
Revises: 0019_promotion_indexes
Create Date: 2026-12-07 10:00:00
"""

from collections.abc import Sequence

from alembic import op

from db.migrate import earlier_migration

revision: str = "0020_sale_speed"
down_revision: str | None = "0019_promotion_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_SIGNATURE = (
    "ledger_sale(bigint, text, text, text, text, bigint, numeric, numeric, text, timestamptz,"
    " bigint, text[], bigint[], timestamptz, numeric, text, timestamptz, numeric, numeric[])"
)
NEW_SIGNATURE = OLD_SIGNATURE.removesuffix(")") + ", numeric[], boolean)"

# ledger_sale as 0014 left it, with two more arguments and one more result:
# - `p_next_min`, per tier of `p_tiers`, the min_spend of the tier above it (NULL for the
#   top one; Program.next_tier's). The trailing spend is read only when the member's tier
#   has one above it: at the top there is nothing to reach (the use case does not look at
#   the spend then). It is read before the sale's row goes in, plus the sale's own paid
#   part: the same figure (the row counts in the window, as an earn or a redeem made now),
#   and nothing of this sale is written yet when it decides (below).
# - `p_alone`: the sale is sent as its own database transaction (no BEGIN: the server
#   commits the statement), because the use case has nothing to add to it. Then a sale that
#   needs the use case's transaction, one that may pay an invitation reward (the use case
#   opens it) or that reaches the tier above the member's (the use case moves them up),
#   writes nothing and comes back with `deferred` true: the use case sends it again, in a
#   transaction. Whether the tier is reached is only looked at here, `p_next_min` against
#   the spend (the tiers rise strictly); which tier it is, the use case says
#   (Program.tier_for_spend).
LEDGER_SALE = """
CREATE FUNCTION ledger_sale(
    p_member bigint, p_slug text, p_kind text, p_key text, p_digest text, p_staff bigint,
    p_amount numeric, p_paid numeric, p_receipt text, p_now timestamptz, p_redeem bigint,
    p_tiers text[], p_earned bigint[], p_expires timestamptz, p_referral_min numeric,
    p_post_hold text, p_since timestamptz, p_discount numeric, p_discounts numeric[],
    p_next_min numeric[], p_alone boolean)
RETURNS TABLE (id bigint, telegram_id bigint, card_number text, first_name text,
               language text, tier text, marketing_consent boolean, referred_by_id bigint,
               wallet_id bigint, balance bigint, joined_at timestamptz, partner_id bigint,
               partner_slug text, partner_name text, issued_id bigint, redeemed_id bigint,
               tx_id bigint, posted boolean, earned bigint, spend numeric, deferred boolean)
LANGUAGE plpgsql AS $$
DECLARE
    m record;
    v_tx bigint;
    v_earned bigint;
    v_balance bigint;
    v_spend numeric;
    v_tier integer;
    v_referral boolean;
    v_deferred boolean := false;
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
        -- A tier the program file no longer has counts as the lowest (Program.tier).
        v_tier := coalesce(array_position(p_tiers, m.tier::text), 1);
        v_referral := coalesce(m.referred_by_id IS NOT NULL AND p_amount >= p_referral_min,
                               true);
        IF NOT v_referral AND p_since IS NOT NULL AND p_next_min[v_tier] IS NOT NULL THEN
            SELECT coalesce(sum(CASE WHEN t.kind = 'reverse' THEN -t.paid ELSE t.paid END), 0)
                   + p_paid
            INTO v_spend
            FROM transactions AS t
            WHERE t.member_id = m.id AND t.kind IN ('earn', 'redeem', 'reverse')
              AND t.created_at > p_since;
        END IF;
        v_deferred := p_alone AND (v_referral OR coalesce(v_spend >= p_next_min[v_tier], false));
        IF NOT v_deferred THEN
            INSERT INTO transactions (kind, idempotency_key, fingerprint, member_id,
                                      partner_id, staff_id, amount, paid, receipt, created_at,
                                      discount)
            VALUES (p_kind, p_key, p_digest, m.id, m.partner_id, p_staff, p_amount, p_paid,
                    p_receipt, p_now, nullif(p_discount, 0))
            ON CONFLICT (idempotency_key) DO NOTHING
            RETURNING transactions.id INTO v_tx;
        END IF;
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
    IF v_tx IS NOT NULL AND NOT v_referral THEN
        v_earned := coalesce(p_earned[array_position(p_tiers, m.tier::text)], p_earned[1]);
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
        m.issued_id, m.redeemed_id, v_tx, v_balance IS NOT NULL, v_earned,
        CASE WHEN v_balance IS NOT NULL THEN v_spend END, v_deferred;
END $$
"""


# What an account is (its kind, its owner, its unit) is checked when it is written, not on
# every change of its balance: PostgreSQL evaluates every CHECK of a row on every UPDATE of
# it (and reads and plans their expressions again for each statement), and a sale updates
# its accounts' balances. The three CHECKs of accounts that only look at those columns
# become one row trigger that runs when a row is inserted or an UPDATE names one of them,
# with the same conditions (a condition that is NULL passes, as in a CHECK) and the same
# refusals (SQLSTATE check_violation, the constraint's name). So every row satisfies them as
# before. The CHECKs on the balance and the held points stay CHECKs.
ACCOUNT_SHAPE = {
    "ck_accounts_kind": (
        "kind IN ('member', 'stamps', 'partner_issued', 'partner_redeemed', 'program',"
        " 'breakage', 'stamp_pool')"
    ),
    "ck_accounts_unit": "unit = 'points' OR unit LIKE 'stamps:_%'",
    "ck_accounts_owner": (
        "(kind IN ('member', 'stamps')) = (member_id IS NOT NULL)"
        " AND (kind IN ('partner_issued', 'partner_redeemed')) = (partner_id IS NOT NULL)"
        " AND (kind IN ('stamps', 'stamp_pool')) = (unit <> 'points')"
    ),
}
ACCOUNT_SHAPE_TRIGGER = [
    """
    CREATE FUNCTION ledger_account_shape() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NOT coalesce(NEW.kind IN ('member', 'stamps', 'partner_issued', 'partner_redeemed',
                                     'program', 'breakage', 'stamp_pool'), true) THEN
            RAISE EXCEPTION
                'new row for relation "accounts" violates check constraint "ck_accounts_kind"'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'ck_accounts_kind';
        END IF;
        IF NOT coalesce(NEW.unit = 'points' OR NEW.unit LIKE 'stamps:_%', true) THEN
            RAISE EXCEPTION
                'new row for relation "accounts" violates check constraint "ck_accounts_unit"'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'ck_accounts_unit';
        END IF;
        IF NOT coalesce(
            (NEW.kind IN ('member', 'stamps')) = (NEW.member_id IS NOT NULL)
            AND (NEW.kind IN ('partner_issued', 'partner_redeemed')) = (NEW.partner_id IS NOT NULL)
            AND (NEW.kind IN ('stamps', 'stamp_pool')) = (NEW.unit <> 'points'), true)
        THEN
            RAISE EXCEPTION
                'new row for relation "accounts" violates check constraint "ck_accounts_owner"'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'ck_accounts_owner';
        END IF;
        RETURN NEW;
    END $$
    """,
    """
    CREATE TRIGGER accounts_shape BEFORE INSERT OR UPDATE OF kind, member_id, partner_id, unit
    ON accounts FOR EACH ROW EXECUTE FUNCTION ledger_account_shape()
    """,
]


def upgrade() -> None:
    op.execute(f"DROP FUNCTION {OLD_SIGNATURE}")
    op.execute(LEDGER_SALE)
    for statement in ACCOUNT_SHAPE_TRIGGER:
        op.execute(statement)
    for name in ACCOUNT_SHAPE:
        op.drop_constraint(op.f(name), "accounts", type_="check")


def downgrade() -> None:
    for name, condition in ACCOUNT_SHAPE.items():
        op.create_check_constraint(op.f(name), "accounts", condition)
    op.execute("DROP TRIGGER accounts_shape ON accounts")
    op.execute("DROP FUNCTION ledger_account_shape()")
    op.execute(f"DROP FUNCTION {NEW_SIGNATURE}")
    op.execute(earlier_migration("0014_discounts").LEDGER_SALE)  # ledger_sale as 0014 left it
