"""A member's birthday (/privacy): give it, see it, change it once a year, remove it
(db/rules/birthdays.py says how it is kept and when it may change)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from db.ledger.models import Member, Outbox
from db.ledger.writer import unit_of_work
from db.rules.birthdays import may_change, next_change


@dataclass(frozen=True, slots=True)
class Birthday:
    """The member's birthday (in the year 2000), if given, and the first local day they
    may change it (None: they may now)."""

    day: date | None
    locked_until: date | None


class BirthdayLocked(Exception):
    """Changed less than a year ago: nothing was changed; `until` is the first day it may
    be changed again."""

    def __init__(self, until: date) -> None:
        super().__init__(until.isoformat())
        self.until = until


def _state(day: date | None, set_at: datetime | None, now: datetime, zone: ZoneInfo) -> Birthday:
    locked = None if may_change(set_at, now, zone) else next_change(set_at, zone)
    return Birthday(day, locked)


async def get_birthday(
    session: AsyncSession, member_id: int, now: datetime, zone: ZoneInfo
) -> Birthday:
    row = (
        await session.execute(
            select(Member.birthday, Member.birthday_set_at).where(Member.id == member_id)
        )
    ).one()
    return _state(row.birthday, row.birthday_set_at, now, zone)


async def set_birthday(
    session: AsyncSession, member_id: int, day: date, now: datetime, zone: ZoneInfo
) -> Birthday:
    """Keep `day` as the member's birthday (BirthdayLocked if they changed it less than a
    year ago). The same birthday again changes nothing, and starts no new year."""
    async with unit_of_work(session):
        row = (
            await session.execute(
                select(Member.birthday, Member.birthday_set_at)
                .where(Member.id == member_id, Member.deleted_at.is_(None))
                .with_for_update()
            )
        ).one()
        if row.birthday == day:
            return _state(row.birthday, row.birthday_set_at, now, zone)
        if not may_change(row.birthday_set_at, now, zone):
            until = next_change(row.birthday_set_at, zone)
            assert until is not None
            raise BirthdayLocked(until)
        await session.execute(
            update(Member).where(Member.id == member_id).values(birthday=day, birthday_set_at=now)
        )
        return _state(day, now, now, zone)


async def remove_birthday(
    session: AsyncSession, member_id: int, now: datetime, zone: ZoneInfo
) -> Birthday:
    """Forget the birthday (always allowed). When it was last given is kept, so giving it
    again within the year is refused as any change would be. A birthday offer not yet sent
    is dropped with it (db/usecases/personal_offers.py: its params hold the week's last
    day, `until`): no "happy birthday week" after the member took the birthday away."""
    async with unit_of_work(session):
        row = (
            await session.execute(
                update(Member)
                .where(Member.id == member_id)
                .values(birthday=None)
                .returning(Member.birthday_set_at)
            )
        ).one()
        await session.execute(
            delete(Outbox).where(
                Outbox.member_id == member_id,
                Outbox.status == "pending",
                Outbox.promotion.is_not(None),
                Outbox.params.has_key("until"),
            )
        )
        return _state(None, row.birthday_set_at, now, zone)
