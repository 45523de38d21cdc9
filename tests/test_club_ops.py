"""The club's operations on a real PostgreSQL: the daily job's "ending soon" and "ended"
notices (told once per end, renewing subscriptions left alone within RENEWAL_GRACE, the
gone left untold), the club's figures in /stats, the "club members" campaign segment, and
the owner's refund as the database records it. The ledger's invariants are checked after
each test."""

from __future__ import annotations

import asyncio
import copy
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.ledger.models import (
    AuditLog,
    ClubMembership,
    ClubPayment,
    ClubUnclaimed,
    Member,
    Notice,
    Outbox,
    Transaction,
    TxKind,
)
from db.queries.club import membership
from db.queries.settlement import settlement
from db.queries.stats import club_figures
from db.rules import club as rules
from db.rules.errors import NotStaff, UnknownTransaction
from db.rules.program import CLUB_PERIOD, Program, parse_program
from db.usecases.adjust import adjust
from db.usecases.campaigns import Segment, audience_size, create_campaign, start_campaign
from db.usecases.club import Payment, record_payment
from db.usecases.club_lapses import ClubTold, tell_club_lapses
from db.usecases.club_refunds import record_refund
from db.usecases.club_support import claim_unclaimed, unclaimed_payment
from db.usecases.members import get_member, register_member
from db.usecases.privacy import delete_member
from db.usecases.staff import accept_invite, create_invite
from tests.conftest import TEST_PROGRAM

D = Decimal
Sessions = async_sessionmaker[AsyncSession]
NOW = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
OWNER = 1
OWNERS = (OWNER,)


def club_program() -> Program:
    data = copy.deepcopy(TEST_PROGRAM)
    data["club"] = {
        "name": "City Club",
        "stars_per_month": 250,
        "price": "29.00",
        "multiplier": "1.5",
        "discount_percent": "5",
        "welcome_points": 0,
    }
    return parse_program(data)


@pytest.fixture
def program() -> Program:
    return club_program()


def stars(
    member_id: int, charge: str, now: datetime, *, renews: bool = True, recurring: bool = False
) -> Payment:
    """A Stars payment: the first charge of a subscription, or Telegram's renewal of it."""
    return Payment(
        member_id,
        charge,
        "stars",
        "XTR",
        D(250),
        now,
        until=now + CLUB_PERIOD,
        renews=renews,
        recurring=recurring,
    )


def card(member_id: int, charge: str, now: datetime, amount: str = "29.00") -> Payment:
    return Payment(member_id, charge, "card", "PLN", D(amount), now, provider_charge_id="p-1")


def till(member_id: int, charge: str, now: datetime, amount: str = "29.00") -> Payment:
    return Payment(member_id, charge, "till", "PLN", D(amount), now, partner_id=1)


async def join(s: AsyncSession, program: Program, telegram_id: int, **more: Any) -> int:
    member = await register_member(
        s, program, telegram_id=telegram_id, now=NOW - timedelta(days=400), **more
    )
    return member.id


async def notices(s: AsyncSession, *kinds: str) -> list[tuple[int | None, str, Any]]:
    rows = (
        await s.execute(
            select(Notice.member_id, Notice.kind, Notice.params)
            .where(Notice.kind.in_(kinds))
            .order_by(Notice.id)
        )
    ).all()
    await s.rollback()
    return [(r.member_id, r.kind, r.params) for r in rows]


async def scalar(s: AsyncSession, query: Any) -> Any:
    value = await s.scalar(query)
    await s.rollback()
    return value


async def audited(s: AsyncSession) -> Any:
    """The one "club_refund" row of the audit log."""
    row = (
        await s.execute(
            select(
                AuditLog.actor_telegram_id,
                AuditLog.member_id,
                AuditLog.partner_id,
                AuditLog.details,
            ).where(AuditLog.action == "club_refund")
        )
    ).one()
    await s.rollback()
    return row


# --------------------------------------------------------------------------- the daily job


