"""Reads about the club: a member's membership (/club, /balance, the till's panel), their
payments (/paysupport) and whether they had the welcome points."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.ledger.models import ClubMembership, ClubPayment, RewardedIdentity
from db.rules import club as rules


@dataclass(frozen=True, slots=True)
class Membership:
    """A member's membership (db.ledger.models.ClubMembership); db/rules/club.py says what
    it means at a moment."""

    joined_at: datetime
    started_at: datetime
    ends_at: datetime
    renews: bool
    subscription_charge_id: str | None
    subscription_until: datetime | None = None

    def active(self, now: datetime) -> bool:
        return rules.active(self.ends_at, now)

    def overdue(self, now: datetime) -> bool:
        """Telegram's renewal charge is due and may still arrive (the grace day)."""
        return rules.overdue(self.renews, self.subscription_until, now)

    def renewing(self, now: datetime) -> bool:
        """A Stars subscription still renews it (Telegram charges at subscription_until)."""
        return rules.renewing(self.renews, self.subscription_until, now)

    def renewable(self, now: datetime) -> bool:
        """The member may stop or resume their Stars subscription's renewal."""
        return rules.renewable(
            self.subscription_charge_id, self.renews, self.subscription_until, now
        )


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
                ClubMembership.subscription_until,
            ).where(ClubMembership.member_id == member_id)
        )
    ).one_or_none()
    return Membership(*row) if row else None


def active_sql(ends_at: Any, now: datetime) -> ColumnElement[bool]:
    """db/rules/club.py `active` as a SQL condition on a membership's `ends_at` column, for
    queries over many memberships at once (a campaign's audience, the daily job's
    candidates): the one SQL statement of the rule."""
    return cast("ColumnElement[bool]", ends_at > now)


async def in_club(session: AsyncSession, member_id: int, now: datetime) -> bool:
    """Whether the member is in the club at `now`."""
    ends_at = await session.scalar(
        select(ClubMembership.ends_at).where(ClubMembership.member_id == member_id)
    )
    return rules.active(ends_at, now)


@dataclass(frozen=True, slots=True)
class PaidClub:
    """One of a member's club payments, as /paysupport lists them."""

    paid_at: datetime
    method: str
    currency: str
    amount: Decimal
    until: datetime
    charge_id: str
    refunded: bool


async def payments(session: AsyncSession, member_id: int, *, limit: int = 20) -> list[PaidClub]:
    """The member's club payments, newest first."""
    rows = await session.execute(
        select(
            ClubPayment.created_at,
            ClubPayment.method,
            ClubPayment.currency,
            ClubPayment.amount,
            ClubPayment.period_until,
            ClubPayment.charge_id,
            ClubPayment.refunded_at.is_not(None),
        )
        .where(ClubPayment.member_id == member_id)
        .order_by(ClubPayment.created_at.desc(), ClubPayment.id.desc())
        .limit(limit)
    )
    return [PaidClub(*row) for row in rows]


async def welcome_had(session: AsyncSession, member_id: int, identity: str | None) -> bool:
    """Whether this person had the club's welcome points already: in this account, or in
    one they deleted (`identity`, db.rules.tokens.identity_hash)."""
    welcomed = select(ClubMembership.welcomed).where(ClubMembership.member_id == member_id)
    before = select(RewardedIdentity.club).where(RewardedIdentity.identity_hash == identity)
    row = (
        await session.execute(select(welcomed.scalar_subquery(), before.scalar_subquery()))
    ).one()
    return bool(row[0]) or (identity is not None and bool(row[1]))
