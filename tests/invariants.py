"""The ledger's invariants, checked straight in SQL after every test that touched it."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

CHECKS = {
    "entries of a transaction sum to 0 per unit": """
        SELECT e.transaction_id FROM entries e JOIN accounts a ON a.id = e.account_id
        GROUP BY e.transaction_id, a.unit HAVING sum(e.amount) <> 0
    """,
    "a kept balance equals the sum of its entries": """
        SELECT a.id FROM accounts a
        LEFT JOIN (SELECT account_id, sum(amount) AS total FROM entries GROUP BY account_id) e
               ON e.account_id = a.id
        WHERE a.kind IN ('member', 'stamps') AND a.balance <> coalesce(e.total, 0)
    """,
    "an account whose balance is not kept has 0 on its row": """
        SELECT id FROM accounts WHERE kind NOT IN ('member', 'stamps') AND balance <> 0
    """,
    "all balances sum to 0 per unit": """
        SELECT unit FROM account_balances GROUP BY unit HAVING sum(balance) <> 0
    """,
    "no wallet or stamp card below zero": """
        SELECT id FROM accounts WHERE kind IN ('member', 'stamps') AND balance < 0
    """,
    "lots' remaining points equal the wallet": """
        SELECT a.member_id FROM accounts a
        LEFT JOIN (SELECT member_id, sum(remaining) AS total FROM point_lots GROUP BY member_id) l
               ON l.member_id = a.member_id
        WHERE a.kind = 'member' AND a.balance <> coalesce(l.total, 0)
    """,
    "held points equal the sum of open holds": """
        SELECT a.id FROM accounts a
        LEFT JOIN (SELECT account_id, sum(points) AS total FROM holds
                   WHERE status = 'open' GROUP BY account_id) h ON h.account_id = a.id
        WHERE a.held <> coalesce(h.total, 0)
    """,
    "no wallet holds more than it has": """
        SELECT id FROM accounts WHERE held < 0 OR held > balance AND held > 0
    """,
    "every gift has its hold, resolved as the gift was": """
        SELECT g.id FROM gifts g LEFT JOIN holds h ON h.key = g.hold_key
        WHERE h.id IS NULL OR h.member_id <> g.giver_id OR h.points <> g.points
           OR (g.status = 'open') <> (h.status = 'open')
           OR (g.status = 'accepted') <> (h.status = 'posted')
           OR h.transaction_id IS DISTINCT FROM g.transaction_id
    """,
    "a catalogue voucher's hold is open while it is, posted by its claim, else voided": """
        SELECT v.id FROM vouchers v LEFT JOIN holds h ON h.key = v.hold_key
        WHERE v.source = 'catalogue' AND (
            h.id IS NULL OR h.member_id <> v.member_id OR h.points <> v.points
            OR (v.status = 'open') <> (h.status = 'open')
            OR (v.status = 'claimed') <> (h.status = 'posted')
            OR (v.status = 'claimed' AND h.transaction_id IS DISTINCT FROM v.transaction_id))
    """,
    "a reward's issued count is its standing catalogue vouchers": """
        SELECT r.slug FROM rewards r
        LEFT JOIN (SELECT reward, count(*) AS n FROM vouchers
                   WHERE source = 'catalogue' AND status IN ('open', 'claimed')
                   GROUP BY reward) v ON v.reward = r.slug
        WHERE r.issued <> coalesce(v.n, 0)
    """,
    "a sale stamps a card at most once": """
        SELECT t.related_id FROM transactions t JOIN entries e ON e.transaction_id = t.id
        JOIN accounts a ON a.id = e.account_id AND a.kind = 'stamps'
        WHERE t.kind = 'stamp' GROUP BY t.related_id, a.unit HAVING count(*) > 1
    """,
    "a stamp is taken back at most once": """
        SELECT r.reverses_id FROM transactions r JOIN transactions s ON s.id = r.reverses_id
        WHERE s.kind = 'stamp' GROUP BY r.reverses_id HAVING count(*) > 1
    """,
    "the club's welcome points are paid at most once per member": """
        SELECT member_id FROM transactions WHERE kind = 'club'
        GROUP BY member_id HAVING count(*) > 1
    """,
    "a membership was paid for, and without a refund ends with its last payment's period"
    " (or its account's deletion)": """
        SELECT c.member_id FROM club_memberships c JOIN members m ON m.id = c.member_id
        LEFT JOIN (SELECT member_id, max(period_until) AS until,
                          bool_or(refunded_at IS NOT NULL) AS refunded
                   FROM club_payments GROUP BY member_id) p ON p.member_id = c.member_id
        WHERE p.member_id IS NULL
           OR (NOT p.refunded AND c.ends_at <> least(p.until, coalesce(m.deleted_at, p.until)))
    """,
}


async def ledger_violations(session: AsyncSession) -> dict[str, list[object]]:
    found: dict[str, list[object]] = {}
    for name, sql in CHECKS.items():
        rows = (await session.execute(text(sql))).scalars().all()
        if rows:
            found[name] = list(rows)
    await session.rollback()
    return found


async def assert_ledger_invariants(session: AsyncSession) -> None:
    violations = await ledger_violations(session)
    assert not violations, f"ledger invariants broken: {violations}"
