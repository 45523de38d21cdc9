"""The simulator (`python -m bot simulate`) on real PostgreSQL: the current program replayed
gives the ledger's own figures (tiers reached during the period and before it, the nightly
recalculation moving members down, discounts, redemptions, partial and full refunds); a
changed program's figures computed by hand (another earn_percent, a weekend multiplier with
max_per_member, a funded_by split, a bonus the program funds); nothing is written; the pure
arithmetic agrees with the till's rules."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import random
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.__main__ import main
from bot.views.simulation import HEADER
from db.ledger.models import ClubMembership, ClubPayment, Transaction
from db.queries.club import in_club
from db.queries.settlement import settlement
from db.queries.simulate import Simulation, read_only, simulate
from db.rules.discounts import discount_of
from db.rules.points import earned_points, share_kept
from db.rules.program import CLUB_PERIOD, Program, parse_program
from db.rules.simulation import (
    Earning,
    MemberFacts,
    Simulator,
    _Nights,
    _Tiers,
    club_spans,
    discount_cents,
    kept,
    last_nightly_run,
    next_nightly_run,
)
from db.usecases.club import Payment, record_payment
from db.usecases.members import get_member, register_member
from db.usecases.purchases import Refund, Sale, record_refund, record_sale
from db.usecases.tiers import recalculate_tiers
from tests.conftest import TEST_PROGRAM

D = Decimal
Sessions = async_sessionmaker[AsyncSession]
WARSAW = ZoneInfo("Europe/Warsaw")
START = datetime(2026, 9, 1, tzinfo=WARSAW)
END = datetime(2026, 10, 1, tzinfo=WARSAW)

SIM_PROGRAM: dict[str, Any] = {
    **TEST_PROGRAM,
    "program": {**TEST_PROGRAM["program"], "timezone": "Europe/Warsaw"},
    "tiers": [
        {"name": "Bronze", "min_spend": "0", "multiplier": "1.0"},
        {"name": "Silver", "min_spend": "1000.00", "multiplier": "1.5"},
        {"name": "Gold", "min_spend": "3000.00", "multiplier": "2.0", "discount_percent": "5"},
    ],
}


def sim_program(**changes: Any) -> Program:
    return parse_program({**SIM_PROGRAM, **changes})


@pytest.fixture
def program() -> Program:
    return sim_program()


def at(day: date, hour: int = 12, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=WARSAW).astimezone(UTC)


async def join(sessions: Sessions, program: Program, telegram_id: int, when: datetime) -> int:
    async with sessions() as s:
        return (await register_member(s, program, telegram_id=telegram_id, now=when)).id


class Till:
    """Posts sales as the till does, running the nightly tier recalculation at 02:30 local
    before each day's first sale (the simulator assumes it ran every night; between sales
    only the last night's run matters)."""

    def __init__(self, sessions: Sessions, program: Program) -> None:
        self.sessions, self.program, self.nights, self.n = sessions, program, set(), 0

    async def sale(
        self, member: int, partner: str, amount: str, when: datetime, redeem: int = 0
    ) -> Any:
        night = last_nightly_run(when, self.program)
        async with self.sessions() as s:
            if night not in self.nights:
                self.nights.add(night)
                await recalculate_tiers(s, self.program, night)
            tier = self.program.tier((await get_member(s, member)).tier)
            club = self.program.club is not None and await in_club(s, member, when)
        self.n += 1
        async with self.sessions() as s:
            return await record_sale(
                s,
                self.program,
                Sale(
                    member_id=member,
                    partner=partner,
                    amount=D(amount),
                    key=f"sale-{self.n}",
                    now=when,
                    redeem_points=redeem,
                    discount_percent=self.program.discount_percent(tier.name, club),
                ),
            )

    async def refund(self, sale: Any, when: datetime, amount: str | None = None) -> Any:
        self.n += 1
        async with self.sessions() as s:
            return await record_refund(
                s,
                self.program,
                Refund(
                    transaction_id=sale.transaction_id,
                    key=f"refund-{self.n}",
                    reason="returned",
                    amount=None if amount is None else D(amount),
                    now=when,
                ),
            )


async def run(
    sessions: Sessions, proposed: Program, current: Program, batch: int = 3
) -> Simulation:
    async with sessions() as s:
        await read_only(s)
        return await simulate(s, proposed, current, start=START, end=END, batch=batch)