async def test_members_are_told_once_their_membership_ends_soon_and_once_it_ended(
    sessions: Sessions, program: Program
) -> None:
    async with sessions() as s:
        ids = [await join(s, program, tg) for tg in range(1, 10)]
        ending, renewing, later, ended, in_grace, past_grace, gone, blocked, old = ids
        # Ends in two days, paid at a till: nothing renews it.
        await record_payment(s, program, till(ending, "t-1", NOW - CLUB_PERIOD + 2 * DAY))
        # A Stars subscription ending in two days renews itself: not reminded.
        await record_payment(s, program, stars(renewing, "s-1", NOW - CLUB_PERIOD + 2 * DAY))
        await record_payment(s, program, card(later, "c-1", NOW - CLUB_PERIOD + 10 * DAY))
        await record_payment(s, program, card(ended, "c-2", NOW - CLUB_PERIOD - DAY))
        # Telegram's renewal may come a little late: not told it ended within the grace.
        await record_payment(s, program, stars(in_grace, "s-2", NOW - CLUB_PERIOD - DAY / 2))
        await record_payment(s, program, stars(past_grace, "s-3", NOW - CLUB_PERIOD - 2 * DAY))
        await record_payment(s, program, till(gone, "t-2", NOW - CLUB_PERIOD + DAY))
        await delete_member(s, await get_member(s, gone), now=NOW - DAY)
        await record_payment(s, program, till(blocked, "t-3", NOW - CLUB_PERIOD + DAY))
        await s.execute(update(Member).where(Member.id == blocked).values(reachable=False))
        await s.commit()
        # Told long ago about the end it still has: nothing new.
        await record_payment(s, program, till(old, "t-4", NOW - 3 * CLUB_PERIOD))
        await s.execute(
            update(ClubMembership)
            .where(ClubMembership.member_id == old)
            .values(lapse_told_for=ClubMembership.ends_at)
        )
        await s.commit()

        # Batches of two: the job pages through them all.
        assert await tell_club_lapses(s, NOW, batch=2) == ClubTold(ending=1, ended=2)
        told = await notices(s, "club_ending", "club_ended")
        assert [(m, k) for m, k, _p in told] == [
            (ending, "club_ending"),
            (ended, "club_ended"),
            (past_grace, "club_ended"),
        ]
        ends = {m: (await membership(s, m)).ends_at for m in ids}  # type: ignore[union-attr]
        assert [datetime.fromisoformat(p["ends_at"]) for _m, _k, p in told] == [
            ends[ending],
            ends[ended],
            ends[past_grace],
        ]
        marks = {
            r.member_id: (r.reminded_for, r.lapse_told_for)
            for r in (await s.execute(select(ClubMembership))).scalars()
        }
        await s.rollback()
        assert marks[ending] == (ends[ending], None)
        assert marks[blocked] == (ends[blocked], None)  # marked, not told: it was blocked
        assert marks[gone][1] == ends[gone]  # ended by the deletion: marked, not told
        assert marks[renewing] == (None, None) and marks[later] == (None, None)
        assert marks[in_grace] == (None, None)

        # Run again: nobody is told twice.
        assert await tell_club_lapses(s, NOW) == ClubTold()
        assert len(await notices(s, "club_ending", "club_ended")) == 3
        # Later the one in grace is past it, and the one that was reminded has ended; the
        # renewing one is still within its grace.
        assert await tell_club_lapses(s, NOW + 2.5 * DAY) == ClubTold(ending=0, ended=2)
        # `later` is reminded once its end is near; no renewal came for `renewing`.
        assert await tell_club_lapses(s, NOW + 8 * DAY) == ClubTold(ending=1, ended=1)
        assert await tell_club_lapses(s, NOW + 8 * DAY) == ClubTold()
        kinds = [(m, k) for m, k, _p in await notices(s, "club_ending", "club_ended")][3:]
        assert kinds == [
            (ending, "club_ended"),
            (in_grace, "club_ended"),
            (renewing, "club_ended"),
            (later, "club_ending"),
        ]


