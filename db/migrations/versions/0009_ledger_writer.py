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
#          refused when the member's lots cannot cover it (less the points they hold).
#   p_tx->'post_hold': the key of an open hold this posting spends (see HOLD_RULES): it is
#          resolved as posted, after the accounts are locked and before the entries.
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
    IF p_tx->>'post_hold' IS NOT NULL THEN
        UPDATE holds SET status = 'posted', transaction_id = v_tx, resolved_at = now()
        WHERE key = p_tx->>'post_hold' AND status = 'open';
        IF NOT FOUND THEN
            RAISE EXCEPTION 'hold % is not open', p_tx->>'post_hold'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'hold_open';
        END IF;
    END IF;
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
            IF lot.lot IS NULL THEN  -- held points are promised: not to be spent again
                SELECT coalesce(sum(remaining), 0) - min(a.held) INTO taken
                FROM accounts AS a
                LEFT JOIN point_lots AS l ON l.member_id = a.member_id AND l.remaining > 0
                WHERE a.member_id = lot.member AND a.kind = 'member';
                IF taken < -lot.points THEN
                    RAISE EXCEPTION 'member % may spend % of the % points', lot.member, taken,
                        -lot.points
                        USING ERRCODE = 'check_violation', CONSTRAINT = 'point_lots_cover';
                END IF;
            END IF;
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


# Holds (TigerBeetle's pending transfers): points a member has promised but not yet spent.
# A hold reserves points of the wallet (`accounts.held`) without moving them: the wallet's
# balance stays what the member owns, `balance - held` is what they may spend, and the
# database refuses any posting or hold that would spend held points (ck_accounts_hold_covered).
# A hold is resolved exactly once: posted (ledger_post, with the posting that spends the
# points) or voided. `accounts.held` changes only through holds (guard and trigger below).
HOLD_RULES = [
    """
    CREATE FUNCTION ledger_apply_hold() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            IF NEW.status <> 'open' THEN
                RAISE EXCEPTION 'a hold is created open' USING ERRCODE = 'check_violation';
            END IF;
            UPDATE accounts SET held = held + NEW.points WHERE id = NEW.account_id;
        ELSE
            IF OLD.status <> 'open' OR NEW.status = 'open' OR NEW.points <> OLD.points
               OR NEW.account_id <> OLD.account_id OR NEW.key <> OLD.key
               OR NEW.member_id <> OLD.member_id THEN
                RAISE EXCEPTION 'hold % is resolved once: open to posted or voided', OLD.key
                    USING ERRCODE = 'restrict_violation', CONSTRAINT = 'hold_resolved_once';
            END IF;
            UPDATE accounts SET held = held - OLD.points WHERE id = OLD.account_id;
        END IF;
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER holds_apply AFTER INSERT OR UPDATE ON holds
    FOR EACH ROW EXECUTE FUNCTION ledger_apply_hold()
    """,
    """
    CREATE TRIGGER holds_immutable BEFORE DELETE ON holds
    FOR EACH ROW EXECUTE FUNCTION ledger_immutable()
    """,
    """
    CREATE FUNCTION ledger_guard_held() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.held IS DISTINCT FROM OLD.held AND pg_trigger_depth() < 2 THEN
            RAISE EXCEPTION 'accounts.held changes only through holds'
                USING ERRCODE = 'restrict_violation';
        END IF;
        RETURN NEW;
    END $$
    """,
    """
    CREATE TRIGGER accounts_held_guard BEFORE UPDATE OF held ON accounts
    FOR EACH ROW EXECUTE FUNCTION ledger_guard_held()
    """,
]

# A redemption request holds the member's points under "redemption:<public id>" from its
# creation (db.usecases.till.request_redemption); its confirmation posts the hold; every other way it
# closes (declined, expired, unreachable, cancelled when the cashier is revoked) voids it,
# here, so no code path that closes a request can leave its points held.
REQUEST_RULES = [
    """
    CREATE FUNCTION redemption_void_hold() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        -- The wallet before the hold's row, the order every posting and deletion takes.
        PERFORM 1 FROM accounts
        WHERE id = (SELECT account_id FROM holds WHERE key = 'redemption:' || NEW.public_id)
        FOR NO KEY UPDATE;
        UPDATE holds SET status = 'voided', resolved_at = coalesce(NEW.decided_at, now())
        WHERE key = 'redemption:' || NEW.public_id AND status = 'open';
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER redemption_requests_void_hold AFTER UPDATE OF status ON redemption_requests
    FOR EACH ROW WHEN (OLD.status = 'pending' AND NEW.status NOT IN ('pending', 'confirmed'))
    EXECUTE FUNCTION redemption_void_hold()
    """,
]

DROP_HOLD_RULES = [
    "DROP TRIGGER redemption_requests_void_hold ON redemption_requests",
    "DROP FUNCTION redemption_void_hold()",
    "DROP TRIGGER accounts_held_guard ON accounts",
    "DROP TRIGGER holds_immutable ON holds",
    "DROP TRIGGER holds_apply ON holds",
    "DROP FUNCTION ledger_guard_held()",
    "DROP FUNCTION ledger_apply_hold()",
]


def upgrade() -> None:
    op.add_column(
        "accounts", sa.Column("unit", sa.Text(), server_default="points", nullable=False)
    )
    op.create_check_constraint(
        op.f("ck_accounts_unit"), "accounts", "unit = 'points' OR unit LIKE 'stamps:_%'"
    )
    op.execute(CHECK_BALANCED_PER_UNIT)
    op.add_column(
        "accounts", sa.Column("held", sa.BigInteger(), server_default="0", nullable=False)
    )
    op.create_check_constraint(
        op.f("ck_accounts_hold_covered"),
        "accounts",
        "held >= 0 AND (kind = 'member' OR held = 0) AND (held = 0 OR balance >= held)",
    )
    op.create_table(
        "holds",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=10), server_default="open", nullable=False),
        sa.Column("transaction_id", sa.BigInteger(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("points > 0", name=op.f("ck_holds_points_positive")),
        sa.CheckConstraint("status IN ('open', 'posted', 'voided')", name=op.f("ck_holds_status")),
        sa.CheckConstraint(
            "(status = 'posted') = (transaction_id IS NOT NULL)"
            " AND (status = 'open') = (resolved_at IS NULL)",
            name=op.f("ck_holds_resolution"),
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_holds_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_holds_member_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["transactions.id"],
            name=op.f("fk_holds_transaction_id_transactions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_holds")),
        sa.UniqueConstraint("key", name=op.f("uq_holds_key")),
    )
    op.create_index(
        "ix_holds_open_member",
        "holds",
        ["member_id"],
        unique=False,
        postgresql_where="status = 'open'",
    )
    for statement in HOLD_RULES + REQUEST_RULES:
        op.execute(statement)
    op.execute(LEDGER_POST)


def downgrade() -> None:
    op.execute("DROP FUNCTION ledger_post(jsonb, jsonb, jsonb)")
    for statement in DROP_HOLD_RULES:
        op.execute(statement)
    op.drop_index("ix_holds_open_member", table_name="holds", postgresql_where="status = 'open'")
    op.drop_table("holds")
    op.drop_constraint(op.f("ck_accounts_hold_covered"), "accounts", type_="check")
    op.drop_column("accounts", "held")
    op.execute(CHECK_BALANCED)
    op.drop_constraint(op.f("ck_accounts_unit"), "accounts", type_="check")
    op.drop_column("accounts", "unit")
