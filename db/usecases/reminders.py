"""Who should hear that points are about to expire."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from db.ledger.models import Member, PointLot
from db.ledger.writer import unit_of_work


@dataclass(frozen=True, slots=True)
class Reminder:
    member_id: int
    telegram_id: int
    language: str
    points: int
    expires_at: datetime
    lot_ids: list[int]


async def due_reminders(session: AsyncSession, now: datetime, days_ahead: int) -> list[Reminder]:
    """Per reachable member, the points in lots expiring within `days_ahead` days that the
    member was not yet reminded of."""
    rows = (
        await session.execute(
            select(
                Member.id,
                Member.telegram_id,
                Member.language,
                func.sum(PointLot.remaining),
                func.min(PointLot.expires_at),
                func.array_agg(PointLot.id),
            )
            .join(Member, Member.id == PointLot.member_id)
            .where(
                PointLot.remaining > 0,
                PointLot.reminded_at.is_(None),
                PointLot.expires_at > now,
                PointLot.expires_at <= now + timedelta(days=days_ahead),
                Member.deleted_at.is_(None),
                Member.reachable.is_(True),
                Member.telegram_id.is_not(None),
            )
            .group_by(Member.id)
            .order_by(Member.id)
        )
    ).all()
    # The query's WHERE makes telegram_id and expires_at non-null; the row types cannot say so.
    return [Reminder(r[0], r[1], r[2], int(r[3]), r[4], list(r[5])) for r in rows]  # type: ignore[arg-type]


async def mark_reminded(session: AsyncSession, lot_ids: list[int], now: datetime) -> None:
    async with unit_of_work(session):
        await session.execute(
            update(PointLot).where(PointLot.id.in_(lot_ids)).values(reminded_at=now)
        )