async def test_an_extended_membership_is_told_again_about_its_new_end(
    sessions: Sessions, program: Program
) -> None:
    async with sessions() as s:
        ann = await join(s, program, 1)
        await record_payment(s, program, till(ann, "t-1", NOW - CLUB_PERIOD + 2 * DAY))
        assert await tell_club_lapses(s, NOW) == ClubTold(ending=1)
        extended = await record_payment(s, program, card(ann, "c-1", NOW + DAY))
        assert not extended.joined
        # Its old end passes without a word: the membership goes on.
        assert await tell_club_lapses(s, NOW + 3 * DAY) == ClubTold()
        near = extended.ends_at - 2 * DAY
        assert rules.remind_due(extended.ends_at, False, None, near)
        assert await tell_club_lapses(s, near) == ClubTold(ending=1)
        assert await tell_club_lapses(s, extended.ends_at) == ClubTold(ended=1)
        assert await tell_club_lapses(s, extended.ends_at + DAY) == ClubTold()
        told = [p["ends_at"] for _m, _k, p in await notices(s, "club_ending", "club_ended")]
        first_end = NOW - CLUB_PERIOD + 2 * DAY + CLUB_PERIOD
        assert [datetime.fromisoformat(t) for t in told] == [
            first_end,
            extended.ends_at,
            extended.ends_at,
        ]


async def test_a_renewal_that_never_came_is_over_and_a_till_month_after_it_does_not_renew(
    sessions: Sessions, program: Program
) -> None:
    """Ann's Stars subscription is not renewed (no Stars left, or cancelled in Telegram's
    own list, which the bot never hears of); ten days later she buys a month at a till. Bob
    took his subscription during a till month: Telegram's charge is due before his
    membership ends, and it never comes either."""
    async with sessions() as s:
        ann, bob = await join(s, program, 1), await join(s, program, 2)
        paid = await record_payment(s, program, stars(ann, "s-1", NOW - CLUB_PERIOD))
        bought = await record_payment(s, program, till(bob, "t-1", NOW - 10 * DAY))
        taken = await record_payment(s, program, stars(bob, "s-2", NOW - 5 * DAY))
        assert taken.subscription_until == NOW + 25 * DAY
        assert taken.ends_at == bought.ends_at + CLUB_PERIOD
        # Within the grace Ann's renewal may still come: nothing is said, nothing cleared.
        assert await tell_club_lapses(s, NOW + DAY / 2) == ClubTold()
        found = await membership(s, ann)
        assert found is not None and found.renews and found.renewing(NOW + DAY / 2)
        # Past it: told it ended, and the subscription is over.
        assert await tell_club_lapses(s, paid.ends_at + rules.RENEWAL_GRACE) == ClubTold(ended=1)
        found = await membership(s, ann)
        assert found is not None and not found.renews
        assert found.subscription_charge_id is None and found.subscription_until is None
        back = NOW + 10 * DAY
        month = await record_payment(s, program, till(ann, "t-2", back))
        assert month.joined and not month.renews
        found = await membership(s, ann)
        assert found is not None and not found.renewing(back) and not found.renewable(back)
        # So she is told before it ends, as any month nothing renews.
        assert await tell_club_lapses(s, month.ends_at - 2 * DAY) == ClubTold(ending=1)

        # Bob: Telegram's charge was due on day 25; a day later nothing renews his
        # membership, which runs to its end: he is told before it ends.
        overdue = taken.subscription_until + rules.RENEWAL_GRACE  # type: ignore[operator]
        found = await membership(s, bob)
        assert found is not None and found.active(overdue) and not found.renewing(overdue)
        near = taken.ends_at - 2 * DAY  # (Ann's till month has ended by then)
        assert await tell_club_lapses(s, near) == ClubTold(ending=1, ended=1)
        told = await notices(s, "club_ending")
        assert [m for m, _k, _p in told] == [ann, bob]


async def test_many_memberships_are_told_in_batches(sessions: Sessions, program: Program) -> None:
    async with sessions() as s:
        ids = [await join(s, program, tg) for tg in range(1, 8)]
        for n, member in enumerate(ids):
            await record_payment(s, program, till(member, f"t-{n}", NOW - CLUB_PERIOD - DAY))
        assert await tell_club_lapses(s, NOW, batch=3) == ClubTold(ended=7)
        assert await tell_club_lapses(s, NOW, batch=3) == ClubTold()
        assert sorted(m for m, _k, _p in await notices(s, "club_ended")) == ids