async def test_the_current_program_gives_the_ledgers_figures(
    sessions: Sessions, program: Program
) -> None:
    till = Till(sessions, program)
    early = at(date(2025, 5, 1))
    ann = await join(sessions, program, 1, early)  # Silver from last year's spend
    bob = await join(sessions, program, 2, early)  # Silver then, back to Bronze by September
    cat = await join(sessions, program, 3, at(date(2026, 8, 30)))  # reaches Gold in the period
    dan = await join(sessions, program, 4, at(date(2026, 8, 30)))  # redeems and refunds
    await till.sale(ann, "books", "1200.00", at(date(2026, 3, 3)))
    await till.sale(bob, "books", "1500.00", at(date(2025, 8, 20)))  # out of the window by Sep
    await till.sale(
        cat,
        "gym",
        "10.00",
        at(
            date(
                2026,
                8,
                31,
            ),
            23,
            59,
        ),
    )  # before the period
    day = date(2026, 9, 1)
    sales = [
        await till.sale(ann, "coffee", "33.33", at(day, 0, 5)),
        await till.sale(bob, "coffee", "50.00", at(day, 10)),
        await till.sale(cat, "books", "999.00", at(day, 11)),  # Bronze; now Silver
        await till.sale(cat, "bakery", "2000.00", at(day, 12)),  # at Silver; Gold after it
        await till.sale(cat, "coffee", "101.01", at(day, 13)),  # at Gold: 5 % off
        await till.sale(dan, "gym", "20.00", at(day, 14), redeem=40),
    ]
    assert [s.tier for s in sales] == ["Silver", "Bronze", "Silver", "Gold", "Gold", "Bronze"]
    await till.refund(sales[3], at(date(2026, 9, 10)), "500.00")  # Gold kept until the night
    await till.refund(sales[5], at(date(2026, 9, 11)))  # in full: redeemed points go back
    later = date(2026, 9, 12)
    sales += [
        await till.sale(cat, "coffee", "100.00", at(later)),  # the night took cat to Silver
        await till.sale(dan, "books", "45.67", at(later)),
        await till.sale(ann, "gym", "80.00", at(date(2026, 9, 30), 23, 59)),  # last minute
    ]
    assert sales[6].tier == "Silver" and sales[6].points_earned == 750  # 100.00 × 5 % × 1.5
    await till.refund(sales[2], at(date(2026, 9, 20)), "0.01")  # a cent: points kept round down
    await till.sale(ann, "books", "60.00", at(date(2026, 10, 1), 0, 0))  # after the period

    result = await run(sessions, program, program)

    async with sessions() as s:
        report = await settlement(s, program, start=START, end=END)
    issued = {p.slug: p.points_issued for p in report.partners}
    lines = {p.slug: p for p in result.partners}
    for slug in ("coffee", "books", "gym", "bakery"):
        assert lines[slug].simulated_points == lines[slug].actual_points == issued[slug], slug
        assert lines[slug].position_change == 0
    assert sum(p.sales for p in result.partners) == result.sales == 9
    assert result.members == 4 and result.refunds == 3
    assert result.simulated_points == result.actual_points == sum(issued.values())


def weekend_program() -> Program:
    return sim_program(
        partners=[
            {"slug": "coffee", "name": "Bean There Coffee", "earn_percent": "5"},
            {"slug": "books", "name": "Chapter One Books", "earn_percent": "3"},
            {"slug": "gym", "name": "Iron Temple Gym", "earn_percent": "2"},
            {"slug": "bakery", "name": "Golden Crust Bakery", "earn_percent": "10"},
        ],
        promotions=[
            {
                "slug": "bakery-weekend",
                "title": "Double points at the bakery on weekend mornings",
                "partners": ["bakery"],
                "when": {"weekdays": ["sat", "sun"], "hours": "07:00-11:00"},
                "effect": {"multiplier": "2"},
                "funded_by": {"bakery": 50, "coffee": 50},
                "max_per_member": 1,
            },
            {
                "slug": "new-here",
                "title": "100 points for a first purchase here",
                "partners": ["coffee"],
                "who": {"first_at_partner": True},
                "effect": {"bonus_points": 100},
                "funded_by": "program",
            },
        ],
    )


async def test_the_current_program_with_promotions_gives_the_ledgers_figures(
    sessions: Sessions,
) -> None:
    """Promotions the till really posted (a split multiplier with max_per_member, a bonus the
    program pays, one refunded in part before the period's end) are simulated as posted."""
    program = weekend_program()
    till = Till(sessions, program)
    ann = await join(sessions, program, 1, at(date(2026, 8, 1)))
    bob = await join(sessions, program, 2, at(date(2026, 8, 1)))
    await till.sale(bob, "bakery", "30.00", at(date(2026, 8, 29), 9))  # a weekend use before
    sat, sun, mon = date(2026, 9, 5), date(2026, 9, 6), date(2026, 9, 7)
    first = await till.sale(ann, "bakery", "100.00", at(sat, 9))  # ×2, funded 50/50
    await till.sale(ann, "bakery", "40.00", at(sun, 9))  # used up: max_per_member 1
    await till.sale(bob, "bakery", "40.00", at(sun, 10))  # used up before the period
    coffee = await till.sale(ann, "coffee", "60.00", at(mon, 10))  # first at coffee: +100
    await till.sale(ann, "coffee", "20.00", at(mon, 11))  # not the first any more
    await till.refund(first, at(mon, 12), "25.00")  # a quarter of the ×2 taken back
    await till.refund(coffee, at(date(2026, 10, 2)), None)  # after the end: not counted
    assert [p.promotion for p in first.promotions] == ["bakery-weekend"]
    assert [p.promotion for p in coffee.promotions] == ["new-here"]

    result = await run(sessions, program, program)

    promos = {p.slug: p for p in result.promotions}
    weekend, new_here = promos["bakery-weekend"], promos["new-here"]
    assert weekend.sales == 1 and weekend.points == weekend.actual_points
    assert new_here.sales == 1 and new_here.points == new_here.actual_points == 100
    # 100.00 at 10 %: 1000, doubled: +1000, of which a quarter went back with the refund.
    assert weekend.points == 750
    for line in result.partners:
        assert line.simulated_points == line.actual_points, line.slug
        assert line.promotion_points == line.actual_promotion_points, line.slug
        assert line.position_change == 0, line.slug
    assert result.program_points == result.actual_program_points == 100


