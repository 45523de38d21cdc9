"""ledger: one writer (ledger_post), units per account, holds

Revision ID: 0009_ledger_writer
Revises: 0008_staff_names
Create Date: 2026-12-03 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_ledger_writer"
down_revision: str | None = "0008_staff_names"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The one writer of the ledger, in one round trip (pgledger's create_transfers is the model):
#   p_tx   the transaction row: {"id": n} for one the caller opened earlier in the same
#          database transaction, or its columns (kind, idempotency_key, fingerprint, …) to
#          open it here; when the key is already taken nothing is written and tx_id is NULL.
#   p_legs [{"account", "amount", "tx"}]: signed amounts; "tx" (optional) names another
#          transaction of the same batch (a referral reward paid with its purchase). A leg
#          of 0 writes no entry but its account is locked and its balance returned.
#   p_lots [{"member", "points", "tx", "prefer", "lot", "earned_at", "expires_at"}], applied
#          in the order given: points > 0 adds a lot; points < 0 consumes that many, oldest
#          first ("prefer": that transaction's lots first; "lot": only that lot), and is
#          refused when the member's lots cannot cover it.
# Accounts are locked in id order before anything is written, so postings cannot deadlock.
# The entries of one account are applied credits first: a credit of the posting can cover a
# debit of it. What a debit may spend is said by the lots, in the order the caller lists
# them (a sale consumes before it adds its own lot, so it never pays with the points it
# earns; a refund returns its points before it claws back). Balances are applied by the
# entries' trigger, the wallet CHECK refuses an overdraft, the deferred trigger refuses an
# unbalanced transaction: nothing here replaces them.
LEDGER_POST = """
CREATE FUNCTION ledger_post(p_tx jsonb, p_legs jsonb, p_lots jsonb)
RETURNS TABLE (posted_tx bigint, posted_accounts bigint[], posted_balances bigint[])
LANGUAGE plpgsql AS $$
DECLARE
    v_tx bigint := (p_tx->>'id')::bigint;
    v_accounts bigint[];
    lot record;
    taken bigint;
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
    SELECT array_agg(DISTINCT (leg->>'account')::bigint ORDER BY (leg->>'account')::bigint)
    INTO v_accounts
    FROM jsonb_array_elements(p_legs) AS leg;
    PERFORM 1 FROM accounts WHERE id = ANY(v_accounts) ORDER BY id FOR NO KEY UPDATE;
    INSERT INTO entries (transaction_id, account_id, amount)
    SELECT coalesce(leg.tx, v_tx), leg.account, leg.amount
    FROM jsonb_to_recordset(p_legs) AS leg(account bigint, amount bigint, tx bigint)
    WHERE leg.amount <> 0
    ORDER BY leg.account, leg.amount < 0;
    FOR lot IN
        SELECT m.* FROM jsonb_array_elements(p_lots) WITH ORDINALITY AS e(item, n),
            jsonb_to_record(e.item) AS m(
                member bigint, points bigint, tx bigint, prefer bigint, lot bigint,
                earned_at timestamptz, expires_at timestamptz)
        ORDER BY e.n
    LOOP
        IF lot.points > 0 THEN
            INSERT INTO point_lots (member_id, transaction_id, points, remaining, earned_at,
                                    expires_at)
            VALUES (lot.member, coalesce(lot.tx, v_tx), lot.points, lot.points,
                    coalesce(lot.earned_at, now()), lot.expires_at);
        ELSIF lot.points < 0 THEN
            WITH avail AS (
                SELECT id, remaining,
                       sum(remaining) OVER (
                           ORDER BY (transaction_id = coalesce(lot.prefer, 0)) DESC,
                                    expires_at NULLS LAST, id
                       ) - remaining AS before
                FROM point_lots
                WHERE member_id = lot.member AND remaining > 0
                  AND (lot.lot IS NULL OR id = lot.lot)
            ), used AS (
                UPDATE point_lots AS p
                SET remaining = p.remaining - LEAST(avail.remaining, -lot.points - avail.before)
                FROM avail
                WHERE p.id = avail.id AND avail.before < -lot.points
                RETURNING LEAST(avail.remaining, -lot.points - avail.before) AS points
            )
            SELECT coalesce(sum(used.points), 0) INTO taken FROM used;
            IF taken < -lot.points THEN
                RAISE EXCEPTION 'member % has % of the % points to spend', lot.member, taken,
                    -lot.points
                    USING ERRCODE = 'check_violation', CONSTRAINT = 'point_lots_cover';
            END IF;
        END IF;
    END LOOP;
    RETURN QUERY
    SELECT v_tx, array_agg(a.id ORDER BY a.id), array_agg(a.balance ORDER BY a.id)
    FROM accounts AS a WHERE a.id = ANY(v_accounts);
END $$
"""


# Units: an account holds one unit (`points`, or `stamps:<card>` for a stamp card), and the
# entries of a transaction sum to zero per unit, checked at commit as before.
CHECK_BALANCED_PER_UNIT = """
CREATE OR REPLACE FUNCTION ledger_check_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad_unit text;
    total bigint;
BEGIN
    SELECT a.unit, sum(e.amount) INTO bad_unit, total
    FROM entries AS e JOIN accounts AS a ON a.id = e.account_id
    WHERE e.transaction_id = NEW.transaction_id
    GROUP BY a.unit HAVING sum(e.amount) <> 0
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'entries of transaction % sum to % %, not 0', NEW.transaction_id, total,
            bad_unit
            USING ERRCODE = 'check_violation', CONSTRAINT = 'entries_balanced';
    END IF;
    RETURN NULL;
END $$
"""

CHECK_BALANCED = """
CREATE OR REPLACE FUNCTION ledger_check_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    total bigint;
BEGIN
    SELECT sum(amount) INTO total FROM entries WHERE transaction_id = NEW.transaction_id;
    IF total <> 0 THEN
        RAISE EXCEPTION 'entries of transaction % sum to %, not 0', NEW.transaction_id, total
            USING ERRCODE = 'check_violation', CONSTRAINT = 'entries_balanced';
    END IF;
    RETURN NULL;
END $$
"""


def upgrade() -> None:
    op.add_column(
        "accounts", sa.Column("unit", sa.Text(), server_default="points", nullable=False)
    )
    op.create_check_constraint(
        op.f("ck_accounts_unit"), "accounts", "unit = 'points' OR unit LIKE 'stamps:_%'"
    )
    op.execute(CHECK_BALANCED_PER_UNIT)
    op.execute(LEDGER_POST)


def downgrade() -> None:
    op.execute("DROP FUNCTION ledger_post(jsonb, jsonb, jsonb)")
    op.execute(CHECK_BALANCED)
    op.drop_constraint(op.f("ck_accounts_unit"), "accounts", type_="check")
    op.drop_column("accounts", "unit")
