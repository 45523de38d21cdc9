"""What a member sees of their stamp cards: the stamps on each card, when the card's last
stamp was, and which partners' stamps are on it (a tour card's progress)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ColumnElement, Label, func, select, text, type_coerce
from sqlalchemy.ext.asyncio import AsyncSession

from db.ledger.models import Account, AccountKind
from db.usecases.partners import stamp_unit


@dataclass(frozen=True, slots=True)
class CardProgress:
    card: str  # the card's slug
    stamps: int
    last_stamp_at: datetime | None  # the current card's last stamp (None: no stamp on it)
    partners: frozenset[str]  # the partners whose stamps are on the current card


# Per stamps account of the member: its stamps, and the kept stamps (not taken back) of the
# current card, the one since the account's last fill or lapse.
_CARDS = text(
    """
    SELECT a.unit, a.balance, s.last_at, s.partners
    FROM accounts AS a
    LEFT JOIN LATERAL (
        SELECT max(t.created_at) AS last_at, array_agg(DISTINCT p.slug) AS partners
        FROM entries AS e
        JOIN transactions AS t ON t.id = e.transaction_id
        JOIN partners AS p ON p.id = t.partner_id
        WHERE e.account_id = a.id AND t.kind = 'stamp'
          AND t.id > coalesce((
              SELECT max(b.id) FROM entries AS eb
              JOIN transactions AS b ON b.id = eb.transaction_id
              WHERE eb.account_id = a.id AND b.kind IN ('card_filled', 'stamps_lapsed')), 0)
          AND NOT EXISTS (SELECT 1 FROM transactions AS r WHERE r.reverses_id = t.id)
    ) AS s ON a.balance > 0
    WHERE a.member_id = :member AND a.kind = 'stamps'
    """
)


async def card_progress(session: AsyncSession, member_id: int) -> dict[str, CardProgress]:
    """The member's cards that ever had a stamp, by card slug (a card with none is not in
    it: it is at 0)."""
    rows = (await session.execute(_CARDS, {"member": member_id})).all()
    prefix = stamp_unit("")
    return {
        row.unit.removeprefix(prefix): CardProgress(
            row.unit.removeprefix(prefix),
            row.balance,
            row.last_at,
            frozenset(row.partners or ()),
        )
        for row in rows
    }


def held_column(member_id: ColumnElement[int]) -> Label[Any]:
    """The stamps on each card the member is collecting (cards at 0 left out), by unit, as a
    column of a query that reads the member `member_id` (a column of it): /balance shows
    them, and db.queries.identity reads them with the member. See held_by_card."""
    stamps = Account.__table__.alias("stamps")
    return (
        select(type_coerce(func.json_object_agg(stamps.c.unit, stamps.c.balance), JSON))
        .where(
            stamps.c.member_id == member_id,
            stamps.c.kind == AccountKind.STAMPS,
            stamps.c.balance > 0,
        )
        .scalar_subquery()
        .label("stamps")
    )


def held_by_card(held: Mapping[str, int] | None) -> dict[str, int]:
    """held_column's value by card slug."""
    prefix = stamp_unit("")
    return {unit.removeprefix(prefix): stamps for unit, stamps in (held or {}).items()}
