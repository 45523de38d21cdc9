"""Stamp cards on real PostgreSQL: a sale's stamp and its rules (min_purchase, per_day in
the program's time zone, distinct_partners), a full card's reward (points or a voucher),
replays, refunds, lapses and their reminders, and concurrent sales. The ledger's invariants
are checked after each test (the `sessions` fixture)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import event, func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from db.ledger.models import (
    Account,
    AccountKind,
    Notice,
    PointLot,
    Transaction,
    TxKind,
    Voucher,
    VoucherSource,
)
from db.rules.program import Program, parse_program
from db.usecases.members import get_member, register_member
from db.usecases.partners import stamp_unit
from db.usecases.purchases import Refund, Sale, record_refund, record_sale
from db.usecases.stamp_lapses import lapse_due, remind_lapsing
from db.usecases.stamps import ADDED, BELOW_MIN, DAILY_LIMIT, FILLED, PARTNER_DONE
from tests.conftest import TEST_PROGRAM, make_program

D = Decimal
Sessions = async_sessionmaker[AsyncSession]
# Noon in Warsaw on the first day; the program's business days are Warsaw's.
DAY0 = datetime(2027, 3, 1, 11, 0, tzinfo=UTC)

STAMP_PROGRAM: dict[str, Any] = {
    **TEST_PROGRAM,
    "program": {**TEST_PROGRAM["program"], "timezone": "Europe/Warsaw"},
    "rewards": [
        {
            "slug": "free-coffee",
            "title": "A coffee of your choice",
            "partner": "coffee",
            "valid_days": 30,
        }
    ],
    "stamp_cards": [
        {
            "slug": "coffee-5",
            "name": "Fifth coffee free",
            "partners": ["coffee"],
            "stamps": 5,
            "min_purchase": "8.00",
            "per_day": 1,
            "reward": "free-coffee",
            "expire_days": 30,
        },
        {
            "slug": "tour",
            "name": "Town tour",
            "partners": ["books", "gym", "bakery"],
            "stamps": 3,
            "per_day": 0,
            "distinct_partners": True,
            "reward_points": 500,
        },
    ],
}


def stamp_program() -> Program:
    return parse_program(STAMP_PROGRAM)


@pytest.fixture
def program() -> Program:
    return stamp_program()


async def new_member(sessions: Sessions, program: Program, telegram_id: int = 1) -> int:
    async with sessions() as s:
        return (await register_member(s, program, telegram_id=telegram_id, now=DAY0)).id


async def sale(
    sessions: Sessions,
    program: Program,
    member: int,
    partner: str,
    amount: str,
    key: str,
    now: datetime = DAY0,
) -> Any:
    async with sessions() as s:
        return await record_sale(
            s, program, Sale(member_id=member, partner=partner, amount=D(amount), key=key, now=now)
        )


async def stamps_of(sessions: Sessions, member: int, card: str) -> int | None:
    async with sessions() as s:
        return await s.scalar(
            select(Account.balance).where(
                Account.member_id == member,
                Account.kind == AccountKind.STAMPS,
                Account.unit == stamp_unit(card),
            )
        )


async def count(sessions: Sessions, kind: str) -> int:
    async with sessions() as s:
        return int(await s.scalar(select(func.count()).where(Transaction.kind == kind)) or 0)


async def test_min_purchase_and_one_stamp_a_day_in_the_programs_time_zone(
    sessions: Sessions, program: Program
) -> None:
    m = await new_member(sessions, program)
    small = await sale(sessions, program, m, "coffee", "7.99", "s1")
    assert [(n.card, n.status) for n in small.stamps] == [("coffee-5", BELOW_MIN)]
    assert await stamps_of(sessions, m, "coffee-5") is None  # no account for nothing

    first = await sale(sessions, program, m, "coffee", "8.00", "s2")
    assert [(n.status, n.stamps, n.of) for n in first.stamps] == [(ADDED, 1, 5)]
    # 23:30 in Warsaw is still the same business day: no second stamp.
    late = DAY0.replace(hour=22, minute=30)
    again = await sale(sessions, program, m, "coffee", "9.00", "s3", now=late)
    assert [(n.status, n.stamps) for n in again.stamps] == [(DAILY_LIMIT, 1)]
    # 00:30 in Warsaw (23:30 UTC) is the next day there.
    next_day = await sale(
        sessions, program, m, "coffee", "9.00", "s4", now=late + timedelta(hours=1)
    )
    assert [(n.status, n.stamps) for n in next_day.stamps] == [(ADDED, 2)]
    assert await stamps_of(sessions, m, "coffee-5") == 2
    assert await count(sessions, TxKind.STAMP) == 2
    # The stamp is the sale's: same business transaction, its partner, its related sale.
    async with sessions() as s:
        stamp = (
            await s.execute(
                select(Transaction).where(
                    Transaction.kind == TxKind.STAMP,
                    Transaction.related_id == first.transaction_id,
                )
            )
        ).scalar_one()
        assert stamp.idempotency_key == "s2:stamp:coffee-5"
        assert stamp.created_at == DAY0


async def test_no_per_day_limit_and_a_tour_card_wants_each_partner_once(
    sessions: Sessions, program: Program
) -> None:
    m = await new_member(sessions, program)
    before = 0
    async with sessions() as s:
        before = (await get_member(s, m)).balance
    one = await sale(sessions, program, m, "books", "10.00", "t1")
    assert [(n.card, n.status, n.stamps) for n in one.stamps] == [("tour", ADDED, 1)]
    twice = await sale(sessions, program, m, "books", "10.00", "t2")
    assert [(n.status, n.stamps) for n in twice.stamps] == [(PARTNER_DONE, 1)]
    two = await sale(sessions, program, m, "gym", "10.00", "t3")
    assert [(n.status, n.stamps) for n in two.stamps] == [(ADDED, 2)]
    full = await sale(sessions, program, m, "bakery", "10.00", "t4")
    (news,) = full.stamps
    assert (news.status, news.stamps, news.reward_points) == (FILLED, 3, 500)
    replay = await sale(sessions, program, m, "bakery", "10.00", "t4")
    assert replay.replayed and replay.stamps == full.stamps
    earned = one.points_earned + twice.points_earned + two.points_earned + full.points_earned
    # The reward is in the sale's result balance, and in the wallet, as an expiring lot.
    assert full.balance == before + earned + 500
    async with sessions() as s:
        assert (await get_member(s, m)).balance == full.balance
        lot = (
            await s.execute(
                select(PointLot)
                .join(Transaction, Transaction.id == PointLot.transaction_id)
                .where(Transaction.kind == TxKind.CARD_FILLED)
            )
        ).scalar_one()
        assert lot.points == 500 and lot.expires_at == DAY0 + timedelta(days=365)
        # Funded by the partner where the card filled.
        issued = await s.scalar(
            text(
                "SELECT -sum(e.amount) FROM entries e JOIN accounts a ON a.id = e.account_id"
                " JOIN partners p ON p.id = a.partner_id JOIN transactions t"
                " ON t.id = e.transaction_id"
                " WHERE p.slug = 'bakery' AND a.kind = 'partner_issued'"
                " AND t.kind = 'card_filled'"
            )
        )
        assert issued == 500
    assert await stamps_of(sessions, m, "tour") == 0
    # A new card: the same partners stamp it again.
    again = await sale(sessions, program, m, "books", "10.00", "t5")
    assert [(n.status, n.stamps) for n in again.stamps] == [(ADDED, 1)]


async def test_a_full_card_issues_its_voucher_funded_by_the_partner(
    sessions: Sessions, program: Program
) -> None:
    m = await new_member(sessions, program)
    for day in range(4):
        done = await sale(
            sessions, program, m, "coffee", "8.00", f"c{day}", DAY0 + timedelta(days=day)
        )
        assert [(n.status, n.stamps) for n in done.stamps] == [(ADDED, day + 1)]
    full = await sale(sessions, program, m, "coffee", "8.00", "c4", DAY0 + timedelta(days=4))
    (news,) = full.stamps
    assert (news.status, news.stamps, news.reward) == (FILLED, 5, "free-coffee")
    async with sessions() as s:
        voucher = (await s.execute(select(Voucher))).scalar_one()
        filled = (
            await s.execute(select(Transaction).where(Transaction.kind == TxKind.CARD_FILLED))
        ).scalar_one()
        funder = await s.scalar(text("SELECT id FROM partners WHERE slug = 'coffee'"))
    assert voucher.code == news.voucher and voucher.member_id == m
    assert voucher.source == VoucherSource.STAMP_CARD and voucher.funder_id == funder
    assert voucher.source_tx_id == filled.id and filled.related_id == full.transaction_id
    assert voucher.expires_at == news.voucher_expires == DAY0 + timedelta(days=34)
    assert full.balance == full.points_earned + 4 * 40 + 50  # no points for a voucher card
    assert await stamps_of(sessions, m, "coffee-5") == 0


async def test_a_replayed_sale_adds_no_second_stamp_and_tells_the_first(
    sessions: Sessions, program: Program
) -> None:
    m = await new_member(sessions, program)
    first = await sale(sessions, program, m, "coffee", "12.00", "same")
    replay = await sale(sessions, program, m, "coffee", "12.00", "same")
    assert replay.replayed and replay.transaction_id == first.transaction_id
    assert [(n.status, n.stamps) for n in replay.stamps] == [(ADDED, 1)]
    assert await count(sessions, TxKind.STAMP) == 1
    assert await stamps_of(sessions, m, "coffee-5") == 1
    # A replay of the sale that filled a card tells the fill and its voucher.
    for day in range(1, 5):
        last = await sale(
            sessions, program, m, "coffee", "12.00", f"d{day}", DAY0 + timedelta(days=day)
        )
    again = await sale(sessions, program, m, "coffee", "12.00", "d4", DAY0 + timedelta(days=4))
    assert again.replayed and again.stamps == last.stamps
    assert await count(sessions, TxKind.CARD_FILLED) == 1


async def test_a_refund_takes_the_stamp_back(sessions: Sessions, program: Program) -> None:
    m = await new_member(sessions, program)
    done = await sale(sessions, program, m, "coffee", "20.00", "r1")
    async with sessions() as s:
        # What is left (15.00) still reaches the card's 8.00: the stamp stays.
        part = await record_refund(
            s,
            program,
            Refund(transaction_id=done.transaction_id, key="back1", reason="x", amount=D("5.00")),
        )
    assert part.stamps == ()
    assert await stamps_of(sessions, m, "coffee-5") == 1
    async with sessions() as s:
        rest = await record_refund(
            s,
            program,
            Refund(transaction_id=done.transaction_id, key="back2", reason="x", amount=D("10.00")),
        )
    assert [(b.card, b.taken_back, b.stamps) for b in rest.stamps] == [("coffee-5", True, 0)]
    assert await stamps_of(sessions, m, "coffee-5") == 0
    async with sessions() as s:
        back = (
            await s.execute(
                select(Transaction).where(
                    Transaction.kind == TxKind.REVERSE, Transaction.amount.is_(None)
                )
            )
        ).scalar_one()
        stamp_id = await s.scalar(select(Transaction.id).where(Transaction.kind == TxKind.STAMP))
        # The last refund leaves 5.00: nothing more to take.
        last = await record_refund(
            s, program, Refund(transaction_id=done.transaction_id, key="back3", reason="x")
        )
    assert back.reverses_id == stamp_id and back.related_id == rest.transaction_id
    assert last.stamps == ()
    async with sessions() as s:  # a replayed refund tells the same
        replay = await record_refund(
            s,
            program,
            Refund(transaction_id=done.transaction_id, key="back2", reason="x", amount=D("10.00")),
        )
    assert replay.replayed and replay.stamps == rest.stamps
    # The refunded stamp no longer counts for the day: a new purchase today gets one.
    again = await sale(sessions, program, m, "coffee", "9.00", "r2", DAY0 + timedelta(hours=1))
    assert [(n.status, n.stamps) for n in again.stamps] == [(ADDED, 1)]


async def test_a_refund_after_the_card_filled_keeps_the_stamp_and_the_reward(
    sessions: Sessions, program: Program
) -> None:
    m = await new_member(sessions, program)
    first = await sale(sessions, program, m, "books", "10.00", "f1")
    await sale(sessions, program, m, "gym", "10.00", "f2")
    await sale(sessions, program, m, "bakery", "10.00", "f3")  # fills: +500
    await sale(sessions, program, m, "gym", "10.00", "f4")  # the new card: 1
    async with sessions() as s:
        wallet = (await get_member(s, m)).balance
        refund = await record_refund(
            s, program, Refund(transaction_id=first.transaction_id, key="fb", reason="x")
        )
    assert [(b.card, b.taken_back, b.stamps) for b in refund.stamps] == [("tour", False, 1)]
    assert refund.balance == wallet - first.points_earned  # the 500 stay
    assert await stamps_of(sessions, m, "tour") == 1
    async with sessions() as s:
        replay = await record_refund(
            s, program, Refund(transaction_id=first.transaction_id, key="fb", reason="x")
        )
    assert replay.stamps == refund.stamps
    # The stamp of the new card comes back with its sale's refund.
    fourth = await _sale_id(sessions, "f4")
    async with sessions() as s:
        back = await record_refund(
            s, program, Refund(transaction_id=fourth, key="fb4", reason="x")
        )
    assert [(b.taken_back, b.stamps) for b in back.stamps] == [(True, 0)]


async def _sale_id(sessions: Sessions, key: str) -> int:
    async with sessions() as s:
        found = await s.scalar(select(Transaction.id).where(Transaction.idempotency_key == key))
    assert found is not None
    return found


async def notices(sessions: Sessions, kind: str) -> list[dict[str, Any]]:
    async with sessions() as s:
        return list(
            (
                await s.execute(
                    select(Notice.params).where(Notice.kind == kind).order_by(Notice.id)
                )
            ).scalars()
        )


async def test_stamps_lapse_after_expire_days_and_the_member_is_told_before(
    sessions: Sessions, program: Program
) -> None:
    m = await new_member(sessions, program)
    await sale(sessions, program, m, "coffee", "8.00", "l1")
    await sale(sessions, program, m, "coffee", "8.00", "l2", DAY0 + timedelta(days=2))
    last = DAY0 + timedelta(days=2)  # the card's last stamp: lapses 30 days after it

    async with sessions() as s:
        assert await remind_lapsing(s, program, last + timedelta(days=22)) == 0  # too early
        assert await remind_lapsing(s, program, last + timedelta(days=24)) == 1
        assert await remind_lapsing(s, program, last + timedelta(days=25)) == 0  # once
    (told,) = await notices(sessions, "stamps_lapsing")
    assert told["card"] == "coffee-5" and told["stamps"] == 2
    assert datetime.fromisoformat(told["lapses_at"]) == last + timedelta(days=30)

    async with sessions() as s:
        assert await lapse_due(s, program, last + timedelta(days=29, hours=23)) == []
        (lapsed,) = await lapse_due(s, program, last + timedelta(days=30))
        assert await lapse_due(s, program, last + timedelta(days=31)) == []  # once
    assert (lapsed.member_id, lapsed.card, lapsed.stamps) == (m, "coffee-5", 2)
    assert await stamps_of(sessions, m, "coffee-5") == 0
    (gone,) = await notices(sessions, "stamps_lapsed")
    assert gone == {"card": "coffee-5", "stamps": 2, "days": 30}

    # A new card is a new cycle: its member is reminded again, once.
    later = last + timedelta(days=40)
    await sale(sessions, program, m, "coffee", "8.00", "l3", later)
    async with sessions() as s:
        assert await remind_lapsing(s, program, later + timedelta(days=25)) == 1
        assert await remind_lapsing(s, program, later + timedelta(days=26)) == 0


async def test_a_stamp_before_the_lapse_keeps_the_card(
    sessions: Sessions, program: Program
) -> None:
    m = await new_member(sessions, program)
    await sale(sessions, program, m, "coffee", "8.00", "k1")
    await sale(sessions, program, m, "coffee", "8.00", "k2", DAY0 + timedelta(days=29))
    async with sessions() as s:
        assert await lapse_due(s, program, DAY0 + timedelta(days=31)) == []
    assert await stamps_of(sessions, m, "coffee-5") == 2
    # A card without expire_days never lapses.
    await sale(sessions, program, m, "books", "10.00", "k3")
    async with sessions() as s:
        lapsed = await lapse_due(s, program, DAY0 + timedelta(days=3650))
    assert [x.card for x in lapsed] == ["coffee-5"]
    assert await stamps_of(sessions, m, "tour") == 1


async def test_concurrent_sales_never_exceed_per_day(sessions: Sessions, program: Program) -> None:
    m = await new_member(sessions, program)
    results = await asyncio.gather(
        *(sale(sessions, program, m, "coffee", "10.00", f"p{i}") for i in range(12))
    )
    statuses = sorted(n.status for r in results for n in r.stamps)
    assert statuses == [ADDED] + [DAILY_LIMIT] * 11
    assert await stamps_of(sessions, m, "coffee-5") == 1
    assert await count(sessions, TxKind.STAMP) == 1


async def test_concurrent_sales_fill_a_card_once(sessions: Sessions, program: Program) -> None:
    m = await new_member(sessions, program)
    await sale(sessions, program, m, "books", "10.00", "a")
    await sale(sessions, program, m, "gym", "10.00", "b")
    async with sessions() as s:
        before = (await get_member(s, m)).balance
    # The card lacks only the bakery's stamp: one of these fills it, the next starts a new
    # card, and the rest find the bakery already on it.
    results = await asyncio.gather(
        *(sale(sessions, program, m, "bakery", "10.00", f"x{i}") for i in range(8))
    )
    statuses = sorted(n.status for r in results for n in r.stamps)
    assert statuses == sorted([FILLED, ADDED] + [PARTNER_DONE] * 6)
    assert await count(sessions, TxKind.CARD_FILLED) == 1
    assert await stamps_of(sessions, m, "tour") == 1
    async with sessions() as s:
        after = (await get_member(s, m)).balance
    assert after == before + sum(r.points_earned for r in results) + 500

    # A card one stamp from full, and a day's limit of one: one sale fills it, once.
    for day in range(4):
        await sale(sessions, program, m, "coffee", "8.00", f"c{day}", DAY0 + timedelta(days=day))
    day5 = DAY0 + timedelta(days=4)
    results = await asyncio.gather(
        *(sale(sessions, program, m, "coffee", "8.00", f"y{i}", day5) for i in range(8))
    )
    statuses = sorted(n.status for r in results for n in r.stamps)
    assert statuses == sorted([FILLED] + [DAILY_LIMIT] * 7)
    assert await count(sessions, TxKind.CARD_FILLED) == 2
    async with sessions() as s:
        assert await s.scalar(select(func.count()).select_from(Voucher)) == 1
    assert await stamps_of(sessions, m, "coffee-5") == 0


async def test_a_partner_without_stamp_cards_sells_as_before(
    engine: AsyncEngine, sessions: Sessions, program: Program
) -> None:
    """A sale at a partner no card names runs the statements it ran before stamp cards
    existed (a program without any), and a stamp costs a few more only where a card is."""
    coffee_only = parse_program({**STAMP_PROGRAM, "stamp_cards": STAMP_PROGRAM["stamp_cards"][:1]})
    m = await new_member(sessions, program)
    ran: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        ran.append(statement)

    async def statements(program: Program, partner: str, key: str) -> list[str]:
        ran.clear()
        await sale(sessions, program, m, partner, "10.00", key)
        return list(ran)

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        at_gym = await statements(coffee_only, "gym", "g1")
        without_cards = await statements(make_program(), "gym", "g2")
        at_coffee = await statements(coffee_only, "coffee", "c1")
        ran.clear()
        await sale(sessions, coffee_only, m, "coffee", "10.00", "c2", DAY0 + timedelta(days=1))
        next_day = list(ran)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count)
    # The sale's one statement goes straight through the driver (db.engine.fetch_row), which
    # SQLAlchemy's cursor events do not see: anything seen here is a statement more.
    assert at_gym == without_cards == []
    # The member's card, read and locked (none yet: it is created); the stamp.
    assert len(at_coffee) == 3, at_coffee
    assert len(next_day) == 2, next_day  # the card, read and locked; the stamp


async def test_the_lapse_job_and_sales_at_once(sessions: Sessions, program: Program) -> None:
    """A sale racing the lapse job either comes first (its stamp keeps the card) or after
    (it starts a new card): never both, never a deadlock."""
    members = [await new_member(sessions, program, telegram_id=i + 1) for i in range(6)]
    for m in members:
        await sale(sessions, program, m, "coffee", "8.00", f"old{m}")
        await sale(sessions, program, m, "coffee", "8.00", f"old2{m}", DAY0 + timedelta(days=1))
    now = DAY0 + timedelta(days=40)

    async def lapse() -> list[Any]:
        async with sessions() as s:
            return await lapse_due(s, program, now)

    outcome = await asyncio.gather(
        lapse(), *(sale(sessions, program, m, "coffee", "9.00", f"new{m}", now) for m in members)
    )
    lapsed = {x.member_id for x in outcome[0]}
    for m, sold in zip(members, outcome[1:], strict=True):
        (news,) = sold.stamps
        assert news.status == ADDED
        if m in lapsed:  # the job came first: the sale started a new card
            assert news.stamps == 1
        else:  # the sale came first: its stamp keeps the card
            assert news.stamps == 3
        assert await stamps_of(sessions, m, "coffee-5") == news.stamps


def discounted_stamp_program() -> Program:
    """The stamp program with a 5 % Gold discount."""
    tiers = [dict(t) for t in STAMP_PROGRAM["tiers"]]
    tiers[2]["discount_percent"] = "5"
    return parse_program({**STAMP_PROGRAM, "tiers": tiers})


async def gold_member(sessions: Sessions, program: Program, telegram_id: int = 1) -> int:
    m = await new_member(sessions, program, telegram_id)
    async with sessions() as s:
        await s.execute(text("UPDATE members SET tier = 'Gold' WHERE id = :m"), {"m": m})
        await s.commit()
    return m


async def discounted_sale(
    sessions: Sessions, program: Program, member: int, amount: str, key: str, now: datetime
) -> Any:
    async with sessions() as s:
        return await record_sale(
            s,
            program,
            Sale(
                member_id=member,
                partner="coffee",
                amount=D(amount),
                key=key,
                now=now,
                discount_percent=D("5"),
            ),
        )


async def test_min_purchase_is_weighed_against_the_money_charged(sessions: Sessions) -> None:
    """min_purchase is compared with what a sale charged (its amount less its discount), by
    the sale, its replay and its refunds alike: an 8.00 sale at 5 % off (7.60 charged) gets
    no stamp, and an 8.50 one (8.07 charged) keeps its stamp until less than 8.00 is left."""
    program = discounted_stamp_program()
    m = await gold_member(sessions, program)
    low = await discounted_sale(sessions, program, m, "8.00", "low", DAY0)
    assert (low.discount, low.to_pay) == (D("0.40"), D("7.60"))
    assert [(n.card, n.status) for n in low.stamps] == [("coffee-5", BELOW_MIN)]
    again = await discounted_sale(sessions, program, m, "8.00", "low", DAY0)
    assert again.replayed and [(n.status) for n in again.stamps] == [BELOW_MIN]
    assert await stamps_of(sessions, m, "coffee-5") is None

    day1 = DAY0 + timedelta(days=1)
    sold = await discounted_sale(sessions, program, m, "8.50", "ok", day1)
    assert sold.to_pay == D("8.07")  # 0.425 off, half up: 0.43
    assert [(n.status, n.stamps) for n in sold.stamps] == [(ADDED, 1)]

    async def refund(amount: str, key: str) -> Any:
        async with sessions() as s:
            return await record_refund(
                s,
                program,
                Refund(
                    transaction_id=sold.transaction_id,
                    key=key,
                    reason="x",
                    amount=D(amount),
                    now=day1,
                ),
            )

    assert (await refund("0.07", "r1")).stamps == ()  # 8.00 left: still the card's minimum
    assert await stamps_of(sessions, m, "coffee-5") == 1
    back = await refund("0.01", "r2")  # 7.99 left
    assert [(b.taken_back, b.stamps) for b in back.stamps] == [(True, 0)]
    assert await stamps_of(sessions, m, "coffee-5") == 0


async def test_replays_tell_the_card_as_the_posting_left_it(
    sessions: Sessions, program: Program
) -> None:
    """A replay says what the original said: the card's stamps right after that posting,
    whatever came since (a refund of an earlier stamp, later stamps)."""
    m = await new_member(sessions, program)
    day = [DAY0 + timedelta(days=i) for i in range(6)]
    first = await sale(sessions, program, m, "coffee", "10.00", "a", day[0])
    second = await sale(sessions, program, m, "coffee", "10.00", "b", day[1])
    assert [(n.status, n.stamps) for n in second.stamps] == [(ADDED, 2)]
    await sale(sessions, program, m, "coffee", "10.00", "c", day[2])  # 3/5

    async def refund(tx: int, key: str, now: datetime) -> Any:
        async with sessions() as s:
            return await record_refund(
                s, program, Refund(transaction_id=tx, key=key, reason="x", now=now)
            )

    back = await refund(first.transaction_id, "back-a", day[2])
    assert [(b.taken_back, b.stamps) for b in back.stamps] == [(True, 2)]
    assert await stamps_of(sessions, m, "coffee-5") == 2
    replay = await sale(sessions, program, m, "coffee", "10.00", "b", day[1])
    assert replay.replayed and replay.stamps == second.stamps  # 2/5, not 1/5

    # A refund's replay: the card as the refund left it, not as it is today.
    await sale(sessions, program, m, "coffee", "10.00", "d", day[3])  # 3/5 again
    assert await stamps_of(sessions, m, "coffee-5") == 3
    again = await refund(first.transaction_id, "back-a", day[2])
    assert again.replayed and again.stamps == back.stamps  # 2/5, not 3/5

    # A refund that finds the card filled since: the card as it was at the refund.
    await sale(sessions, program, m, "coffee", "10.00", "e", day[4])  # 4/5
    await sale(sessions, program, m, "coffee", "10.00", "f", day[5])  # full: 0/5
    kept = await refund(second.transaction_id, "back-b", day[5])
    assert [(b.taken_back, b.stamps) for b in kept.stamps] == [(False, 0)]
    await sale(sessions, program, m, "coffee", "10.00", "g", day[5] + timedelta(days=1))
    assert await stamps_of(sessions, m, "coffee-5") == 1
    again = await refund(second.transaction_id, "back-b", day[5])
    assert again.replayed and again.stamps == kept.stamps  # 0/5, not 1/5
