"""ledger: entries applied and checked once per statement; ledger_post on typed arrays

Revision ID: 0011_ledger_statement_triggers
Revises: 0010_ledger_speed
Create Date: 2026-12-05 10:00:00
"""

from collections.abc import Sequence

from alembic import op

from db.migrate import earlier_migration

revision: str = "0011_ledger_statement_triggers"
down_revision: str | None = "0010_ledger_speed"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The same rules as before, kept with less work per posting:
# - An entry moves its account's balance in the statement that inserts it, and the entries
#   of a transaction sum to zero per unit: both now once per INSERT statement, by one
#   statement-level trigger over the inserted rows (a transition table), instead of a row
#   trigger and a deferred per-row check (one query per entry at commit). The balances move
#   by each account's net sum (the CHECKs on accounts, such as the wallet's, see the
#   result), and the zero sum is checked per (transaction, unit) over the statement's rows.
# - So a transaction's entries are written by one statement, as ledger_post writes them;
#   a later statement adding entries to a transaction that has some (its own transaction's,
#   or committed) is refused: a posting never changes, not even by entries summing to zero.
# - Balances still change only through entries: the guard's condition moved to the
#   trigger's WHEN, so the guard runs (and refuses) only for an update made outside a
#   trigger, not for each balance the entries move.
APPLY_ENTRIES = """
CREATE FUNCTION ledger_apply_entries() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
    -- One statement: the balances move (accounts in id order, as ledger_post locks them,
    -- for an INSERT made by hand), then each transaction's entries are summed per unit and
    -- its earlier entries looked for.
    WITH moved AS (
        UPDATE accounts AS a SET balance = a.balance + d.amount
        FROM (SELECT account_id, sum(amount)::bigint AS amount FROM posted
              GROUP BY account_id ORDER BY account_id) AS d
        WHERE a.id = d.account_id
        RETURNING a.id, a.unit
    ), sums AS (
        SELECT e.transaction_id, m.unit, sum(e.amount) AS total,
               min(min(e.id)) OVER (PARTITION BY e.transaction_id) AS first
        FROM posted AS e JOIN moved AS m ON m.id = e.account_id
        GROUP BY e.transaction_id, m.unit
    )
    SELECT s.transaction_id, s.unit, s.total,
           EXISTS (SELECT 1 FROM entries AS o
                   WHERE o.transaction_id = s.transaction_id AND o.id < s.first) AS earlier
    INTO bad
    FROM sums AS s
    WHERE s.total <> 0
       OR EXISTS (SELECT 1 FROM entries AS o
                  WHERE o.transaction_id = s.transaction_id AND o.id < s.first)
    LIMIT 1;
    IF bad.earlier THEN
        RAISE EXCEPTION 'transaction % has entries already: its entries are written at once',
            bad.transaction_id
            USING ERRCODE = 'restrict_violation', CONSTRAINT = 'entries_one_statement';
    ELSIF FOUND THEN
        RAISE EXCEPTION 'entries of transaction % sum to % %, not 0', bad.transaction_id,
            bad.total, bad.unit
            USING ERRCODE = 'check_violation', CONSTRAINT = 'entries_balanced';
    END IF;
    RETURN NULL;
END $$
"""

STATEMENT_RULES = [
    "DROP TRIGGER entries_balanced ON entries",
    "DROP TRIGGER entries_apply ON entries",
    "DROP FUNCTION ledger_check_balanced()",
    "DROP FUNCTION ledger_apply_entry()",
    APPLY_ENTRIES,
    """
    CREATE TRIGGER entries_apply AFTER INSERT ON entries
    REFERENCING NEW TABLE AS posted
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_apply_entries()
    """,
    "DROP TRIGGER accounts_balance_guard ON accounts",
    """
    CREATE TRIGGER accounts_balance_guard BEFORE UPDATE OF balance ON accounts
    FOR EACH ROW WHEN (pg_trigger_depth() < 1 AND NEW.balance IS DISTINCT FROM OLD.balance)
    EXECUTE FUNCTION ledger_guard_balance()
    """,
]


