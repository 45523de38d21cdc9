"""Discounts at the till (a tier's, and the club's for its members): what the till shows
before a sale, and what the notices of a discounted sale carry. The rule itself is
db/rules/discounts.py; the posting checks it (db/usecases/purchases.py, ledger_sale in
migration 0013)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from db.queries.club import in_club
from db.rules.discounts import Priced, club_part, has_discounts, price
from db.rules.program import Program
from db.usecases.members import get_member

if TYPE_CHECKING:  # the sale's result: purchases owes its messages through outbox, which uses this
    from db.usecases.purchases import PurchaseResult


async def quote(
    session: AsyncSession,
    program: Program,
    member_id: int,
    amount: Decimal,
    now: datetime | None = None,
) -> Priced:
    """The typed amount with the member's discount now, their tier's and, while they are in
    the club, the club's (a read: the sale that follows carries the percent shown, and is
    refused if the tier or the membership has changed meanwhile). A program without
    discounts reads nothing."""
    if not has_discounts(program):
        return price(amount, program.tiers[0])
    member = await get_member(session, member_id)
    club = bool(club_part(program, True)) and await in_club(
        session, member_id, now or datetime.now(UTC)
    )
    return price(amount, program.tier(member.tier), club_part(program, club))


def discount_params(result: PurchaseResult) -> dict[str, object]:
    """A discounted sale's figures for the notices that tell of it (none without one)."""
    if not result.discount:
        return {}
    return {
        "discount": result.discount,
        "discount_tier": result.discount_tier,
        "discount_percent": result.discount_percent,
        # The club's part of the percent (the rest is the tier's): said only when it has one.
        **(
            {"discount_club_percent": result.discount_club_percent}
            if result.discount_club_percent
            else {}
        ),
    }