@pytest.mark.parametrize(
    ("bonus", "amount", "refunds", "taken"),
    [
        (101, "30.00", ["20.00"], [68]),  # 26/25/25/25 paid; 68 back, shared as paid
        # 25 each; 34 back: 9/9/8/8, so 16/16/17/17 kept (a split of the 66 kept would
        # give 17/17/16/16: the till's refund by refund, not the kept part's split)
        (100, "45.00", ["15.00"], [34]),
        (100, "45.00", ["15.00", "15.00"], [34, 33]),  # refund by refund, as the till
    ],
)
async def test_a_partial_refund_of_a_bonus_of_four_funders_as_the_till_took_it_back(
    sessions: Sessions, bonus: int, amount: str, refunds: list[str], taken: list[int]
) -> None:
    """A bonus split among four funders, refunded in part: the till takes back the
    award's part by the sale's rule, refund by refund, shared as the funders paid; the
    simulator agrees to the point, per partner too."""
    program = sim_program(
        promotions=[
            {
                "slug": "new-partner",
                "title": "First visit",
                "who": {"first_at_partner": True},
                "effect": {"bonus_points": bonus},
                "funded_by": {"coffee": 25, "books": 25, "gym": 25, "bakery": 25},
            }
        ]
    )
    till = Till(sessions, program)
    ann = await join(sessions, program, 1, at(date(2026, 8, 1)))
    done = await till.sale(ann, "gym", amount, at(date(2026, 9, 2)))
    for n, (refund, points) in enumerate(zip(refunds, taken, strict=True)):
        back = await till.refund(done, at(date(2026, 9, 3 + n)), refund)
        assert [(p.promotion, p.points) for p in back.promotions] == [("new-partner", points)]

    result = await run(sessions, program, program)

    promo = {p.slug: p for p in result.promotions}["new-partner"]
    assert promo.points == promo.actual_points == bonus - sum(taken)
    for line in result.partners:
        assert line.promotion_points == line.actual_promotion_points, line.slug
        assert line.simulated_points == line.actual_points, line.slug
        assert line.position_change == 0, line.slug


async def test_the_expected_cost_as_it_was_counts_the_vouchers_given(
    sessions: Sessions,
) -> None:
    """A promotion's voucher (funded by books) is in the expected cost as it was, as in the
    simulated one; a sale refunded in full keeps none in either."""
    program = sim_program(
        rewards=[
            {
                "slug": "free-coffee",
                "title": "A coffee",
                "partner": "coffee",
                "points": 300,
                "valid_days": 30,
            }
        ],
        promotions=[
            {
                "slug": "coffee-with-a-book",
                "title": "A free coffee with a book",
                "partners": ["books"],
                "min_purchase": "40.00",
                "effect": {"reward": "free-coffee"},
                "funded_by": {"books": 100},
            }
        ],
    )
    till = Till(sessions, program)
    ann = await join(sessions, program, 1, at(date(2026, 8, 1)))
    bob = await join(sessions, program, 2, at(date(2026, 8, 1)))
    await till.sale(ann, "books", "50.00", at(date(2026, 9, 2)))
    given = await till.sale(bob, "books", "60.00", at(date(2026, 9, 3)))
    await till.refund(given, at(date(2026, 9, 4)))

    result = await run(sessions, program, program)

    books = next(p for p in result.partners if p.slug == "books")
    assert (books.vouchers, books.voucher_points, books.actual_voucher_points) == (1, 300, 300)
    # Nothing redeemed yet (rate 0 of the points issued); no voucher resolved: all counted.
    assert result.partner_actual_cost(books) == result.partner_cost(books) == D("3.00")
    assert result.total_actual_cost == result.total_cost == D("3.00")
    promo = result.promotions[0]
    assert result.promotion_actual_cost(promo) == result.promotion_cost(promo) == D("3.00")