# --------------------------------------------------------------------------- figures


async def test_the_club_figures_of_a_period_are_exact(
    sessions: Sessions, program: Program
) -> None:
    """June: Ann joins with Stars on the 1st and Telegram renews it on June 30; Bob's till
    month from May 20 lapses on June 19; Cy pays by card on June 5, refunded on June 10;
    Dee joined in April with Stars, refunded in June (by the refund her membership ended);
    Eve pays at a till on June 25 then deletes her account on June 28; Fay paid by card in
    May for May 15 to June 14 and is back by card on June 20; Gus's till month from May 2
    ends on the stroke of midnight that starts June: it lapsed in May. Refunds count in the
    month they are made, in /stats as in settlement."""
    june = datetime(2026, 6, 1, tzinfo=UTC)
    july = datetime(2026, 7, 1, tzinfo=UTC)
    async with sessions() as s:
        ann, bob, cy, dee, eve, fay, gus = [await join(s, program, tg) for tg in range(1, 8)]
        await record_payment(s, program, till(gus, "t-gus", june - CLUB_PERIOD))
        await record_payment(s, program, stars(ann, "s-ann", june))
        await record_payment(s, program, till(bob, "t-bob", datetime(2026, 5, 20, tzinfo=UTC)))
        await record_payment(s, program, card(cy, "c-cy", june + 4 * DAY, "30.00"))
        await record_payment(s, program, stars(dee, "s-dee", datetime(2026, 4, 20, tzinfo=UTC)))
        # Telegram renews a subscription just before its end.
        await record_payment(
            s, program, stars(dee, "s-dee-2", datetime(2026, 5, 19, 23, tzinfo=UTC))
        )
        await record_payment(s, program, till(eve, "t-eve", june + 24 * DAY, "31.00"))
        await record_payment(s, program, card(fay, "c-fay-1", datetime(2026, 5, 15, tzinfo=UTC)))
        await record_payment(s, program, card(fay, "c-fay-2", june + 19 * DAY, "32.00"))
        cy_paid = await scalar(s, select(ClubPayment.id).where(ClubPayment.charge_id == "c-cy"))
        dee_paid = await scalar(
            s, select(ClubPayment.id).where(ClubPayment.charge_id == "s-dee-2")
        )
        await record_refund(s, cy_paid, actor=OWNER, owners=OWNERS, now=june + 9 * DAY)
        await record_refund(s, dee_paid, actor=OWNER, owners=OWNERS, now=june + 11 * DAY)
        await delete_member(s, await get_member(s, eve), now=june + 27 * DAY)
        await record_payment(s, program, stars(ann, "s-ann-2", july - timedelta(hours=1)))

        at_april_end = await club_figures(
            s,
            start=datetime(2026, 4, 1, tzinfo=UTC),
            end=datetime(2026, 5, 1, tzinfo=UTC),
            now=NOW,
        )
        at_may_end = await club_figures(
            s, start=datetime(2026, 5, 1, tzinfo=UTC), end=june, now=NOW
        )
        in_june = await club_figures(s, start=june, end=july, now=july + 5 * DAY)
    assert (at_april_end.members, at_april_end.joined, at_april_end.lapsed) == (1, 1, 0)
    # May 31: Bob, Dee (April 20 + 30 days, then to June 19), Fay; Gus has just lapsed.
    assert (at_may_end.members, at_may_end.joined, at_may_end.lapsed) == (3, 3, 1)
    assert at_may_end.members == at_april_end.members + at_may_end.joined - at_may_end.lapsed
    # June 30: Ann (renewed), Fay (back).
    assert in_june.members == 2
    # Joined: Ann, Cy, Eve, Fay's return; lapsed: Bob (June 19), Cy and Dee (refunded),
    # Eve (deleted), Fay (June 14).
    assert (in_june.joined, in_june.lapsed) == (4, 5)
    assert in_june.members == at_may_end.members + in_june.joined - in_june.lapsed
    # Dee's Stars were paid in May and refunded in June: June gave them back.
    assert (in_june.stars_paid, in_june.stars_refunded, in_june.stars_kept) == (500, 250, 250)
    assert (at_may_end.stars_paid, at_may_end.stars_refunded) == (250, 0)
    [money] = in_june.money
    assert (money.currency, money.card, money.till) == ("PLN", D("62.00"), D("31.00"))
    assert (money.refunded, money.paid, money.kept) == (D("30.00"), D("93.00"), D("63.00"))

    # Bob's May till month is given back in July: July's figures and July's settlement
    # count it, May's and June's stay as they were.
    async with sessions() as s:
        bob_paid = await scalar(s, select(ClubPayment.id).where(ClubPayment.charge_id == "t-bob"))
        await record_refund(s, bob_paid, actor=OWNER, owners=OWNERS, now=july + DAY)
        august = datetime(2026, 8, 1, tzinfo=UTC)
        in_july = await club_figures(s, start=july, end=august, now=august)
        again_in_june = await club_figures(s, start=june, end=july, now=august)
        again_in_may = await club_figures(
            s, start=datetime(2026, 5, 1, tzinfo=UTC), end=june, now=august
        )
        settled = {
            month: (await settlement(s, program, start=month, end=end)).club_money
            for month, end in (
                (datetime(2026, 5, 1, tzinfo=UTC), june),
                (june, july),
                (july, august),
            )
        }
    [july_money] = in_july.money
    assert (july_money.paid, july_money.refunded, july_money.kept) == (
        D("0"),
        D("29.00"),
        D("-29.00"),
    )
    assert again_in_june == in_june
    assert [m.refunded for m in again_in_may.money] == [D("0")]
    # Settlement: Gus's and Bob's months in May, Eve's in June, Bob's given back in July.
    assert list(settled.values()) == [D("58.00"), D("31.00"), D("-29.00")]

    # A period still running counts the members of now, and no lapse still to come.
    async with sessions() as s:
        running = await club_figures(s, start=june, end=july, now=june + 15 * DAY)
    # On June 16: Ann and Bob are in; Cy, Dee and Fay's first month have ended.
    assert (running.members, running.joined, running.lapsed) == (2, 2, 3)


