"""Gifts: points one member gives another through a link.

Giving holds the points on the giver's wallet (db.ledger.writer.hold, key `gift:<code>`) and
writes the gift, valid GIFT_TTL. The friend who opens the link and accepts gets them: one
`gift` posting, giver's wallet −N → receiver's wallet +N, spends the hold (post_hold) and the
giver's oldest lots, and adds lots for the receiver that keep those lots' expiry (never later
than points earned at the acceptance expire): passing points back and forth does not keep
them alive. A gift nobody accepted in time is returned by a job (the hold voided), and the
giver can take back an open gift at once; deleting the giver's account returns their open
gifts with the rest of their holds (db/usecases/privacy.py). What a member may give and
their open gifts are read by db/queries/gifts.py.

Locks, in the one order every posting and the deletion take them: member rows (giver and
receiver), then the gift's row, then the wallets. So two friends accepting one gift, or an
acceptance racing the giver's cancel, the return job or a deletion, find exactly one winner.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.ledger.models import Gift, PointLot, TxKind
from db.ledger.writer import (
    Leg,
    Lot,
    fingerprint,
    hold,
    lock_accounts,
    lock_members,
    post,
    unit_of_work,
    void_holds,
    wallet_of,
)
from db.queries.gifts import GIFT_COLUMNS, GiftInfo, gift_info, given_today
from db.rules.errors import IdempotencyConflict, NotEnoughPoints, UnknownMember
from db.rules.gifts import (
    GIFT_TTL,
    GiftClosed,
    GiftingOff,
    GiftLimit,
    OwnGift,
    hold_key,
)
from db.rules.points import check_points
from db.rules.program import Program
from db.usecases.members import expiry_for
from db.usecases.outbox import Owed, owe
from db.usecases.staff import audit


async def create_gift(
    session: AsyncSession,
    program: Program,
    *,
    member_id: int,
    points: int,
    code: str,
    actor: int | None = None,
    now: datetime | None = None,
) -> GiftInfo:
    """Hold `points` of the member's wallet and write the gift `code` (rules/gifts.py
    gift_code). The same code again (a second tap) returns the first gift and holds nothing
    more. Refused: gifting off (GiftingOff), over the daily allowance counted over today's
    gifts not returned (GiftLimit), more than the member may spend (NotEnoughPoints)."""
    per_day = program.gifts.max_points_per_day
    if per_day == 0:
        raise GiftingOff()
    check_points(points)
    now = now or datetime.now(UTC)
    async with unit_of_work(session):
        if not await lock_members(session, [member_id]):
            raise UnknownMember()
        wallet = await wallet_of(session, member_id)
        # The wallet's lock keeps one member's gifts in line: the allowance read below is
        # still true when the gift is written.
        spendable = (await lock_accounts(session, [wallet]))[wallet]
        found = (
            await session.execute(select(*GIFT_COLUMNS).where(Gift.code == code))
        ).one_or_none()
        if found is not None:
            if found.giver_id != member_id or found.points != points:
                raise IdempotencyConflict(key=hold_key(code))
            return gift_info(found, replayed=True)
        left = per_day - await given_today(session, program, member_id, now)
        if points > left:
            raise GiftLimit(max=per_day, left=max(left, 0))
        if points > spendable:
            raise NotEnoughPoints(balance=spendable)
        await hold(session, key=hold_key(code), member_id=member_id, points=points, now=now)
        row = (
            await session.execute(
                pg_insert(Gift)
                .values(
                    code=code,
                    giver_id=member_id,
                    points=points,
                    hold_key=hold_key(code),
                    created_at=now,
                    expires_at=now + GIFT_TTL,
                )
                .returning(*GIFT_COLUMNS)
            )
        ).one()
        await audit(session, "gift_create", actor=actor, member_id=member_id, points=points)
        return gift_info(row)


def _closed(gift: GiftInfo, now: datetime, member_id: int) -> None:
    """Refuse a gift that is no longer open (or whose time ran out)."""
    if gift.status == "accepted":
        raise GiftClosed(status="accepted_by_you" if gift.receiver_id == member_id else "accepted")
    if gift.status != "open":
        raise GiftClosed(status=gift.status)
    if gift.expires_at <= now:
        raise GiftClosed(status="expired")


# The giver's lots in the order ledger_post spends them (no `prefer`): the soonest to
# expire first, those that never expire last.
_SPENT_FIRST = (PointLot.expires_at.asc().nulls_last(), PointLot.id)


async def _given_expiries(
    session: AsyncSession, program: Program, giver: int, points: int, now: datetime
) -> dict[datetime | None, int]:
    """The receiver's new lots of a gift of `points`: per expiry, how many. Each part keeps
    the expiry of the giver's lot it comes from, capped at the expiry of points earned `now`
    (a gift never makes points fresher; under a program whose points never expire, None).
    The caller holds the giver's wallet lock, so these are the lots the posting spends."""
    cap = expiry_for(program, now)
    lots = await session.execute(
        select(PointLot.remaining, PointLot.expires_at)
        .where(PointLot.member_id == giver, PointLot.remaining > 0)
        .order_by(*_SPENT_FIRST)
    )
    given: dict[datetime | None, int] = {}
    left = points
    for remaining, expires_at in lots:
        if left <= 0:
            break
        if expires_at is None or (cap is not None and cap < expires_at):
            expires_at = cap
        taken = min(remaining, left)
        given[expires_at] = given.get(expires_at, 0) + taken
        left -= taken
    if left > 0:  # lots short of the points: the posting refuses the gift (NotEnoughPoints)
        given[cap] = given.get(cap, 0) + left
    return given