async def test_a_changed_program_computed_by_hand(sessions: Sessions, program: Program) -> None:
    till = Till(sessions, program)
    ann = await join(sessions, program, 1, at(date(2026, 8, 1)))
    await till.sale(ann, "coffee", "10.00", at(date(2026, 8, 20)))  # coffee before the period
    bob = await join(sessions, program, 2, at(date(2026, 8, 1)))
    sat, sun, mon = date(2026, 9, 5), date(2026, 9, 6), date(2026, 9, 7)
    await till.sale(bob, "bakery", "100.00", at(sat, 9))  # weekend morning
    await till.sale(bob, "bakery", "10.00", at(sun, 10))  # max_per_member 1: used up
    await till.sale(ann, "bakery", "50.00", at(sun, 11))  # 11:00: past the hours
    monday = await till.sale(bob, "bakery", "100.00", at(mon, 9))
    await till.refund(monday, at(mon, 15), "50.00")
    await till.sale(bob, "coffee", "50.00", at(mon, 10), redeem=30)  # first at coffee: +100
    await till.sale(ann, "coffee", "20.00", at(mon, 11))  # bought coffee before: nothing
    async with sessions() as s:
        before = await s.scalar(select(func.count()).select_from(Transaction))

    result = await run(sessions, weekend_program(), program)

    lines = {p.slug: p for p in result.partners}
    bakery, coffee = lines["bakery"], lines["coffee"]
    # As posted at 4 %: 400 + 40 + 200 + (400 − 200 clawed back) = 840.
    assert bakery.actual_points == 840
    # At 10 %: 1000 + 100 + 500 + (1000 − 500) = 2100, and half the weekend's +1000.
    assert (bakery.simulated_points, bakery.promotion_points) == (2100, 500)
    # 49.70 paid in money (30 points paid 0.30): 248, and 20.00: 100, at 5 % as before;
    # coffee funds the other half of the weekend's +1000.
    assert (coffee.actual_points, coffee.simulated_points, coffee.promotion_points) == (
        348,
        348,
        500,
    )
    assert bakery.points_change == 2100 + 500 - 840
    assert bakery.position_change == D("-17.60")
    assert coffee.position_change == D("-5.00")
    assert result.program_points == 100 and result.actual_program_points == 0
    promos = {p.slug: p for p in result.promotions}
    assert (promos["bakery-weekend"].sales, promos["bakery-weekend"].points) == (1, 1000)
    assert promos["bakery-weekend"].funded_by == "bakery 50 %, coffee 50 %"
    assert (promos["new-here"].sales, promos["new-here"].points) == (1, 100)
    # The program's history: 30 points redeemed of 50 + 50 welcome points and the sales'
    # 50 (August) + 840 + 348 issued.
    assert (result.points_rate.part, result.points_rate.whole) == (30, 50 + 50 + 50 + 840 + 348)
    assert not result.voucher_rate.measured
    rate = D(30) / D(1338)
    expected = (D(2100 + 500) * D("0.01") * rate).quantize(D("0.01"))
    assert result.partner_cost(bakery) == expected
    async with sessions() as s:  # nothing was written
        assert await s.scalar(select(func.count()).select_from(Transaction)) == before


async def test_a_changed_point_value_keeps_what_redemptions_paid(
    sessions: Sessions, program: Program
) -> None:
    """The proposed file doubles the point value: the points a partner redeemed keep the
    money they paid (at 0.01), the points it issues are priced at 0.02."""
    till = Till(sessions, program)
    ann = await join(sessions, program, 1, at(date(2026, 8, 1)))  # 50 welcome points
    await till.sale(ann, "books", "50.00", at(date(2026, 9, 2)))  # 3 %: 150 points
    await till.sale(ann, "bakery", "20.00", at(date(2026, 9, 3)), redeem=40)  # 19.60: 78
    proposed = sim_program(
        program={**SIM_PROGRAM["program"], "point_value": "0.02"},
        partners=[
            {**p, "earn_percent": {"books": "4", "bakery": "5"}.get(p["slug"], p["earn_percent"])}
            for p in SIM_PROGRAM["partners"]
        ],
    )

    result = await run(sessions, proposed, program)

    lines = {p.slug: p for p in result.partners}
    books, bakery = lines["books"], lines["bakery"]
    # Books: 150 points issued at 0.01 → 50.00 × 4 % / 0.02 = 100 points at 0.02.
    assert (books.actual_issued, books.simulated_issued) == (150, 100)
    assert (books.position, books.simulated_position) == (D("-1.50"), D("-2.00"))
    assert books.position_change == D("-0.50")
    # Bakery: 40 points redeemed paid 0.40 and still do; 78 points issued at 0.01 become
    # 19.60 × 5 % / 0.02 = 49 at 0.02: 0.40 − 0.98.
    assert (bakery.actual_issued, bakery.simulated_issued) == (78, 49)
    assert bakery.position == D("0.40") - D("0.78")
    assert bakery.simulated_position == D("0.40") - D("0.98") == D("-0.58")
    assert bakery.position_change == D("-0.20")


CLUB: dict[str, Any] = {
    "name": "City Club",
    "stars_per_month": 250,
    "price": "29.00",
    "multiplier": "1.5",
    "discount_percent": "5",
    "welcome_points": 500,
}
CLUB_BOOKS: dict[str, Any] = {
    "slug": "club-books",
    "title": "Club members: 100 points on a book over 30.00",
    "partners": ["books"],
    "who": {"club": True},
    "min_purchase": "30.00",
    "effect": {"bonus_points": 100},
    "funded_by": "program",
}


def club_program() -> Program:
    return sim_program(club=CLUB, promotions=[CLUB_BOOKS])


async def pay(
    sessions: Sessions,
    program: Program,
    member: int,
    charge: str,
    when: datetime,
    method: str = "stars",
    recurring: bool = False,
) -> Any:
    """A club payment recorded as the bot records it (db.usecases.club.record_payment)."""
    stars = method == "stars"
    payment = Payment(
        member_id=member,
        charge_id=charge,
        method=method,
        currency="XTR" if stars else "PLN",
        amount=D(250) if stars else D("29.00"),
        now=when,
        until=when + CLUB_PERIOD if stars else None,
        renews=stars,
        recurring=recurring,
        partner_id=None if stars else 1,
    )
    async with sessions() as s:
        return await record_payment(s, program, payment)