async def test_the_figures_follow_a_refund_that_only_shortens_a_membership(
    sessions: Sessions, program: Program
) -> None:
    """Ann buys a till month on May 1 and extends it with Stars on May 10; the till month is
    refunded on May 15: its 16 days still ahead go, and she stays a member to June 14."""
    may, june, july = (datetime(2026, m, 1, tzinfo=UTC) for m in (5, 6, 7))
    async with sessions() as s:
        ann = await join(s, program, 1)
        month = await record_payment(s, program, till(ann, "t-1", may))
        await record_payment(s, program, stars(ann, "s-1", may + 9 * DAY))
        done = await record_refund(
            s, month.payment_id, actor=OWNER, owners=OWNERS, now=may + 14 * DAY
        )
        assert done.ends_at == june + 13 * DAY and not done.ended
        in_may = await club_figures(s, start=may, end=june, now=july)
        in_june = await club_figures(s, start=june, end=july, now=july)
    assert (in_may.members, in_may.joined, in_may.lapsed) == (1, 1, 0)
    assert (in_june.members, in_june.joined, in_june.lapsed) == (0, 0, 1)


# --------------------------------------------------------------------------- the segment


async def test_the_club_segment_is_the_members_in_the_club_when_it_is_sent(
    sessions: Sessions, program: Program
) -> None:
    async with sessions() as s:
        ann = await join(s, program, 1, marketing_consent=True)
        bob = await join(s, program, 2, marketing_consent=True, language="pl")
        cy = await join(s, program, 3, marketing_consent=True)
        shy = await join(s, program, 4, marketing_consent=False)
        await join(s, program, 5, marketing_consent=True)  # never in the club
        await record_payment(s, program, stars(ann, "s-1", NOW))
        await record_payment(s, program, till(bob, "t-1", NOW))
        await record_payment(s, program, card(cy, "c-1", NOW - CLUB_PERIOD - DAY))  # lapsed
        await record_payment(s, program, till(shy, "t-2", NOW))
        club = Segment(club=True)
        assert Segment.from_json(club.to_json()) == club and club.to_json() == {"club": True}
        assert Segment().to_json() == {}
        assert await audience_size(s, club, NOW) == 2
        assert await audience_size(s, Segment(club=True, language="pl"), NOW) == 1
        assert await audience_size(s, Segment(), NOW) == 4
        # Bob's month ends before the campaign goes out: he is not in its audience then.
        campaign = await create_campaign(s, created_by=OWNER, segment=club, text="Club night")
        sent_at = NOW + CLUB_PERIOD + DAY
        await record_payment(s, program, stars(ann, "s-2", NOW + CLUB_PERIOD - DAY))
        assert await start_campaign(s, campaign, now=sent_at) == 1
        queued = (await s.execute(select(Outbox.member_id))).scalars().all()
        await s.rollback()
        assert queued == [ann]


