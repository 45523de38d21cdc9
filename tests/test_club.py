"""The club's core on a real PostgreSQL: a payment recorded exactly once, the membership
it buys (extended, never shortened), the welcome points once per person ever, renewal
switched off and on, and deletion. The ledger's invariants are checked after each test."""

from __future__ import annotations

import asyncio
import copy
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.ledger.models import ClubPayment, Notice, Transaction, TxKind
from db.queries.club import in_club, membership
from db.rules import club as rules
from db.rules.errors import NoClub, UnknownMember
from db.rules.program import CLUB_PERIOD, Program, parse_program
from db.rules.tokens import identity_hash
from db.usecases.club import Payment, record_payment, set_renewal
from db.usecases.members import get_member, register_member
from db.usecases.privacy import delete_member
from tests.conftest import TEST_PROGRAM

D = Decimal
Sessions = async_sessionmaker[AsyncSession]
NOW = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)
CLUB = {
    "name": "City Club",
    "stars_per_month": 250,
    "price": "29.00",
    "multiplier": "1.5",
    "discount_percent": "5",
    "welcome_points": 500,
}


def club_program(**club: Any) -> Program:
    data = copy.deepcopy(TEST_PROGRAM)
    data["club"] = {**CLUB, **club}
    return parse_program(data)


@pytest.fixture
def program() -> Program:
    return club_program()


def stars(member_id: int, charge: str, now: datetime = NOW, **more: Any) -> Payment:
    return Payment(
        member_id=member_id,
        charge_id=charge,
        method="stars",
        currency="XTR",
        amount=D(250),
        now=now,
        until=now + CLUB_PERIOD,
        renews=True,
        **more,
    )


async def count(s: AsyncSession, what: Any, *where: Any) -> int:
    n = await s.scalar(select(func.count()).select_from(what).where(*where))
    await s.rollback()
    return int(n or 0)


def test_a_payment_buys_thirty_days_after_what_is_paid() -> None:
    start, end = rules.period(None, NOW)
    assert (start, end) == (NOW, NOW + CLUB_PERIOD)
    later = NOW + timedelta(days=10)
    assert rules.period(later, NOW) == (later, later + CLUB_PERIOD)
    assert rules.period(NOW - timedelta(1), NOW) == (NOW, NOW + CLUB_PERIOD)
    until = NOW + timedelta(days=31)
    assert rules.period(None, NOW, until) == (NOW, until)
    assert rules.parse_payload(rules.payload("stars", 42)) == ("stars", 42)
    for bad in (
        "club:stars:",
        "club:till:4",
        "club:card:4x",
        "x",
        "club:card:1234567890123456789",
    ):
        assert rules.parse_payload(bad) is None


def test_reminders_and_lapses_are_told_once_per_end() -> None:
    end = NOW + timedelta(days=2)
    assert rules.remind_due(end, False, None, NOW)
    assert not rules.remind_due(end, True, None, NOW)  # Telegram renews it
    assert not rules.remind_due(end, False, end, NOW)  # told
    assert not rules.remind_due(NOW + timedelta(days=4), False, None, NOW)
    assert rules.lapse_due(NOW, False, None, NOW)
    assert not rules.lapse_due(NOW, True, None, NOW + timedelta(hours=23))
    assert not rules.lapse_due(NOW, False, NOW, NOW + timedelta(days=5))
    # Renewing: a renewal on whose charge, due at Telegram's own end, may still come.
    later = NOW + timedelta(hours=23)
    assert rules.renewing(True, NOW, later)
    assert not rules.renewing(True, NOW, NOW + rules.RENEWAL_GRACE)  # it never came
    assert not rules.renewing(False, NOW + timedelta(days=9), NOW)  # stopped
    assert not rules.renewing(True, None, NOW)
    late = NOW + rules.RENEWAL_GRACE
    assert rules.lapse_due(NOW, rules.renewing(True, NOW, late), None, late)