def test_club_payments_periods_become_the_spans_a_member_was_in_the_club() -> None:
    day = [datetime(2026, 9, d, tzinfo=UTC) for d in range(1, 31)]
    assert club_spans([]) == []
    # A renewal starting where the last period ends joins it; one refunded before its start
    # (until ≤ from) is nothing; a gap stays a gap.
    assert club_spans(
        [(day[10], day[20]), (day[0], day[10]), (day[25], day[25]), (day[22], day[24])]
    ) == [(day[0], day[20]), (day[22], day[24])]
    assert club_spans([(day[0], day[9]), (day[2], day[5])]) == [(day[0], day[9])]


async def test_club_members_get_the_proposed_clubs_perks_computed_by_hand(
    sessions: Sessions, program: Program
) -> None:
    """The till posted these sales under a program without a club; the proposed one has a
    club (×1.5 paid by the program, 5 % off, 100 points on a book of 30.00 for members).
    Who was in the club at each sale comes from their payments: ann joined during the
    period, cat's month ran out during it, bob's payment was refunded during it, dan paid
    only after it."""
    proposed = club_program()
    till = Till(sessions, program)
    ann, bob, cat, dan = [
        await join(sessions, program, n, at(date(2026, 8, 1))) for n in (1, 2, 3, 4)
    ]
    await pay(sessions, proposed, cat, "till:cat", at(date(2026, 8, 10)), method="till")
    await pay(sessions, proposed, bob, "till:bob", at(date(2026, 8, 20)), method="till")
    await pay(sessions, proposed, ann, "stars:ann", at(date(2026, 9, 5)))
    await pay(sessions, proposed, dan, "stars:dan", at(date(2026, 10, 10)))
    refunded = at(date(2026, 9, 10), 12)
    async with sessions() as s:
        # A refund as it is recorded (the owner's refund ends the membership with it).
        await s.execute(
            ClubPayment.__table__.update()
            .where(ClubPayment.charge_id == "till:bob")
            .values(refunded_at=refunded)
        )
        await s.execute(
            ClubMembership.__table__.update()
            .where(ClubMembership.member_id == bob)
            .values(ends_at=refunded)
        )
        await s.commit()
    await till.sale(ann, "coffee", "100.00", at(date(2026, 9, 3)))  # not yet in the club
    halved = await till.sale(ann, "coffee", "100.00", at(date(2026, 9, 7)))
    await till.sale(ann, "coffee", "50.00", at(date(2026, 9, 7), 13), redeem=100)
    await till.sale(ann, "books", "40.00", at(date(2026, 9, 8)))
    await till.sale(ann, "books", "30.00", at(date(2026, 9, 9)))  # 28.50 after 5 %: no bonus
    await till.sale(bob, "gym", "20.00", at(date(2026, 9, 10), 11))  # before the refund
    await till.sale(bob, "gym", "20.00", at(date(2026, 9, 10), 13))  # after it
    await till.sale(cat, "bakery", "50.00", at(date(2026, 9, 8)))  # until 9 September 12:00
    await till.sale(cat, "bakery", "50.00", at(date(2026, 9, 10)))  # lapsed
    await till.sale(dan, "books", "100.00", at(date(2026, 9, 15)))
    await till.refund(halved, at(date(2026, 9, 20)), "50.00")

    result = await run(sessions, proposed, program)

    lines = {p.slug: p for p in result.partners}
    # coffee: 500; 100.00 less 5 %: 475, half kept after the refund: 237; 50.00 less 5 %
    # less the 1.00 paid with points: 46.50, 232. As posted: 500 + 250 + 245 (49.00).
    assert (lines["coffee"].actual_points, lines["coffee"].simulated_points) == (995, 969)
    # books: 38.00 at 3 %: 114; 28.50: 85; dan, not in the club: 300.
    assert (lines["books"].actual_points, lines["books"].simulated_points) == (510, 499)
    assert (lines["gym"].actual_points, lines["gym"].simulated_points) == (80, 38 + 40)
    assert (lines["bakery"].actual_points, lines["bakery"].simulated_points) == (400, 190 + 200)
    assert all(line.promotion_points == 0 for line in result.partners)  # the program pays
    assert lines["coffee"].points_change == -26 and lines["coffee"].position_change == D("0.26")
    promos = {p.slug: p for p in result.promotions}
    assert [p.slug for p in result.promotions] == ["club-books", "club"]
    club = promos["club"]
    assert (str(club.title), club.funded_by, club.actual_points) == ("City Club", "program", None)
    # ×1.5 on top: 237 → 118 kept after the refund, 116 (232), 57 (114), 42 (85), 19 (38),
    # 95 (190).
    assert (club.sales, club.points) == (6, 118 + 116 + 57 + 42 + 19 + 95)
    assert (promos["club-books"].sales, promos["club-books"].points) == (1, 100)
    assert result.program_points == 447 + 100 and result.actual_program_points == 0
    assert (result.sales, result.members, result.refunds) == (10, 4, 1)

    # The running program, which has no club, gives club members nothing more.
    plain = await run(sessions, program, program)
    for line in plain.partners:
        assert line.simulated_issued == line.actual_issued, line.slug
    assert plain.promotions == [] and plain.program_points == 0