def row_rules(check_balanced: str) -> list[str]:
    """The row triggers of migrations 0001 and 0009, with `check_balanced`, the function
    0009 left (its CHECK_BALANCED_PER_UNIT)."""
    return [
        "DROP TRIGGER accounts_balance_guard ON accounts",
        """
        CREATE TRIGGER accounts_balance_guard BEFORE UPDATE OF balance ON accounts
        FOR EACH ROW EXECUTE FUNCTION ledger_guard_balance()
        """,
        "DROP TRIGGER entries_apply ON entries",
        "DROP FUNCTION ledger_apply_entries()",
        """
        CREATE FUNCTION ledger_apply_entry() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE accounts SET balance = balance + NEW.amount WHERE id = NEW.account_id;
            RETURN NULL;
        END $$
        """,
        """
        CREATE TRIGGER entries_apply AFTER INSERT ON entries
        FOR EACH ROW EXECUTE FUNCTION ledger_apply_entry()
        """,
        check_balanced,
        """
        CREATE CONSTRAINT TRIGGER entries_balanced AFTER INSERT ON entries
        DEFERRABLE INITIALLY DEFERRED
        FOR EACH ROW EXECUTE FUNCTION ledger_check_balanced()
        """,
    ]


# The writer's core, on typed arrays (no JSON to build or parse): what ledger_post(jsonb,
# jsonb, jsonb) of migration 0009 did, for a transaction the caller opened (p_tx), in the
# same order and with the same refusals:
#   legs  p_accounts[i], p_amounts[i] and p_txs[i] (NULL: p_tx; else another transaction of
#         the batch): signed amounts; a leg of 0 writes no entry, but its account is locked
#         and its balance returned;
#   lots  p_lot_members[i], p_lot_points[i] (> 0 adds a lot, < 0 consumes that many, oldest
#         first), p_lot_txs[i] (NULL: p_tx), p_lot_prefer[i] (that transaction's lots
#         first), p_lot_ids[i] (only that lot), p_lot_earned[i] (NULL: now()),
#         p_lot_expires[i], applied in the order given;
#   p_post_hold: the key of an open hold this posting spends.
# Accounts are locked in id order before anything is written, reading their balances; the
# entries go in one INSERT (the statement trigger applies them and checks their sum), so the
# balances after are those read plus each account's legs, returned without reading the
# accounts again.
LEDGER_POST_CORE = """
CREATE FUNCTION ledger_post(
    p_tx bigint, p_post_hold text, p_accounts bigint[], p_amounts bigint[], p_txs bigint[],
    p_lot_members bigint[], p_lot_points bigint[], p_lot_txs bigint[], p_lot_prefer bigint[],
    p_lot_ids bigint[], p_lot_earned timestamptz[], p_lot_expires timestamptz[])
RETURNS TABLE (posted_tx bigint, posted_accounts bigint[], posted_balances bigint[])
LANGUAGE plpgsql
-- A plan made for the arrays at hand is no better than the generic one, which is made once.
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_member bigint;
    v_points bigint;
    v_lot bigint;
    taken bigint;
    j integer;
BEGIN
    SELECT array_agg(a.id ORDER BY a.id), array_agg(a.balance ORDER BY a.id)
    INTO posted_accounts, posted_balances
    FROM (SELECT id, balance FROM accounts WHERE id = ANY(p_accounts)
          ORDER BY id FOR NO KEY UPDATE) AS a;
    IF p_post_hold IS NOT NULL THEN
        UPDATE holds SET status = 'posted', transaction_id = p_tx, resolved_at = now()
        WHERE key = p_post_hold AND status = 'open';
        IF NOT FOUND THEN
            RAISE EXCEPTION 'hold % is not open', p_post_hold
                USING ERRCODE = 'check_violation', CONSTRAINT = 'hold_open';
        END IF;
    END IF;
    INSERT INTO entries (transaction_id, account_id, amount)
    SELECT coalesce(leg.tx, p_tx), leg.account, leg.amount
    FROM unnest(p_accounts, p_amounts, p_txs) AS leg(account, amount, tx)
    WHERE leg.amount <> 0
    ORDER BY leg.account, leg.amount < 0;
    FOR i IN 1 .. coalesce(cardinality(p_lot_points), 0) LOOP
        v_member := p_lot_members[i];
        v_points := p_lot_points[i];
        v_lot := p_lot_ids[i];
        IF v_points > 0 THEN
            INSERT INTO point_lots (member_id, transaction_id, points, remaining, earned_at,
                                    expires_at)
            VALUES (v_member, coalesce(p_lot_txs[i], p_tx), v_points, v_points,
                    coalesce(p_lot_earned[i], now()), p_lot_expires[i]);
        ELSIF v_points < 0 THEN
            IF v_lot IS NULL THEN  -- held points are promised: not to be spent again
                SELECT coalesce(sum(remaining), 0) - min(a.held) INTO taken
                FROM accounts AS a
                LEFT JOIN point_lots AS l ON l.member_id = a.member_id AND l.remaining > 0
                WHERE a.member_id = v_member AND a.kind = 'member';
                IF taken < -v_points THEN
                    RAISE EXCEPTION 'member % may spend % of the % points', v_member, taken,
                        -v_points
                        USING ERRCODE = 'check_violation', CONSTRAINT = 'point_lots_cover';
                END IF;
            END IF;
            WITH avail AS (
                SELECT id, remaining,
                       sum(remaining) OVER (
                           ORDER BY (transaction_id = coalesce(p_lot_prefer[i], 0)) DESC,
                                    expires_at NULLS LAST, id
                       ) - remaining AS before
                FROM point_lots
                WHERE member_id = v_member AND remaining > 0
                  AND (v_lot IS NULL OR id = v_lot)
            ), used AS (
                UPDATE point_lots AS p
                SET remaining = p.remaining - LEAST(avail.remaining, -v_points - avail.before)
                FROM avail
                WHERE p.id = avail.id AND avail.before < -v_points
                RETURNING LEAST(avail.remaining, -v_points - avail.before) AS points
            )
            SELECT coalesce(sum(used.points), 0) INTO taken FROM used;
            IF taken < -v_points THEN
                RAISE EXCEPTION 'member % has % of the % points to spend', v_member, taken,
                    -v_points
                    USING ERRCODE = 'check_violation', CONSTRAINT = 'point_lots_cover';
            END IF;
        END IF;
    END LOOP;
    -- The accounts are locked: their balances moved by this posting's legs, and no more.
    FOR i IN 1 .. coalesce(cardinality(p_accounts), 0) LOOP
        j := array_position(posted_accounts, p_accounts[i]);
        IF j IS NOT NULL THEN  -- (an account that is not there has no balance to return)
            posted_balances[j] := posted_balances[j] + p_amounts[i];
        END IF;
    END LOOP;
    posted_tx := p_tx;
    RETURN NEXT;
END $$
"""