def test_a_subscription_is_switched_while_it_renews_or_its_time_runs() -> None:
    until = NOW + timedelta(days=5)
    assert rules.renewable("s-1", True, until, NOW)
    assert rules.renewable("s-1", False, until, NOW)  # stopped: may be resumed
    assert not rules.renewable(None, True, until, NOW)
    assert not rules.renewable("s-1", False, until, until)  # its time is over
    # Within the grace its renewal may still be stopped; after it, nothing renews.
    assert rules.renewable("s-1", True, until, until + timedelta(hours=1))
    assert not rules.renewable("s-1", True, until, until + rules.RENEWAL_GRACE)


def test_a_refund_takes_back_only_the_unused_part_of_its_payment() -> None:
    day = timedelta(days=1)
    end = NOW + 40 * day
    # A payment for the month ahead (not begun): all its 30 days go.
    assert rules.after_refund(end, NOW + 10 * day, end, NOW) == NOW + 10 * day
    # A payment half used: the rest of it goes.
    assert rules.after_refund(end, NOW - 15 * day, NOW + 15 * day, NOW) == NOW + 25 * day
    # A payment whose time is over takes nothing back.
    assert rules.after_refund(end, NOW - 60 * day, NOW - 30 * day, NOW) == end
    # Never before now; never later than it was (ended already: stays so).
    assert rules.after_refund(NOW + day, NOW - day, NOW + 29 * day, NOW) == NOW
    assert rules.after_refund(NOW - day, NOW - 5 * day, NOW + 25 * day, NOW) == NOW - day


async def test_a_charge_is_recorded_once_and_extends_the_membership(
    sessions: Sessions, program: Program
) -> None:
    async with sessions() as s:
        member = await register_member(s, program, telegram_id=1, now=NOW - timedelta(1))
        first = await record_payment(s, program, stars(member.id, "charge-1"))
        assert first.new and first.joined and first.welcome_points == 500
        assert first.ends_at == NOW + CLUB_PERIOD and first.renews
        again = await record_payment(s, program, stars(member.id, "charge-1"))
        assert not again.new and again.ends_at == first.ends_at
        assert again.welcome_points == 500 and again.joined  # what the first time did
        assert await count(s, ClubPayment) == 1
        assert await count(s, Transaction, Transaction.kind == TxKind.CLUB) == 1
        assert (await get_member(s, member.id)).balance == 50 + 500
        renewal_at = first.ends_at - timedelta(minutes=5)
        renewed = await record_payment(
            s, program, stars(member.id, "charge-2", renewal_at, recurring=True)
        )
        assert renewed.new and not renewed.joined and renewed.welcome_points == 0
        assert renewed.period_from == first.ends_at
        assert renewed.ends_at == first.ends_at + CLUB_PERIOD
        late = renewed.ends_at + timedelta(hours=2)  # Telegram's charge reached us late
        continued = await record_payment(
            s, program, stars(member.id, "charge-3", late, recurring=True)
        )
        assert not continued.joined and continued.period_from == late
        kinds = [k for (k,) in (await s.execute(select(Notice.kind).order_by(Notice.id))).all()]
        await s.rollback()
        assert kinds.count("club_paid") == 3


async def test_time_paid_at_a_till_is_kept_when_paying_with_stars(
    sessions: Sessions, program: Program
) -> None:
    async with sessions() as s:
        member = await register_member(s, program, telegram_id=1, now=NOW - timedelta(1))
        till = Payment(member.id, "till:1", "till", "EUR", D("29.00"), NOW, partner_id=1)
        bought = await record_payment(s, program, till)
        assert bought.ends_at == NOW + CLUB_PERIOD and not bought.renews
        later = NOW + timedelta(days=5)
        paid = await record_payment(s, program, stars(member.id, "charge-1", later))
        assert paid.period_from == NOW + CLUB_PERIOD  # not lost to Telegram's own date
        assert paid.ends_at == NOW + 2 * CLUB_PERIOD and paid.renews
        assert paid.welcome_points == 0  # paid with the first membership
        assert await in_club(s, member.id, NOW + 2 * CLUB_PERIOD - timedelta(seconds=1))
        assert not await in_club(s, member.id, NOW + 2 * CLUB_PERIOD)