# --------------------------------------------------------------------------- refunds


async def test_a_refund_is_recorded_once_and_takes_back_only_what_its_payment_bought(
    sessions: Sessions, program: Program
) -> None:
    """Ann's Stars month, then Telegram's renewal of it. Refunding the first month three
    days in takes off its 27 days still ahead (the renewal's month stays, earlier) and
    cancels the subscription it was of; refunding the renewal then ends the membership."""
    async with sessions() as s:
        ann = await join(s, program, 1)
        paid = await record_payment(s, program, stars(ann, "s-1", NOW))
        renewal = await record_payment(
            s, program, stars(ann, "s-2", paid.ends_at - DAY, recurring=True)
        )
        assert renewal.ends_at == NOW + 2 * CLUB_PERIOD
        when = NOW + 3 * DAY
        with pytest.raises(UnknownTransaction):
            await record_refund(s, 12345, actor=OWNER, owners=OWNERS, now=when)
        assert (await membership(s, ann)).ends_at == renewal.ends_at  # type: ignore[union-attr]

        done = await record_refund(
            s, paid.payment_id, actor=OWNER, owners=OWNERS, now=when, telegram="refunded"
        )
        kept = renewal.ends_at - (paid.ends_at - when)
        assert done.new and done.told and done.ends_at == kept and done.was == renewal.ends_at
        assert done.shortened and not done.ended and done.points_back == 0
        assert done.payment.refunded_at == when and done.cancel_subscription == "s-2"
        now_member = await membership(s, ann)
        assert now_member is not None and now_member.ends_at == kept
        assert not now_member.renews and now_member.subscription_charge_id is None
        # The renewal's month moved back with the membership: it says what it bought.
        periods = dict(
            (
                await s.execute(
                    select(ClubPayment.charge_id, ClubPayment.period_until).order_by(
                        ClubPayment.id
                    )
                )
            ).all()
        )
        await s.rollback()
        assert periods == {"s-1": paid.ends_at, "s-2": kept}
        again = await record_refund(s, paid.payment_id, actor=OWNER, owners=OWNERS, now=when + DAY)
        assert not again.new and again.payment.refunded_at == when
        assert await scalar(s, select(func.count()).where(AuditLog.action == "club_refund")) == 1
        audit = await audited(s)
        assert audit.actor_telegram_id == OWNER and audit.member_id == ann
        assert audit.details["charge_id"] == "s-1" and audit.details["telegram"] == "refunded"
        assert audit.details["subscription"] == "s-2" and audit.details["points_back"] == "0"
        told = await notices(s, "club_refunded")
        assert told == [
            (
                ann,
                "club_refunded",
                {
                    "method": "stars",
                    "amount": "250.00",
                    "currency": "XTR",
                    "ends_at": kept.isoformat(),
                    "shortened": True,
                    "ended": False,
                    "points_back": 0,
                },
            )
        ]
        # Still a member: the daily job says nothing of an end.
        assert await tell_club_lapses(s, when + 5 * DAY) == ClubTold()
        # The renewal's month is given back too: nothing is left, the membership ends now.
        later = await record_refund(
            s, renewal.payment_id, actor=OWNER, owners=OWNERS, now=when + 2 * DAY
        )
        assert later.new and later.ended and later.ends_at == when + 2 * DAY
        assert later.cancel_subscription is None  # its subscription was cancelled already
        # The refund said it ended: the daily job says nothing more about it.
        assert await tell_club_lapses(s, when + 10 * DAY) == ClubTold()