# ledger_post(jsonb, jsonb, jsonb), the writer's entry point for the use cases (db.ledger.
# writer.post), keeps its arguments and results (migration 0009 says what they are): it
# opens the transaction when asked to, then hands the legs and lots to the core as arrays.
LEDGER_POST_JSON = """
CREATE OR REPLACE FUNCTION ledger_post(p_tx jsonb, p_legs jsonb, p_lots jsonb)
RETURNS TABLE (posted_tx bigint, posted_accounts bigint[], posted_balances bigint[])
LANGUAGE plpgsql AS $$
DECLARE
    v_tx bigint := (p_tx->>'id')::bigint;
BEGIN
    IF v_tx IS NULL THEN
        INSERT INTO transactions (kind, idempotency_key, fingerprint, member_id, partner_id,
                                  staff_id, amount, paid, receipt, reason, reverses_id,
                                  related_id, created_at)
        SELECT r.kind, r.idempotency_key, r.fingerprint, r.member_id, r.partner_id,
               r.staff_id, r.amount, r.paid, r.receipt, r.reason, r.reverses_id,
               r.related_id, coalesce(r.created_at, now())
        FROM jsonb_populate_record(NULL::transactions, p_tx) AS r
        ON CONFLICT (idempotency_key) DO NOTHING
        RETURNING id INTO v_tx;
        IF v_tx IS NULL THEN
            RETURN QUERY SELECT NULL::bigint, NULL::bigint[], NULL::bigint[];
            RETURN;
        END IF;
    END IF;
    RETURN QUERY
    SELECT posted.*
    FROM (SELECT array_agg(leg.account), array_agg(leg.amount), array_agg(leg.tx)
          FROM jsonb_to_recordset(p_legs) AS leg(account bigint, amount bigint, tx bigint))
         AS legs(accounts, amounts, txs),
         (SELECT array_agg(lot.member ORDER BY e.n), array_agg(lot.points ORDER BY e.n),
                 array_agg(lot.tx ORDER BY e.n), array_agg(lot.prefer ORDER BY e.n),
                 array_agg(lot.lot ORDER BY e.n), array_agg(lot.earned_at ORDER BY e.n),
                 array_agg(lot.expires_at ORDER BY e.n)
          FROM jsonb_array_elements(p_lots) WITH ORDINALITY AS e(item, n),
               jsonb_to_record(e.item) AS lot(
                   member bigint, points bigint, tx bigint, prefer bigint, lot bigint,
                   earned_at timestamptz, expires_at timestamptz))
         AS lots(members, points, txs, prefer, ids, earned, expires),
         ledger_post(v_tx, p_tx->>'post_hold', legs.accounts, legs.amounts, legs.txs,
                     lots.members, lots.points, lots.txs, lots.prefer, lots.ids, lots.earned,
                     lots.expires) AS posted;
END $$
"""