async def test_the_current_program_with_a_club_gives_the_ledgers_figures(
    sessions: Sessions,
) -> None:
    """The till applied the club (its discount on the tier's, its ×1.5 and the members'
    promotion, paid by the program): replaying the same program gives the ledger's figures,
    members in the club at some sales and not at others (joined, renewed, lapsed), a Gold
    member's two discounts, a refund in part of a member's sale."""
    program = club_program()
    till = Till(sessions, program)
    ann, bob, cat, dan = [
        await join(sessions, program, n, at(date(2026, 1, 5))) for n in (1, 2, 3, 4)
    ]
    # In time order: the till reads the membership as it stands.
    await till.sale(bob, "books", "3500.00", at(date(2026, 6, 1)))  # Gold: 5 % off
    await pay(sessions, program, cat, "stars:cat", at(date(2026, 8, 10)))  # to 9 September
    await pay(sessions, program, ann, "till:ann", at(date(2026, 8, 25)), method="till")
    day = date(2026, 9, 1)
    sales = [
        await till.sale(ann, "books", "45.00", at(day)),  # ×1.5 and club-books
        await till.sale(bob, "books", "45.00", at(day)),  # not yet a member: Gold's 5 %
    ]
    await pay(sessions, program, bob, "stars:bob", at(date(2026, 9, 2)))
    sales += [
        await till.sale(bob, "books", "45.00", at(date(2026, 9, 3))),  # 5 % + 5 %
        await till.sale(cat, "coffee", "80.00", at(date(2026, 9, 8))),
        await till.sale(cat, "coffee", "80.00", at(date(2026, 9, 10))),  # lapsed
        await till.sale(dan, "bakery", "60.00", at(date(2026, 9, 11))),  # never a member
        await till.sale(ann, "coffee", "100.00", at(date(2026, 9, 12)), redeem=200),
    ]
    await till.refund(sales[0], at(date(2026, 9, 15)), "15.00")
    # ann renews at a till before her month ends: the new month follows the old one.
    await pay(sessions, program, ann, "till:ann-2", at(date(2026, 9, 20)), method="till")
    sales.append(await till.sale(ann, "bakery", "70.00", at(date(2026, 9, 28))))
    assert {p.promotion for p in sales[0].promotions} == {"club", "club-books"}
    assert not sales[1].promotions and not sales[4].promotions
    assert sales[2].discount == D("4.50")  # 10 % of 45.00

    result = await run(sessions, program, program)

    for line in result.partners:
        assert line.simulated_points == line.actual_points, line.slug
        assert line.promotion_points == line.actual_promotion_points, line.slug
        assert line.position_change == 0, line.slug
    promos = {p.slug: p for p in result.promotions}
    assert promos["club"].points == promos["club"].actual_points
    assert promos["club-books"].points == promos["club-books"].actual_points
    assert promos["club"].sales == 5 and promos["club-books"].sales == 2
    assert result.program_points == result.actual_program_points > 0


async def test_the_simulation_runs_read_only(sessions: Sessions, program: Program) -> None:
    async with sessions() as s:
        await read_only(s)
        with pytest.raises(Exception, match="read-only"):
            await s.execute(text("INSERT INTO accounts (kind) VALUES ('program')"))


def test_a_promotion_for_categories_gives_replayed_sales_nothing() -> None:
    """The simulator replays sales without their lines (a cashier's have none): a promotion
    naming categories never applies to them, as at the till."""
    data: dict[str, Any] = {
        **TEST_PROGRAM,
        "promotions": [
            {"slug": "all", "title": "All", "effect": {"bonus_points": 10}},
            {
                "slug": "beans",
                "title": "Beans",
                "when": {"categories": ["coffee-beans"]},
                "effect": {"bonus_points": 20},
            },
        ],
    }
    start = datetime(2026, 3, 1, tzinfo=UTC)
    sim = Simulator(parse_program(data), start, start + timedelta(days=30))
    sim.member(MemberFacts(1, start - timedelta(days=9), None), start)
    sim.sale(1, "coffee", start + timedelta(hours=1), 2_000, 0, 2_000)
    totals = sim.finish()
    assert {slug: t.points for slug, t in totals.promotions.items()} == {"all": 10}


def test_integer_earning_and_discount_agree_with_the_tills_rules() -> None:
    rng = random.Random(13)
    for _ in range(5000):
        paid = D(rng.randrange(0, 500_000)).scaleb(-2)
        percent = D(rng.randrange(0, 100_000)).scaleb(-3)
        multiplier = D(rng.randrange(1, 100_000)).scaleb(-3)
        pv = D(rng.randrange(1, 10**6)).scaleb(-6)
        cents = int(paid * 100)
        assert Earning.of(percent, multiplier, pv).points(cents) == earned_points(
            paid, percent, multiplier, pv
        )
        off = D(rng.randrange(0, 10_000)).scaleb(-2)
        assert discount_cents(cents, int(off * 100)) == int(discount_of(paid, off) * 100)
        total = rng.randrange(0, 10**6)
        left = rng.randrange(0, cents + 1)
        if cents:
            assert kept(total, cents, left) == share_kept(total, paid, D(left).scaleb(-2))


