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
    assert rules.lapse_due(NOW, True, None, NOW + timedelta(days=1))
    assert not rules.lapse_due(NOW, False, NOW, NOW + timedelta(days=5))


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