async def test_refunding_an_old_till_month_leaves_the_stars_month_and_its_subscription(
    sessions: Sessions, program: Program
) -> None:
    """A till month bought a year ago, and a Stars month now: giving back the till month
    takes nothing from the Stars month (its time is over) and leaves the subscription."""
    async with sessions() as s:
        ann = await join(s, program, 1)
        old = await record_payment(s, program, till(ann, "t-1", NOW - 365 * DAY))
        now_paid = await record_payment(s, program, stars(ann, "s-1", NOW - 5 * DAY))
        done = await record_refund(s, old.payment_id, actor=OWNER, owners=OWNERS, now=NOW)
        assert done.new and not done.shortened and not done.ended
        assert done.ends_at == now_paid.ends_at and done.cancel_subscription is None
        found = await membership(s, ann)
        assert found is not None and found.ends_at == now_paid.ends_at
        assert found.renews and found.subscription_charge_id == "s-1"
        [(_m, _k, told)] = await notices(s, "club_refunded")
        assert told["ends_at"] == now_paid.ends_at.isoformat() and not told["shortened"]
        # A till month bought during the Stars month (after it in time) is refunded: only
        # its own month goes, and the subscription, of another payment, stays.
        extra = await record_payment(s, program, till(ann, "t-2", NOW))
        assert extra.period_from == now_paid.ends_at
        done = await record_refund(s, extra.payment_id, actor=OWNER, owners=OWNERS, now=NOW)
        assert done.ends_at == now_paid.ends_at and done.cancel_subscription is None
        assert (await membership(s, ann)).renews  # type: ignore[union-attr]


async def test_a_refund_takes_the_welcome_points_back_as_far_as_the_wallet_holds(
    sessions: Sessions,
) -> None:
    """Ann's first payment brought 500 welcome points and she kept them all; Bob spent 300
    of his: only the 250 his wallet holds go back. Cy's second payment brought none."""
    data = copy.deepcopy(TEST_PROGRAM)
    data["club"] = {"name": "City Club", "stars_per_month": 250, "welcome_points": 500}
    program = parse_program(data)
    async with sessions() as s:
        ann, bob = await join(s, program, 1), await join(s, program, 2)
        a = await record_payment(s, program, stars(ann, "s-a", NOW))
        b = await record_payment(s, program, stars(bob, "s-b", NOW))
        assert a.welcome_points == b.welcome_points == 500
        await adjust(s, program, member_id=bob, points=-300, reason="spent", key="spend-bob")
        assert (await get_member(s, bob)).balance == 50 + 500 - 300
        done = await record_refund(s, a.payment_id, actor=OWNER, owners=OWNERS, now=NOW + DAY)
        assert done.points_back == 500 and done.payment.welcome_points == 500
        assert (await get_member(s, ann)).balance == 50
        done = await record_refund(s, b.payment_id, actor=OWNER, owners=OWNERS, now=NOW + DAY)
        assert done.points_back == 250
        assert (await get_member(s, bob)).balance == 0
        told = await notices(s, "club_refunded")
        assert [p["points_back"] for _m, _k, p in told] == [500, 250]
        # Refunded twice: nothing more is taken.
        again = await record_refund(s, b.payment_id, actor=OWNER, owners=OWNERS, now=NOW + DAY)
        assert not again.new and again.points_back == 0
        assert (await get_member(s, bob)).balance == 0
        taken_back = await scalar(
            s,
            select(func.count()).where(
                Transaction.kind == TxKind.REVERSE, Transaction.member_id.in_([ann, bob])
            ),
        )
        assert taken_back == 2