def test_the_nightly_run_is_at_half_past_two_local() -> None:
    program = sim_program()
    before = datetime(2026, 9, 1, 2, 29, tzinfo=WARSAW)
    assert last_nightly_run(before, program) == datetime(2026, 8, 31, 2, 30, tzinfo=WARSAW)
    assert last_nightly_run(before + timedelta(minutes=1), program) == datetime(
        2026, 9, 1, 2, 30, tzinfo=WARSAW
    )


def test_the_nightly_runs_follow_the_local_clock_across_daylight_saving() -> None:
    """The run after Sunday 28 March 2027's (the clocks go forward that night) is Monday's
    at 02:30 summer time, 00:30 UTC: 24 hours later would be an hour late, and a sale at
    03:00 that Monday would miss it."""
    program = sim_program()
    sunday = last_nightly_run(datetime(2027, 3, 28, 12, tzinfo=UTC), program)
    monday = datetime(2027, 3, 29, 0, 30, tzinfo=UTC)
    assert next_nightly_run(sunday, program) == monday
    nights = _Nights(program, datetime(2027, 3, 20, tzinfo=UTC), datetime(2027, 4, 5, tzinfo=UTC))
    tiers = _Tiers(nights, [0, 100_000, 300_000], datetime(2027, 3, 27, 12, tzinfo=UTC))
    tiers.advance(datetime(2027, 3, 28, 12, tzinfo=UTC))
    assert tiers.next_run == monday
    # And back in October (26 October 2026's 02:30 is winter time again: 01:30 UTC).
    autumn = last_nightly_run(datetime(2026, 10, 25, 12, tzinfo=UTC), program)
    assert next_nightly_run(autumn, program) == datetime(2026, 10, 26, 1, 30, tzinfo=UTC)


def toml_value(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value)


def toml(data: dict[str, Any]) -> str:
    """A program as a file: tables and arrays of tables, inline tables inside them."""
    lines: list[str] = []
    for name, section in data.items():
        for table in section if isinstance(section, list) else [section]:
            lines.append(f"[[{name}]]" if isinstance(section, list) else f"[{name}]")
            lines += [f"{key} = {toml_value(value)}" for key, value in table.items()]
    return "\n".join(lines) + "\n"


def weekend_data() -> dict[str, Any]:
    program = weekend_program()
    assert program.promotions
    data = {**SIM_PROGRAM}
    data["partners"] = [
        {**p, "earn_percent": "10"} if p["slug"] == "bakery" else p
        for p in SIM_PROGRAM["partners"]
    ]
    data["promotions"] = [
        {
            "slug": "bakery-weekend",
            "title": "Double points at the bakery on weekend mornings",
            "partners": ["bakery"],
            "when": {"weekdays": ["sat", "sun"], "hours": "07:00-11:00"},
            "effect": {"multiplier": "2"},
            "funded_by": {"bakery": 50, "coffee": 50},
            "max_per_member": 1,
        }
    ]
    return data


