"""Reads about the club: a member's membership (/club, /balance, the till's panel)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.ledger.models import ClubMembership
from db.rules import club as rules


@dataclass(frozen=True, slots=True)
class Membership:
    joined_at: datetime
    started_at: datetime
    ends_at: datetime
    renews: bool
    subscription_charge_id: str | None

    def active(self, now: datetime) -> bool:
        return rules.active(self.ends_at, now)


async def membership(session: AsyncSession, member_id: int) -> Membership | None:
    """The member's membership, current or past; None if they were never in the club."""
    row = (
        await session.execute(
            select(
                ClubMembership.joined_at,
                ClubMembership.started_at,
                ClubMembership.ends_at,
                ClubMembership.renews,
                ClubMembership.subscription_charge_id,
            ).where(ClubMembership.member_id == member_id)
        )
    ).one_or_none()
    return Membership(*row) if row else None


async def in_club(session: AsyncSession, member_id: int, now: datetime) -> bool:
    """Whether the member is in the club at `now`."""
    ends_at = await session.scalar(
        select(ClubMembership.ends_at).where(ClubMembership.member_id == member_id)
    )
    return rules.active(ends_at, now)