@dataclass(frozen=True, slots=True)
class Accepted:
    gift: GiftInfo
    transaction_id: int
    balance: int  # the receiver's, after the gift


async def accept_gift(
    session: AsyncSession,
    program: Program,
    *,
    code: str,
    member_id: int,
    actor: int | None = None,
    now: datetime | None = None,
) -> Accepted:
    """The member accepts the gift `code`: its hold is posted to their wallet, and both are
    told (outbox). Exactly one acceptance of a gift posts; every other gets GiftClosed.
    OwnGift for the giver themself."""
    now = now or datetime.now(UTC)
    async with unit_of_work(session):
        giver = await session.scalar(select(Gift.giver_id).where(Gift.code == code))
        if giver is None:
            raise GiftClosed(status="unknown")
        alive = await lock_members(session, sorted({giver, member_id}))
        if member_id not in alive:
            raise UnknownMember()
        gift = gift_info(
            (
                await session.execute(
                    select(*GIFT_COLUMNS).where(Gift.code == code).with_for_update()
                )
            ).one()
        )
        if gift.giver_id == member_id:
            raise OwnGift()
        _closed(gift, now, member_id)
        if giver not in alive:  # deleting the giver returns their gifts: not reached
            raise GiftClosed(status="returned")
        giver_wallet, wallet = await wallet_of(session, giver), await wallet_of(session, member_id)
        # Both wallets locked (in id order, as the posting locks them): the giver's lots read
        # below are those the posting spends.
        await lock_accounts(session, [giver_wallet, wallet])
        given = await _given_expiries(session, program, giver, gift.points, now)
        key = hold_key(code)
        posted = await post(
            session,
            [Leg(giver_wallet, -gift.points), Leg(wallet, gift.points)],
            [
                Lot(giver, -gift.points),
                *(
                    Lot(member_id, points, earned_at=now, expires_at=expires_at)
                    for expires_at, points in given.items()
                ),
            ],
            kind=TxKind.GIFT,
            key=key,
            digest=fingerprint(TxKind.GIFT, code, giver, member_id, gift.points),
            member_id=giver,
            post_hold=key,
            created_at=now,
        )
        if posted is None:  # the key is the gift's own, posted only here under its lock
            raise GiftClosed(status="accepted")
        await session.execute(
            update(Gift)
            .where(Gift.id == gift.id)
            .values(
                status="accepted",
                receiver_id=member_id,
                transaction_id=posted.transaction_id,
                resolved_at=now,
            )
        )
        await audit(
            session,
            "gift_accept",
            actor=actor,
            member_id=member_id,
            transaction_id=posted.transaction_id,
            giver=giver,
            points=gift.points,
        )
        balance = posted.balances[wallet]
        await owe(
            session,
            Owed(
                "gift_received",
                {
                    "points": gift.points,
                    "friend": giver,
                    "balance": balance,
                    "transaction": posted.transaction_id,
                },
                member_id=member_id,
            ),
            Owed(
                "gift_accepted",
                {
                    "points": gift.points,
                    "friend": member_id,
                    "balance": posted.balances[giver_wallet],
                    "transaction": posted.transaction_id,
                },
                member_id=giver,
            ),
        )
        return Accepted(gift, posted.transaction_id, balance)