async def test_only_an_owner_records_a_refund_whatever_the_caller_says(
    sessions: Sessions, program: Program
) -> None:
    """The use case reads the roles itself: a manager (staff, not an owner) and a stranger
    are refused, and nothing is recorded."""
    async with sessions() as s:
        ann = await join(s, program, 1)
        paid = await record_payment(s, program, card(ann, "c-1", NOW))
        token = await create_invite(s, created_by=OWNER, role="manager", partner_slug="coffee")
        manager = await accept_invite(s, token, telegram_id=77)
        assert manager.role == "manager"
        for actor in (77, 99):
            with pytest.raises(NotStaff):
                await record_refund(s, paid.payment_id, actor=actor, owners=OWNERS, now=NOW)
        assert await scalar(s, select(ClubPayment.refunded_at)) is None
        done = await record_refund(s, paid.payment_id, actor=OWNER, owners=OWNERS, now=NOW)
        assert done.new and done.ended


async def test_refunding_a_payment_of_a_lapsed_membership_does_not_bring_it_back(
    sessions: Sessions, program: Program
) -> None:
    async with sessions() as s:
        bob = await join(s, program, 2)
        paid = await record_payment(s, program, till(bob, "t-1", NOW))
        when = paid.ends_at + 10 * DAY
        done = await record_refund(s, paid.payment_id, actor=OWNER, owners=OWNERS, now=when)
        assert done.new and done.ends_at == paid.ends_at and done.ended and not done.shortened
        assert done.payment.partner_id == 1 and done.payment.method == "till"
        audit = await audited(s)
        assert audit.partner_id == 1 and audit.details["telegram"] is None


async def test_a_deleted_members_payment_is_refunded_without_telling_anyone(
    sessions: Sessions, program: Program
) -> None:
    async with sessions() as s:
        cy = await join(s, program, 3)
        paid = await record_payment(s, program, card(cy, "c-1", NOW))
        await delete_member(s, await get_member(s, cy), now=NOW + DAY)
        done = await record_refund(
            s, paid.payment_id, actor=OWNER, owners=OWNERS, now=NOW + 2 * DAY
        )
        assert done.new and not done.told and done.ends_at == NOW + DAY
        assert await notices(s, "club_refunded") == []


# --------------------------------------------------------------------------- bought nothing


async def test_a_payment_that_bought_nothing_is_claimed_refunded_and_told_once(
    sessions: Sessions, program: Program
) -> None:
    """Telegram delivers one card payment from a deleted account three times at once: one
    delivery claims it and tells the owners; the others do nothing. A charge recorded as a
    club payment is never claimed."""

    async def claim(charge: str) -> bool:
        async with sessions() as s:
            return await claim_unclaimed(
                s,
                charge_id=charge,
                method="card",
                currency="PLN",
                amount=D("29.00"),
                reason="not_member",
            )

    assert sorted(await asyncio.gather(*(claim("c-9") for _ in range(3)))) == [
        False,
        False,
        True,
    ]

    async def settle(refunded: bool) -> bool:
        async with sessions() as s:
            return await unclaimed_payment(
                s,
                telegram_id=555,
                name="Zed",
                charge_id="c-9",
                provider_charge_id="p-9",
                method="card",
                currency="PLN",
                amount=D("29.00"),
                refunded=refunded,
                reason="not_member",
                owners=OWNERS,
            )

    assert await settle(False) and not await settle(False)
    # The owners refund it later (/club_refund with its charge): recorded over it, once.
    assert await settle(True) and not await settle(True) and not await settle(False)
    async with sessions() as s:
        row = (await s.execute(select(ClubUnclaimed))).scalar_one()
        assert (row.charge_id, row.refunded, row.reason) == ("c-9", True, "not_member")
        told = await notices(s, "club_unclaimed")
        assert [p["charge_id"] for _m, _k, p in told] == ["c-9"]  # the owners, told once
        assert (
            await scalar(
                s, select(func.count()).where(AuditLog.action == "club_payment_unclaimed")
            )
            == 2
        )
        ann = await join(s, program, 1)
        await record_payment(s, program, card(ann, "c-1", NOW))
    assert not await claim("c-1")  # recorded: a delivery again bought what it bought
