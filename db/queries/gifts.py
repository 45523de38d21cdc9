"""What a member sees of their gifts (reads only): what they may give now, a gift a link
names, their gifts waiting for a friend, their gifts for the data export. The use cases
(db/usecases/gifts.py) decide again under their locks."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.ledger.models import Account, AccountKind, Gift, Member
from db.queries.reports import day_start
from db.rules.program import Program


@dataclass(frozen=True, slots=True)
class GiftInfo:
    id: int
    code: str
    giver_id: int
    points: int
    status: str
    created_at: datetime
    expires_at: datetime
    receiver_id: int | None = None
    giver_name: str = ""
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class Allowance:
    """What a member may give now: at most `spendable` (balance less held points) and
    `left_today` of the program's daily `per_day`."""

    spendable: int
    left_today: int
    per_day: int

    @property
    def most(self) -> int:
        return max(0, min(self.spendable, self.left_today))


def gift_info(row: Any, giver_name: str = "", replayed: bool = False) -> GiftInfo:
    """A gift from a row of GIFT_COLUMNS."""
    return GiftInfo(
        id=row.id,
        code=row.code,
        giver_id=row.giver_id,
        points=row.points,
        status=row.status,
        created_at=row.created_at,
        expires_at=row.expires_at,
        receiver_id=row.receiver_id,
        giver_name=giver_name,
        replayed=replayed,
    )


GIFT_COLUMNS = (
    Gift.id,
    Gift.code,
    Gift.giver_id,
    Gift.points,
    Gift.status,
    Gift.created_at,
    Gift.expires_at,
    Gift.receiver_id,
)


async def given_today(
    session: AsyncSession, program: Program, member_id: int, now: datetime
) -> int:
    """Points the member gave today (the program's business day), returned gifts aside."""
    since = day_start(now, program.program.timezone)
    given = await session.scalar(
        select(func.coalesce(func.sum(Gift.points), 0)).where(
            Gift.giver_id == member_id,
            Gift.created_at >= since,
            Gift.status != "returned",
        )
    )
    return int(given or 0)


async def allowance(
    session: AsyncSession, program: Program, member_id: int, now: datetime | None = None
) -> Allowance:
    """What the member may give now (a read for the prompt; create_gift checks again)."""
    now = now or datetime.now(UTC)
    per_day = program.gifts.max_points_per_day
    spendable = await session.scalar(
        select(Account.balance - Account.held).where(
            Account.member_id == member_id, Account.kind == AccountKind.MEMBER
        )
    )
    left = per_day - await given_today(session, program, member_id, now)
    return Allowance(int(spendable or 0), max(left, 0), per_day)


async def find_gift(session: AsyncSession, code: str) -> GiftInfo | None:
    """The gift a link names, with its giver's first name ("" once they left)."""
    row = (
        await session.execute(
            select(*GIFT_COLUMNS, Member.first_name, Member.deleted_at)
            .join(Member, Member.id == Gift.giver_id)
            .where(Gift.code == code)
        )
    ).one_or_none()
    if row is None:
        return None
    return gift_info(row, giver_name=row.first_name if row.deleted_at is None else "")


async def open_gifts(session: AsyncSession, member_id: int) -> list[GiftInfo]:
    """The member's gifts still waiting for a friend, oldest first."""
    rows = (
        await session.execute(
            select(*GIFT_COLUMNS)
            .where(Gift.giver_id == member_id, Gift.status == "open")
            .order_by(Gift.id)
        )
    ).all()
    return [gift_info(row) for row in rows]


async def gifts_export(session: AsyncSession, member_id: int) -> list[dict[str, object]]:
    """Every gift the member gave or received, for their data export (the friend is not
    named: their data is theirs)."""
    rows = await session.execute(
        select(Gift)
        .where(or_(Gift.giver_id == member_id, Gift.receiver_id == member_id))
        .order_by(Gift.id)
    )
    return [
        {
            "direction": "given" if g.giver_id == member_id else "received",
            "code": g.code,
            "points": g.points,
            "status": g.status,
            "created_at": g.created_at.isoformat(),
            "expires_at": g.expires_at.isoformat(),
            "resolved_at": g.resolved_at.isoformat() if g.resolved_at else None,
        }
        for g in rows.scalars()
    ]
