"""Stamps lapse `expire_days` after a card's last stamp: a daily job moves them back to the
card's pool (`stamps_lapsed`), and another tells the member a few days before, once per
card's cycle. Both owe the member's message through the outbox (db/usecases/outbox.py)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from db.ledger.models import TxKind
from db.ledger.writer import Leg, fingerprint, lock_members, post, unit_of_work
from db.rules.program import Program, StampCard
from db.usecases.outbox import Owed, owe
from db.usecases.partners import stamp_unit
from db.usecases.stamps import hold_card

log = logging.getLogger(__name__)

# The member is told this many days before their stamps lapse (at most half the card's
# expire_days, so a short-lived card is not announced as lapsing right after a stamp).
REMIND_DAYS_AHEAD = 7
# This many failures in a row is not one bad card but the database: stop the run.
MAX_FAILURES_IN_A_ROW = 20


@dataclass(frozen=True, slots=True)
class Lapsed:
    member_id: int
    card: str
    stamps: int
    transaction_id: int


# Cards of one kind (unit) that hold stamps and whose last kept stamp (not taken back; it
# is on the current card, since the card holds stamps) falls in (:after, :before], with
# the cycle each card is in.
_DUE = text(
    """
    SELECT a.id, a.member_id, a.balance, s.last_at,
           coalesce((SELECT max(b.id) FROM entries AS eb
                     JOIN transactions AS b ON b.id = eb.transaction_id
                     WHERE eb.account_id = a.id
                       AND b.kind IN ('card_filled', 'stamps_lapsed')), 0) AS cycle
    FROM accounts AS a
    CROSS JOIN LATERAL (
        SELECT max(t.created_at) AS last_at
        FROM entries AS e JOIN transactions AS t ON t.id = e.transaction_id
        WHERE e.account_id = a.id AND e.amount > 0 AND t.kind = 'stamp'
          AND NOT EXISTS (SELECT 1 FROM transactions AS r WHERE r.reverses_id = t.id)
    ) AS s
    WHERE a.kind = 'stamps' AND a.unit = :unit AND a.balance > 0
      AND s.last_at <= :before AND s.last_at > :after
    ORDER BY a.id
    """
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_WALLET = text(
    "SELECT id FROM accounts WHERE member_id = :member AND kind = 'member' FOR NO KEY UPDATE"
)


async def lapse_due(session: AsyncSession, program: Program, now: datetime) -> list[Lapsed]:
    """Lapse the stamps of every card whose last stamp is `expire_days` old: back to the
    card's pool (`stamps_lapsed`, keyed by the card's cycle, so a job run twice lapses
    once), each card in a small transaction of its own that owes the member the news. A
    card that fails is rolled back and logged; the others lapse as usual."""
    lapsed: list[Lapsed] = []
    in_a_row = 0
    for card in program.stamp_cards:
        if not card.expire_days:
            continue
        before = now - timedelta(days=card.expire_days)
        due = (
            await session.execute(
                _DUE, {"unit": stamp_unit(card.slug), "before": before, "after": _EPOCH}
            )
        ).all()
        for row in due:
            try:
                done = await _lapse(session, program, card, row.member_id, before, now)
            except Exception:
                in_a_row += 1
                if in_a_row >= MAX_FAILURES_IN_A_ROW:
                    raise
                log.exception("lapse of stamps account %s failed; skipped", row.id)
                continue
            in_a_row = 0
            if done is not None:
                lapsed.append(done)
    return lapsed


async def _lapse(
    session: AsyncSession,
    program: Program,
    card: StampCard,
    member_id: int,
    before: datetime,
    now: datetime,
) -> Lapsed | None:
    async with unit_of_work(session):
        alive = await lock_members(session, [member_id])  # member rows before accounts
        # The wallet before the stamps, as every posting that changes them holds it.
        await session.execute(_WALLET, {"member": member_id})
        held = await hold_card(session, member_id, card, now, program.program.zone, last=True)
        # Read again under the lock: a sale may have stamped the card since it was listed.
        if held is None or held.balance <= 0 or held.last_at is None or held.last_at > before:
            return None
        posted = await post(
            session,
            [Leg(held.account, -held.balance), Leg(held.pool, held.balance)],
            kind=TxKind.STAMPS_LAPSED,
            key=f"stamps_lapsed:{held.account}:{held.cycle}",
            digest=fingerprint(TxKind.STAMPS_LAPSED, held.account, held.cycle, held.balance),
            created_at=now,
        )
        if posted is None:
            return None
        if member_id in alive:
            await owe(
                session,
                Owed(
                    "stamps_lapsed",
                    {"card": card.slug, "stamps": held.balance, "days": card.expire_days},
                    member_id=member_id,
                ),
            )
        return Lapsed(member_id, card.slug, held.balance, posted.transaction_id)


def remind_days(card: StampCard) -> int:
    """How many days before a card's stamps lapse its member is told (0: not told)."""
    return min(REMIND_DAYS_AHEAD, card.expire_days // 2)


_REMINDED = text(
    """
    INSERT INTO stamp_reminders (account_id, cycle, reminded_at)
    VALUES (:account, :cycle, :now)
    ON CONFLICT DO NOTHING
    RETURNING account_id
    """
)
_ALIVE = text("SELECT id FROM members WHERE id = ANY(:ids) AND deleted_at IS NULL")
# The partners whose kept stamps are on a card's cycle (a tour card's partners visited).
_VISITED = text(
    """
    SELECT coalesce(array_agg(DISTINCT p.slug ORDER BY p.slug), '{}')
    FROM entries AS e
    JOIN transactions AS t ON t.id = e.transaction_id
    JOIN partners AS p ON p.id = t.partner_id
    WHERE e.account_id = :account AND t.kind = 'stamp' AND t.id > :cycle
      AND NOT EXISTS (SELECT 1 FROM transactions AS r WHERE r.reverses_id = t.id)
    """
)


async def remind_lapsing(session: AsyncSession, program: Program, now: datetime) -> int:
    """Tell members whose stamps lapse within remind_days that they will, unless a stamp
    comes first: once per card's cycle (stamp_reminders), through the outbox (with the
    partners already on a tour card, so they are told where a stamp can still come from).
    Returns how many were told."""
    told = 0
    for card in program.stamp_cards:
        ahead = remind_days(card)
        if not ahead:
            continue
        life = timedelta(days=card.expire_days)
        async with unit_of_work(session):
            rows = (
                await session.execute(
                    _DUE,
                    {
                        "unit": stamp_unit(card.slug),
                        "before": now - life + timedelta(days=ahead),
                        "after": now - life,
                    },
                )
            ).all()
            ids = [r.member_id for r in rows]
            alive = set((await session.execute(_ALIVE, {"ids": ids})).scalars()) if ids else set()
            for row in rows:
                if row.member_id not in alive:
                    continue
                first = (
                    await session.execute(
                        _REMINDED, {"account": row.id, "cycle": row.cycle, "now": now}
                    )
                ).scalar_one_or_none()
                if first is None:  # told already on this card
                    continue
                told_params = {
                    "card": card.slug,
                    "stamps": row.balance,
                    "lapses_at": row.last_at + life,
                }
                if card.distinct_partners:
                    told_params["visited"] = (
                        await session.execute(_VISITED, {"account": row.id, "cycle": row.cycle})
                    ).scalar_one()
                await owe(session, Owed("stamps_lapsing", told_params, member_id=row.member_id))
                told += 1
    return told