async def test_the_command_line_prints_the_table_and_writes_the_csv(
    sessions: Sessions,
    program: Program,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    till = Till(sessions, program)
    ann = await join(sessions, program, 1, at(date(2026, 8, 1)))
    await till.sale(ann, "bakery", "100.00", at(date(2026, 9, 5), 9))  # Saturday morning
    await till.sale(ann, "bakery", "100.00", at(date(2026, 10, 1), 9))  # after --to
    (tmp_path / "program.toml").write_text(toml(SIM_PROGRAM), encoding="utf-8")
    (tmp_path / "proposed.toml").write_text(toml(weekend_data()), encoding="utf-8")
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("PROGRAM_FILE", str(tmp_path / "program.toml"))
    out = tmp_path / "simulation.csv"
    args = ["simulate", "--program", str(tmp_path / "proposed.toml")]
    args += ["--from", "2026-09-01", "--to", "2026-10-01", "--csv", str(out)]
    assert await asyncio.to_thread(main, args) == 0
    printed = capsys.readouterr().out
    assert "2026-09-01 to 2026-09-30 (both included), 1 sale of 1 member, 0 refunds" in printed
    lines = printed.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("partner"))
    assert lines[header].split() == [
        *("partner", "sales"),
        *("as", "it", "was", "simulated", "change", "vouchers"),
        *("as", "it", "was", "simulated", "as", "it", "was", "simulated", "change"),
    ]
    above = lines[header - 1]
    assert "points issued" in above and "expected cost PLN" in above
    assert "settlement PLN" in above
    bakery = next(line for line in lines if line.startswith("bakery"))
    # 400 as posted; 1,000 at 10 % and the weekend's +1,000, half of it bakery's; cost
    # at a redemption rate of 0 (nothing redeemed yet); settlement −4.00 → −15.00.
    assert bakery.split()[1:] == [
        *("1", "400", "1,500", "+1,100", "0"),
        *("0.00", "0.00", "-4.00", "-15.00", "-11.00"),
    ]
    total = next(line for line in lines if line.startswith("total"))
    # coffee funds the other 500: −5.00.
    assert total.split()[1:] == [
        *("1", "400", "2,000", "+1,600", "0"),
        *("0.00", "0.00", "-4.00", "-20.00", "-16.00"),
    ]
    assert "Settlement: positive, the coalition pays the partner; negative, the partner pays" in (
        printed
    )
    assert "Expected cost: of all those points and the vouchers it funds (its own earning" in (
        printed
    )
    # The rate is the whole history's: 50 welcome points and both sales' 400.
    assert "redemption rate: 0.00 % (0 points redeemed of 850 points issued)" in printed
    rows = list(csv.reader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert rows[0] == HEADER
    by_code = {(row[2], row[3]): dict(zip(HEADER, row, strict=True)) for row in rows[1:]}
    line = by_code[("partner", "bakery")]
    assert (line["First day"], line["Last day"], line["Sales"]) == (
        "2026-09-01",
        "2026-09-30",
        "1",
    )
    assert (line["Points issued (actual)"], line["Points issued (simulated)"]) == ("400", "1500")
    assert (line["Settlement change"], line["Currency"]) == ("-11.00", "PLN")
    assert by_code[("partner", "coffee")]["Points issued (simulated)"] == "500"
    promo = by_code[("promotion", "bakery-weekend")]
    assert (promo["Sales"], promo["Points issued (simulated)"]) == ("1", "1000")
    assert [row[2] for row in rows[-2:]] == ["program", "total"]
    total = dict(zip(HEADER, rows[-1], strict=True))
    assert total["Name"] == ""  # the rates have their own columns
    assert (total["Settlement (actual)"], total["Settlement (simulated)"]) == ("-4.00", "-20.00")
    assert (total["Redemption rate"], total["Voucher claim rate"]) == ("0", "1")
    assert (total["Expected cost (actual)"], total["Expected cost (simulated)"]) == (
        "0.00",
        "0.00",
    )


def test_the_command_line_refuses_a_bad_program_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = weekend_data()
    bad["promotions"][0]["funded_by"] = {"bakery": 50, "coffee": 40}
    (tmp_path / "proposed.toml").write_text(toml(bad), encoding="utf-8")
    args = ["simulate", "--program", str(tmp_path / "proposed.toml")]
    assert main([*args, "--from", "2026-09-01", "--to", "2026-10-01"]) == 2
    error = capsys.readouterr().err
    assert "promotions[0] (bakery-weekend).funded_by" in error
    assert "must add up to 100 (they add up to 90)" in error
    assert main([*args, "--from", "2026-10-01", "--to", "2026-10-01"]) == 2
    assert "--to is exclusive" in capsys.readouterr().err


def test_the_command_line_refuses_a_missing_file_or_an_unwritable_csv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Both refused before anything runs, in one line (no database is opened: DATABASE_URL
    points nowhere)."""
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:1/nowhere")
    period = ["--from", "2026-09-01", "--to", "2026-10-01"]
    missing = tmp_path / "proposed.toml"
    assert main(["simulate", "--program", str(missing), *period]) == 2
    assert capsys.readouterr().err == f"error: {missing}: program file not found\n"
    missing.write_text(toml(weekend_data()), encoding="utf-8")
    for csv_path, reason in [
        (tmp_path / "no-such-folder" / "sim.csv", "No such file or directory"),
        (tmp_path, "Is a directory"),
    ]:
        args = ["simulate", "--program", str(missing), *period, "--csv", str(csv_path)]
        assert main(args) == 2
        printed = capsys.readouterr()
        assert printed.err == f"error: --csv {csv_path}: cannot be written ({reason})\n"
        assert printed.out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["proposed.toml"]


async def test_the_command_line_refuses_another_currency(
    sessions: Sessions,
    program: Program,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The positions as they were are in PLN: a file in EUR cannot be put next to them."""
    (tmp_path / "program.toml").write_text(toml(SIM_PROGRAM), encoding="utf-8")
    euros = {**SIM_PROGRAM, "program": {**SIM_PROGRAM["program"], "currency": "EUR"}}
    (tmp_path / "proposed.toml").write_text(toml(euros), encoding="utf-8")
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("PROGRAM_FILE", str(tmp_path / "program.toml"))
    args = ["simulate", "--program", str(tmp_path / "proposed.toml")]
    args += ["--from", "2026-09-01", "--to", "2026-10-01"]
    assert await asyncio.to_thread(main, args) == 2
    printed = capsys.readouterr()
    assert printed.out == ""
    assert (
        "proposed.toml: the proposed file changes the currency from PLN to EUR: a simulation "
        "compares figures in one currency"
    ) in printed.err
    with pytest.raises(ValueError, match="from PLN to EUR"):
        await run(sessions, parse_program(euros), program)


async def test_the_command_line_warns_of_a_period_not_ended(
    program: Program,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "program.toml").write_text(toml(SIM_PROGRAM), encoding="utf-8")
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("PROGRAM_FILE", str(tmp_path / "program.toml"))
    today = datetime.now(WARSAW).date()
    args = ["simulate", "--program", str(tmp_path / "program.toml")]
    ended = ["--from", (today - timedelta(days=7)).isoformat(), "--to", today.isoformat()]
    assert await asyncio.to_thread(main, args + ended) == 0
    assert "has not ended" not in capsys.readouterr().out
    going = ["--from", (today - timedelta(days=7)).isoformat()]
    going += ["--to", (today + timedelta(days=2)).isoformat()]
    assert await asyncio.to_thread(main, args + going) == 0
    assert "Warning: the period has not ended: sales still to come are not counted." in (
        capsys.readouterr().out
    )