async def cancel_gift(
    session: AsyncSession,
    *,
    code: str,
    member_id: int,
    actor: int | None = None,
    now: datetime | None = None,
) -> GiftInfo:
    """The giver takes back an open gift: its points are theirs to spend again at once.
    GiftClosed when it is no longer open (accepted, returned) or is not theirs."""
    now = now or datetime.now(UTC)
    async with unit_of_work(session):
        if not await lock_members(session, [member_id]):
            raise UnknownMember()
        row = (
            await session.execute(
                select(*GIFT_COLUMNS)
                .where(Gift.code == code, Gift.giver_id == member_id)
                .with_for_update()
            )
        ).one_or_none()
        if row is None:
            raise GiftClosed(status="unknown")
        gift = gift_info(row)
        if gift.status != "open":
            raise GiftClosed(status=gift.status)
        await _return(session, gift, now)
        await audit(session, "gift_cancel", actor=actor, member_id=member_id, points=gift.points)
        return gift


async def _return(session: AsyncSession, gift: GiftInfo, now: datetime) -> None:
    """Void the gift's hold and mark it returned (the caller holds the gift's lock)."""
    await void_holds(session, keys=[hold_key(gift.code)], now=now)
    await session.execute(
        update(Gift).where(Gift.id == gift.id).values(status="returned", resolved_at=now)
    )


async def return_expired_gifts(
    session: AsyncSession, *, now: datetime | None = None, batch: int = 200
) -> list[GiftInfo]:
    """Return every gift nobody accepted before it expired, one small transaction per gift
    (a gift accepted or cancelled meanwhile is left alone); each giver is told."""
    now = now or datetime.now(UTC)
    returned: list[GiftInfo] = []
    last_id = 0
    while True:
        due = (
            await session.execute(
                select(Gift.id, Gift.giver_id)
                .where(Gift.status == "open", Gift.expires_at <= now, Gift.id > last_id)
                .order_by(Gift.id)
                .limit(batch)
            )
        ).all()
        if not due:
            return returned
        for gift_id, giver in due:
            last_id = gift_id
            async with unit_of_work(session):
                await lock_members(session, [giver])
                row = (
                    await session.execute(
                        select(*GIFT_COLUMNS)
                        .where(Gift.id == gift_id, Gift.status == "open", Gift.expires_at <= now)
                        .with_for_update()
                    )
                ).one_or_none()
                if row is None:
                    continue
                gift = gift_info(row)
                await _return(session, gift, now)
                await owe(
                    session,
                    Owed("gift_returned", {"points": gift.points}, member_id=gift.giver_id),
                )
                returned.append(gift)


async def return_gifts_of(session: AsyncSession, member_id: int, now: datetime) -> None:
    """A member leaving: their open gifts are returned (inside the deletion's transaction,
    which holds the member's lock and has voided their holds already)."""
    await void_holds(
        session,
        keys=list(
            (
                await session.execute(
                    select(Gift.hold_key).where(Gift.giver_id == member_id, Gift.status == "open")
                )
            ).scalars()
        ),
        now=now,
    )
    await session.execute(
        update(Gift)
        .where(Gift.giver_id == member_id, Gift.status == "open")
        .values(status="returned", resolved_at=now)
    )
