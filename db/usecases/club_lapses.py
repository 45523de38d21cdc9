"""The club's daily telling: a member whose membership ends within REMIND_BEFORE (and that
nothing will renew) is told so once, with how to extend it ("club_ending"); a member whose
membership has ended (a renewing Stars subscription after RENEWAL_GRACE, in case Telegram's
renewal is only late) is told once that it has ("club_ended"). db/rules/club.py decides
both; this applies them, in batches, each batch in a transaction of its own.

Nothing here changes a membership's end: membership is `ends_at` ahead of now
(db/rules/club.py `active`), so a lapsed membership needs no other step, but for its Stars
subscription: once the lapse is told (past RENEWAL_GRACE for a renewing one, whose renewal
never came) the subscription is over, and `renews`, its charge id and Telegram's end of it
are cleared, so that nothing says it renews a membership bought later. The markers
`reminded_for` and `lapse_told_for` hold the end the member was told about: a run again
tells nobody twice, and a membership extended since (a new end) is told about its new end.
A member who deleted their account or blocked the bot is marked without being told."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from db.ledger.models import ClubMembership, Member
from db.ledger.writer import lock_members, unit_of_work
from db.queries.club import active_sql
from db.rules import club as rules
from db.usecases.outbox import Owed, owe

BATCH = 1000


@dataclass(frozen=True, slots=True)
class ClubTold:
    """How many members one run told their membership is ending / has ended."""

    ending: int = 0
    ended: int = 0


def _candidates(now: datetime) -> list[ColumnElement[bool]]:
    """Memberships the rules may find due (read through the index on `ends_at`): ending
    within REMIND_BEFORE and not yet reminded of that end, or ended and not yet told. The
    rules themselves decide, under the lock."""
    c = ClubMembership
    return [
        c.ends_at <= now + rules.REMIND_BEFORE,
        or_(
            and_(active_sql(c.ends_at, now), c.reminded_for.is_distinct_from(c.ends_at)),
            and_(~active_sql(c.ends_at, now), c.lapse_told_for.is_distinct_from(c.ends_at)),
        ),
    ]


async def tell_club_lapses(
    session: AsyncSession, now: datetime, *, batch: int = BATCH
) -> ClubTold:
    """Tell every member due a "club_ending" or "club_ended" notice (through the outbox,
    in the same transaction as the marker that says they were told). Returns how many
    were told of each."""
    ending = ended = 0
    after = 0
    while True:
        ids = list(
            (
                await session.execute(
                    select(ClubMembership.member_id)
                    .where(ClubMembership.member_id > after, *_candidates(now))
                    .order_by(ClubMembership.member_id)
                    .limit(batch)
                )
            ).scalars()
        )
        if not ids:
            return ClubTold(ending, ended)
        after = ids[-1]
        told = await _tell_batch(session, ids, now)
        ending += told.ending
        ended += told.ended


async def _tell_batch(session: AsyncSession, ids: list[int], now: datetime) -> ClubTold:
    ending = ended = 0
    async with unit_of_work(session):
        # Member rows first, as a payment and a deletion lock them before the membership.
        alive = await lock_members(session, ids)
        rows = (
            await session.execute(
                select(
                    ClubMembership.member_id,
                    ClubMembership.ends_at,
                    ClubMembership.renews,
                    ClubMembership.subscription_until,
                    ClubMembership.reminded_for,
                    ClubMembership.lapse_told_for,
                    Member.reachable,
                )
                .join(Member, Member.id == ClubMembership.member_id)
                .where(ClubMembership.member_id.in_(ids))
                .order_by(ClubMembership.member_id)
                .with_for_update(of=ClubMembership)
            )
        ).all()
        owed: list[Owed] = []
        reminded: list[int] = []
        lapsed: list[int] = []
        for row in rows:
            reachable = row.member_id in alive and row.reachable
            renewing = rules.renewing(row.renews, row.subscription_until, now)
            if rules.remind_due(row.ends_at, renewing, row.reminded_for, now):
                reminded.append(row.member_id)
                if reachable:
                    owed.append(_notice("club_ending", row.member_id, row.ends_at))
                    ending += 1
            elif rules.lapse_due(row.ends_at, renewing, row.lapse_told_for, now):
                lapsed.append(row.member_id)
                if reachable:
                    owed.append(_notice("club_ended", row.member_id, row.ends_at))
                    ended += 1
        if reminded:
            await session.execute(
                update(ClubMembership)
                .where(ClubMembership.member_id.in_(reminded))
                .values(reminded_for=ClubMembership.ends_at)
            )
        if lapsed:
            await session.execute(
                update(ClubMembership)
                .where(ClubMembership.member_id.in_(lapsed))
                .values(
                    lapse_told_for=ClubMembership.ends_at,
                    renews=False,
                    subscription_charge_id=None,
                    subscription_until=None,
                )
            )
        await owe(session, *owed)
    return ClubTold(ending, ended)


def _notice(kind: str, member_id: int, ends_at: datetime) -> Owed:
    """bot/views/club_lapses.py renders these."""
    return Owed(kind, {"ends_at": ends_at}, member_id=member_id)