async def test_concurrent_deliveries_of_one_charge_record_it_once(
    sessions: Sessions, program: Program
) -> None:
    async with sessions() as s:
        member = await register_member(s, program, telegram_id=1, now=NOW - timedelta(1))

    async def deliver() -> Any:
        async with sessions() as s:
            return await record_payment(s, program, stars(member.id, "charge-1"))

    results = await asyncio.gather(*(deliver() for _ in range(6)))
    assert sorted(r.new for r in results) == [False] * 5 + [True]
    assert {r.ends_at for r in results} == {NOW + CLUB_PERIOD}
    async with sessions() as s:
        assert await count(s, ClubPayment) == 1
        assert (await get_member(s, member.id)).balance == 550


async def test_the_welcome_points_are_paid_once_per_person_ever(
    sessions: Sessions, program: Program
) -> None:
    secret = b"test-secret"
    identity = identity_hash(secret, 1)
    async with sessions() as s:
        member = await register_member(s, program, telegram_id=1, now=NOW - timedelta(1))
        await record_payment(s, program, stars(member.id, "charge-1"), identity=identity)
        back = NOW + CLUB_PERIOD + timedelta(days=40)  # lapsed, then back
        rejoined = await record_payment(s, program, stars(member.id, "charge-2", back))
        assert rejoined.joined and rejoined.welcome_points == 0
        info = await get_member(s, member.id)
        await delete_member(s, info, identity=identity, now=back + timedelta(1))
        assert not await in_club(s, member.id, back + timedelta(days=2))
        assert (await membership(s, member.id)) is not None
        assert not (await membership(s, member.id)).renews  # type: ignore[union-attr]
        with pytest.raises(UnknownMember):
            await record_payment(s, program, stars(member.id, "charge-3", back + timedelta(2)))
        again = await register_member(s, program, telegram_id=1, now=back + timedelta(3))
        paid = await record_payment(
            s, program, stars(again.id, "charge-4", back + timedelta(3)), identity=identity
        )
        assert paid.joined and paid.welcome_points == 0
        assert await count(s, ClubPayment, ClubPayment.charge_id == "charge-3") == 0


async def test_renewal_is_switched_off_and_on_once(sessions: Sessions, program: Program) -> None:
    async with sessions() as s:
        member = await register_member(s, program, telegram_id=1, now=NOW - timedelta(1))
        assert not await set_renewal(s, member.id, False)  # no subscription yet
        await record_payment(s, program, stars(member.id, "charge-1"))
        assert await set_renewal(s, member.id, False)
        assert not await set_renewal(s, member.id, False)
        assert not (await membership(s, member.id)).renews  # type: ignore[union-attr]
        assert await set_renewal(s, member.id, True)
        assert (await membership(s, member.id)).renews  # type: ignore[union-attr]


async def test_no_club_sells_nothing(sessions: Sessions) -> None:
    plain = parse_program(copy.deepcopy(TEST_PROGRAM))
    async with sessions() as s:
        member = await register_member(s, plain, telegram_id=1, now=NOW)
        with pytest.raises(NoClub):
            await record_payment(s, plain, stars(member.id, "charge-1"))
        assert await count(s, ClubPayment) == 0


def card(member_id: int, charge: str, now: datetime = NOW) -> Payment:
    return Payment(member_id, charge, "card", "EUR", D("29.00"), now, provider_charge_id="p")


def till(member_id: int, charge: str, now: datetime = NOW) -> Payment:
    return Payment(member_id, charge, "till", "EUR", D("29.00"), now, partner_id=1)