# ledger_sale (migration 0010 says what it does and returns) with the same arguments and
# results, and less work under the partner's account lock, which every sale at that partner
# waits for: the member's trailing spend is read before the posting (it counts the sale's
# row, which the posting does not change), the legs go to the core as arrays, and a leg of
# 0 on a partner account is left out (an earn-only sale does not lock the partner's
# redeemed-points account). The wallet's legs are always there: its balance is returned.
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
    FROM members AS mm JOIN accounts AS w ON w.member_id = mm.id
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
                                  staff_id, amount, paid, receipt, created_at)
        VALUES (p_kind, p_key, p_digest, m.id, m.partner_id, p_staff, p_amount, p_paid, p_receipt,
                p_now)
        ON CONFLICT (idempotency_key) DO NOTHING
        RETURNING transactions.id INTO v_tx;
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

CORE_SIGNATURE = (
    "ledger_post(bigint, text, bigint[], bigint[], bigint[], bigint[], bigint[], bigint[],"
    " bigint[], bigint[], timestamptz[], timestamptz[])"
)
SALE_SIGNATURE = (
    "ledger_sale(bigint, text, text, text, text, bigint, numeric, numeric, text, timestamptz,"
    " bigint, text[], bigint[], timestamptz, numeric, text, timestamptz)"
)


def upgrade() -> None:
    for statement in STATEMENT_RULES:
        op.execute(statement)
    op.execute(LEDGER_POST_CORE)
    op.execute(LEDGER_POST_JSON)
    op.execute(LEDGER_SALE)


def downgrade() -> None:
    writer, speed = earlier_migration("0009_ledger_writer"), earlier_migration("0010_ledger_speed")
    op.execute(f"DROP FUNCTION {SALE_SIGNATURE}")
    op.execute(speed.LEDGER_SALE)
    op.execute("DROP FUNCTION ledger_post(jsonb, jsonb, jsonb)")
    op.execute(f"DROP FUNCTION {CORE_SIGNATURE}")
    op.execute(writer.LEDGER_POST)
    for statement in row_rules(writer.CHECK_BALANCED_PER_UNIT):
        op.execute(statement)
