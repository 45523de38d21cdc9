"""ledger: balances kept on members' accounts only; partners' and the program's are totalled

Revision ID: 0022_hot_accounts
Revises: 0021_club
Create Date: 2026-12-09 10:00:00
"""

from collections.abc import Sequence

from alembic import op

from db.migrate import earlier_migration

revision: str = "0022_hot_accounts"
down_revision: str | None = "0021_club"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Every sale at a partner posts to the partner's account (the points it issues), and every
# sale's posting locked that row to move its balance until the sale committed: so the sales
# at one partner went one at a time, each waiting for the one before to reach the disk.
# A balance on a row is kept for what needs it read at once and guarded under concurrency:
# a member's wallet and stamp cards (no overdraft; held points). The other accounts, the
# partners', the program's, breakage and the stamp pools, may go below zero by design and
# are read only by reports. So from here on:
# - their balance is the sum of their entries (the view account_balances gives every
#   account's), and their row's balance stays 0;
# - a posting locks, moves and returns only the accounts whose balance is kept (a leg on
#   another account writes its entry, locks nothing, and has no balance in the result);
# - the entries of a transaction still sum to zero per unit, checked by the same statement
#   trigger, and nothing else changes in what a posting writes.
# The kinds whose balance is kept are written here and in db.ledger.models
# (AccountKind.KEPT); tests/test_ledger_writer.py checks that the two agree.
KEPT = "('member', 'stamps')"

APPLY_ENTRIES = f"""
CREATE OR REPLACE FUNCTION ledger_apply_entries() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
    -- One statement: the kept balances move (accounts in id order, as ledger_post locks
    -- them, for an INSERT made by hand), then each transaction's entries are summed per
    -- unit and its earlier entries looked for.
    WITH moved AS (
        UPDATE accounts AS a SET balance = a.balance + d.amount
        FROM (SELECT account_id, sum(amount)::bigint AS amount FROM posted
              GROUP BY account_id ORDER BY account_id) AS d
        WHERE a.id = d.account_id AND a.kind IN {KEPT}
    ), sums AS (
        SELECT e.transaction_id, a.unit, sum(e.amount) AS total,
               min(min(e.id)) OVER (PARTITION BY e.transaction_id) AS first
        FROM posted AS e JOIN accounts AS a ON a.id = e.account_id
        GROUP BY e.transaction_id, a.unit
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

# ledger_post's core (migration 0011 says what each argument is), locking only the
# accounts whose balance is kept: the rest as before.
LEDGER_POST_CORE = f"""
CREATE OR REPLACE FUNCTION ledger_post(
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
    FROM (SELECT id, balance FROM accounts WHERE id = ANY(p_accounts) AND kind IN {KEPT}
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
    -- The kept accounts are locked: their balances moved by this posting's legs, and no
    -- more. (An account whose balance is not kept, or is not there, has none to return.)
    FOR i IN 1 .. coalesce(cardinality(p_accounts), 0) LOOP
        j := array_position(posted_accounts, p_accounts[i]);
        IF j IS NOT NULL THEN
            posted_balances[j] := posted_balances[j] + p_amounts[i];
        END IF;
    END LOOP;
    posted_tx := p_tx;
    RETURN NEXT;
END $$
"""

# Every account's balance: the row's for the kept ones, the sum of the entries for the
# others. For reports, checks and people: a posting never reads it.
ACCOUNT_BALANCES = f"""
CREATE VIEW account_balances AS
SELECT a.id, a.kind, a.unit, a.member_id, a.partner_id,
       CASE WHEN a.kind IN {KEPT} THEN a.balance
            ELSE coalesce((SELECT sum(e.amount) FROM entries AS e
                           WHERE e.account_id = a.id), 0)::bigint
       END AS balance
FROM accounts AS a
"""


def _set_totalled_balances(value: str) -> None:
    """Set the balance column of the accounts whose balance is not kept, past the guard
    that lets balances move only through entries (a migration, alone on the table)."""
    op.execute("ALTER TABLE accounts DISABLE TRIGGER accounts_balance_guard")
    op.execute(f"UPDATE accounts AS a SET balance = {value} WHERE a.kind NOT IN {KEPT}")
    op.execute("ALTER TABLE accounts ENABLE TRIGGER accounts_balance_guard")


# An account's entries with their amounts, so that its balance summed from them is read
# from the index alone (where the table's pages are all visible, as vacuum leaves them).
ACCOUNT_ENTRIES = "CREATE INDEX ix_entries_account_id ON entries (account_id) INCLUDE (amount)"


def upgrade() -> None:
    op.execute(APPLY_ENTRIES)
    op.execute(LEDGER_POST_CORE)
    op.execute("DROP INDEX ix_entries_account_id")
    op.execute(ACCOUNT_ENTRIES)
    op.execute(ACCOUNT_BALANCES)
    _set_totalled_balances("0")


def downgrade() -> None:
    _set_totalled_balances(
        "coalesce((SELECT sum(e.amount) FROM entries AS e WHERE e.account_id = a.id), 0)"
    )
    op.execute("DROP VIEW account_balances")
    op.execute("DROP INDEX ix_entries_account_id")
    op.execute("CREATE INDEX ix_entries_account_id ON entries (account_id)")
    earlier = earlier_migration("0011_ledger_statement_triggers")
    op.execute(earlier.APPLY_ENTRIES.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION"))
    op.execute(earlier.LEDGER_POST_CORE.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION"))