@pytest.mark.parametrize(
    "pair",
    [("stars", "card"), ("till", "stars"), ("card", "card")],
    ids=["stars and card", "till and stars", "two cards"],
)
async def test_two_first_payments_for_one_member_at_once_are_both_recorded(
    sessions: Sessions, program: Program, pair: tuple[str, str]
) -> None:
    """Nobody's membership exists yet: both payments must queue on it, not both insert it
    (a member who pays two card invoices, a till month sold as a Stars payment lands)."""
    makers = {"stars": stars, "card": card, "till": till}
    async with sessions() as s:
        members = [
            (await register_member(s, program, telegram_id=tg, now=NOW - timedelta(1))).id
            for tg in range(1, 6)
        ]

    async def pay(payment: Payment) -> Any:
        async with sessions() as s:
            return await record_payment(s, program, payment)

    results = await asyncio.gather(
        *(
            pay(makers[method](member, f"{method}-{member}-{n}"))
            for member in members
            for n, method in enumerate(pair)
        )
    )
    assert all(r.new for r in results)
    async with sessions() as s:
        for member in members:
            found = await membership(s, member)
            assert found is not None and found.ends_at == NOW + 2 * CLUB_PERIOD
            assert (await get_member(s, member)).balance == 50 + 500  # welcomed once
        assert await count(s, ClubPayment) == 2 * len(members)
        assert await count(s, Transaction, Transaction.kind == TxKind.CLUB) == len(members)
    # One of each pair joined; the other extended what it bought.
    assert sorted(r.joined for r in results) == [False] * len(members) + [True] * len(members)


async def test_a_charge_delivered_again_after_the_payer_left_is_replayed(
    sessions: Sessions, program: Program
) -> None:
    """Recorded, then the account deleted, then Telegram delivers the update again (its
    answer was lost): the charge bought its membership, it is not one that bought nothing."""
    async with sessions() as s:
        member = await register_member(s, program, telegram_id=1, now=NOW - timedelta(1))
        first = await record_payment(s, program, stars(member.id, "charge-1"))
        await delete_member(s, await get_member(s, member.id), now=NOW + timedelta(1))
        again = await record_payment(s, program, stars(member.id, "charge-1"))
        assert not again.new and again.payment_id == first.payment_id
        with pytest.raises(UnknownMember):  # a new charge of a deleted account
            await record_payment(s, program, stars(member.id, "charge-2"))


async def test_telegrams_end_of_the_subscription_is_kept_apart_from_the_membership(
    sessions: Sessions, program: Program
) -> None:
    """A till month, then a Stars subscription taken during it: the membership runs to the
    end of both, Telegram charges again 30 days after the subscription began."""
    async with sessions() as s:
        member = await register_member(s, program, telegram_id=1, now=NOW - timedelta(1))
        await record_payment(s, program, till(member.id, "till:1"))
        subscribed = NOW + timedelta(days=5)
        paid = await record_payment(s, program, stars(member.id, "charge-1", subscribed))
        assert paid.ends_at == NOW + 2 * CLUB_PERIOD and paid.renews
        assert paid.subscription_until == subscribed + CLUB_PERIOD
        found = await membership(s, member.id)
        assert found is not None and found.subscription_until == subscribed + CLUB_PERIOD
        assert found.renewing(subscribed + CLUB_PERIOD + timedelta(hours=1))
        # Telegram's renewal never comes: a day after its charge was due nothing renews,
        # though the membership still runs.
        overdue = subscribed + CLUB_PERIOD + rules.RENEWAL_GRACE
        assert found.active(overdue) and not found.renewing(overdue)
        [params] = (
            await s.execute(
                select(Notice.params)
                .where(Notice.kind == "club_paid")
                .order_by(Notice.id.desc())
                .limit(1)
            )
        ).one()
        await s.rollback()
        assert params["subscription_until"] == (subscribed + CLUB_PERIOD).isoformat()


async def test_a_membership_paid_another_way_after_a_subscription_lapsed_does_not_renew(
    sessions: Sessions, program: Program
) -> None:
    """The Stars subscription's renewal never came (no Stars left, or cancelled in
    Telegram); ten days after the membership ended a month is bought at a till."""
    async with sessions() as s:
        member = await register_member(s, program, telegram_id=1, now=NOW - timedelta(1))
        await record_payment(s, program, stars(member.id, "charge-1"))
        back = NOW + CLUB_PERIOD + timedelta(days=10)
        bought = await record_payment(s, program, till(member.id, "till:1", back))
        assert bought.joined and not bought.renews and bought.subscription_until is None
        found = await membership(s, member.id)
        assert found is not None and found.active(back)
        assert not found.renews and found.subscription_charge_id is None
        assert found.subscription_until is None and not found.renewable(back)
