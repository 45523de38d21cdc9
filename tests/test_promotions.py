"""Promotions at the till on real PostgreSQL (db/usecases/promotions.py): each effect posted
in the sale's transaction, funders' splits reconciled in settlement to the point, a
promotion ending mid-sale, max_per_member under concurrency, refunds (partial, full, with
points already spent), replays. The ledger's invariants are checked after each test."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import event, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.ledger.models import Voucher
from db.queries.reports import cash_handed_back
from db.queries.settlement import settlement
from db.rules.errors import IdempotencyConflict, LinesDontAddUp
from db.rules.lines import Line
from db.rules.program import Program, parse_program
from db.usecases import promotions
from db.usecases.members import register_member
from db.usecases.purchases import (
    PurchaseResult,
    Refund,
    Sale,
    record_refund,
    record_sale,
)
from db.usecases.staff import StaffInfo, accept_invite, create_invite
from db.usecases.voucher_claims import claim_voucher
from tests.conftest import TEST_PROGRAM

D = Decimal
Sessions = async_sessionmaker[AsyncSession]
# Saturday 6 March 2027, 09:00 in Warsaw (08:00 UTC).
SAT_9 = datetime(2027, 3, 6, 8, 0, tzinfo=UTC)

DOUBLE = {
    "slug": "double-coffee",
    "title": {"en": "Double points at the café", "pl": "Podwójne punkty w kawiarni"},
    "partners": ["coffee"],
    "when": {"weekdays": ["sat", "sun"], "hours": "07:00-11:00"},
    "effect": {"multiplier": "2"},
}
NEW_PARTNER = {
    "slug": "new-partner",
    "title": "First visit to a new partner",
    "who": {"first_at_partner": True},
    "min_purchase": "10.00",
    "effect": {"bonus_points": 101},
    "funded_by": {"coffee": 25, "books": 25, "gym": 25, "bakery": 25},
}
BIRTHDAY = {
    "slug": "birthday",
    "title": "Birthday week",
    "who": {"birthday": True},
    "effect": {"bonus_points": 200},
    "funded_by": "program",
    "max_per_member": 1,
}
BOOK_COFFEE = {
    "slug": "coffee-with-a-book",
    "title": "Coffee with a book",
    "partners": ["books"],
    "min_purchase": "40.00",
    "effect": {"reward": "free-coffee"},
    "funded_by": {"books": 100},
    "max_per_member": 3,
}
PROGRAM_COFFEE = {**BOOK_COFFEE, "slug": "program-coffee", "funded_by": "program"}
STAMPS = {
    "slug": "extra-stamps",
    "title": "Two extra stamps",
    "partners": ["coffee"],
    "effect": {"stamps": 2},
}


def promo_program(*promotions: dict[str, Any]) -> Program:
    return parse_program(
        {
            **TEST_PROGRAM,
            "program": {**TEST_PROGRAM["program"], "timezone": "Europe/Warsaw"},
            "rewards": [
                {
                    "slug": "free-coffee",
                    "title": "A coffee of your choice",
                    "partner": "coffee",
                    "points": 300,
                    "valid_days": 30,
                }
            ],
            "stamp_cards": [
                {
                    "slug": "coffee-5",
                    "name": "Fifth coffee free",
                    "partners": ["coffee"],
                    "stamps": 5,
                    "per_day": 0,
                    "reward_points": 250,
                }
            ],
            "promotions": list(promotions),
        }
    )


ALL = (DOUBLE, NEW_PARTNER, BIRTHDAY, BOOK_COFFEE, STAMPS)


@pytest.fixture
def program() -> Program:
    return promo_program(*ALL)


async def member(sessions: Sessions, program: Program, tg: int = 1, **facts: Any) -> int:
    async with sessions() as s:
        member_id = (await register_member(s, program, telegram_id=tg, now=SAT_9)).id
        if facts:
            sets = ", ".join(f"{k} = :{k}" for k in facts)
            await s.execute(
                text(f"UPDATE members SET {sets} WHERE id = :id"), {**facts, "id": member_id}
            )
            await s.commit()
        return member_id


async def sale(
    sessions: Sessions,
    program: Program,
    member_id: int,
    partner: str,
    amount: str,
    key: str,
    now: datetime = SAT_9,
    redeem: int = 0,
) -> PurchaseResult:
    async with sessions() as s:
        return await record_sale(
            s,
            program,
            Sale(
                member_id=member_id,
                partner=partner,
                amount=D(amount),
                key=key,
                now=now,
                redeem_points=redeem,
            ),
        )


async def refund(
    sessions: Sessions, program: Program, sale_id: int, key: str, amount: str | None = None
) -> Any:
    async with sessions() as s:
        return await record_refund(
            s,
            program,
            Refund(
                transaction_id=sale_id,
                key=key,
                reason="returned",
                amount=D(amount) if amount else None,
                now=SAT_9 + timedelta(hours=1),
            ),
        )


async def issued(sessions: Sessions) -> dict[str, int]:
    """Every partner's partner_issued balance, and the program's, by slug ("" the program)."""
    async with sessions() as s:
        rows = (
            await s.execute(
                text(
                    """SELECT coalesce(p.slug, '') AS slug, a.balance FROM account_balances AS a
                       LEFT JOIN partners AS p ON p.id = a.partner_id
                       WHERE a.kind IN ('partner_issued', 'program')"""
                )
            )
        ).all()
    return {r.slug: -int(r.balance) for r in rows}


async def test_multiplier_and_split_bonus_in_the_documented_order(
    sessions: Sessions, program: Program
) -> None:
    ann = await member(sessions, program)
    before = await issued(sessions)
    done = await sale(sessions, program, ann, "coffee", "100.00", "s1")
    # 100.00 at 5% = 500 points; ×2 adds 500 (the café pays); the first visit +101, split
    # 25/25/25/25 to the point (26 to the first-listed of the tied remainders).
    assert done.points_earned == 500
    assert [(a.promotion, a.points, a.multiplier) for a in done.promotions] == [
        ("double-coffee", 500, D(2)),
        ("new-partner", 101, None),
        ("extra-stamps", 0, None),
    ]
    assert done.promotions[2].stamps == 2
    assert done.balance == 50 + 500 + 500 + 101
    after = await issued(sessions)
    paid = {k: after[k] - before.get(k, 0) for k in after}
    assert paid == {"": 0, "coffee": 500 + 500 + 26, "books": 25, "gym": 25, "bakery": 25}
    # Settlement: each partner's promotions, to the point, and the totals reconcile.
    async with sessions() as s:
        report = await settlement(
            s, program, start=SAT_9 - timedelta(days=1), end=SAT_9 + timedelta(days=1)
        )
    funded = {p.slug: p.promotions_funded for p in report.partners}
    assert funded == {"coffee": 526, "books": 25, "gym": 25, "bakery": 25}
    assert sum(funded.values()) == 601
    assert report.wallets_change == 50 + 500 + 601


async def test_second_sale_at_a_partner_gets_no_first_visit(
    sessions: Sessions, program: Program
) -> None:
    ann = await member(sessions, program)
    first = await sale(sessions, program, ann, "gym", "20.00", "g1")
    second = await sale(sessions, program, ann, "gym", "20.00", "g2")
    assert [a.promotion for a in first.promotions] == ["new-partner"]
    assert second.promotions == ()


@pytest.mark.parametrize("program", [promo_program(DOUBLE, NEW_PARTNER)])
async def test_a_promotion_ending_mid_sale_is_not_applied(
    sessions: Sessions, program: Program
) -> None:
    ann = await member(sessions, program)
    # The panel at 10:59 showed ×2; the sale is posted at 11:00: the hours have ended.
    await sale(sessions, program, ann, "coffee", "5.00", "warm-up")  # no first visit left
    eleven = datetime(2027, 3, 6, 10, 0, tzinfo=UTC)
    late = await sale(sessions, program, ann, "coffee", "100.00", "late", now=eleven)
    assert late.promotions == ()
    assert late.balance == 50 + 25 + 25 + 500


async def test_min_purchase_is_the_money_charged(sessions: Sessions) -> None:
    """The till passes the money charged to the decision: 9.99 is below new-partner's
    10.00, and the first visit is still there for the 10.00 sale after it (the discount's
    part is in tests/test_bot_promotions.py: 41.00 less 5 % is below 40.00)."""
    program = promo_program(NEW_PARTNER)
    ann = await member(sessions, program)
    below = await sale(sessions, program, ann, "gym", "9.99", "below")
    assert below.promotions == ()
    at_least = await sale(sessions, program, ann, "books", "10.00", "at-least")
    assert [(p.promotion, p.points) for p in at_least.promotions] == [("new-partner", 101)]


async def test_replay_says_the_same_promotions(sessions: Sessions, program: Program) -> None:
    ann = await member(sessions, program)
    first = await sale(sessions, program, ann, "coffee", "100.00", "s1")
    again = await sale(sessions, program, ann, "coffee", "100.00", "s1")
    assert again.replayed
    assert again.promotions == first.promotions
    assert again.balance == first.balance


async def test_birthday_once_per_birthday_under_concurrency(
    sessions: Sessions, program: Program
) -> None:
    from datetime import date

    ann = await member(sessions, program, birthday=date(1990, 3, 4))
    # Twelve sales at once, at four partners: the birthday bonus is given once.
    results = await asyncio.gather(
        *(
            sale(
                sessions,
                program,
                ann,
                ["coffee", "books", "gym", "bakery"][i % 4],
                "5.00",
                f"b{i}",
            )
            for i in range(12)
        )
    )
    got = [a for r in results for a in r.promotions if a.promotion == "birthday"]
    assert len(got) == 1 and got[0].points == 200
    program_paid = (await issued(sessions))[""]
    assert program_paid == 50 + 200  # the welcome gift and one birthday bonus
    async with sessions() as s:
        uses = (await s.execute(text("SELECT promotion, uses FROM promotion_uses"))).all()
    assert [(u.promotion, u.uses) for u in uses] == [("birthday@2027", 1)]


async def test_first_visits_at_many_partners_at_once_do_not_deadlock(
    sessions: Sessions, program: Program
) -> None:
    # Members' first visits at four partners at once: each sale's bonus is paid by the four
    # partners, whose accounts every such sale locks in one order.
    people = [await member(sessions, program, tg=10 + i) for i in range(8)]
    partners = ["coffee", "books", "gym", "bakery"]
    results = await asyncio.gather(
        *(
            sale(sessions, program, who, partners[(i + j) % 4], "10.00", f"v{i}-{j}")
            for i, who in enumerate(people)
            for j in range(4)
        )
    )
    bonuses = [a.points for r in results for a in r.promotions if a.promotion == "new-partner"]
    assert bonuses == [101] * 32
    paid = await issued(sessions)
    # Each partner: its sales' own points + its 25 or 26 of each of the 32 bonuses.
    async with sessions() as s:
        report = await settlement(
            s, program, start=SAT_9 - timedelta(days=1), end=SAT_9 + timedelta(days=1)
        )
    # The 32 bonuses, and the café's ×2 on its eight sales of 10.00 (50 points each).
    assert sum(p.promotions_funded for p in report.partners) == 101 * 32 + 8 * 50
    assert sum(paid.values()) == report.wallets_change


async def test_voucher_effect_funded_by_a_partner_voided_by_a_full_refund(
    sessions: Sessions, program: Program
) -> None:
    ann = await member(sessions, program)
    done = await sale(sessions, program, ann, "books", "40.00", "b1")
    vouchers = [a for a in done.promotions if a.voucher]
    assert [(a.promotion, a.reward) for a in vouchers] == [("coffee-with-a-book", "free-coffee")]
    async with sessions() as s:
        v = (
            await s.execute(select(Voucher).where(Voucher.code == vouchers[0].voucher))
        ).scalar_one()
        assert (v.source, v.status) == ("promotion", "open")
    back = await refund(sessions, program, done.transaction_id, "r1")
    voucher_backs = [p for p in back.promotions if p.voucher]
    assert [(p.voucher, p.voucher_status) for p in voucher_backs] == [
        (vouchers[0].voucher, "voided")
    ]
    async with sessions() as s:
        v = (
            await s.execute(select(Voucher).where(Voucher.code == vouchers[0].voucher))
        ).scalar_one()
        assert v.status == "voided"


async def staff_at(s: AsyncSession, partner: str, telegram_id: int) -> StaffInfo:
    token = await create_invite(s, created_by=1, role="cashier", partner_slug=partner)
    return await accept_invite(s, token, telegram_id=telegram_id, first_name="Staff")


@pytest.mark.parametrize("program", [promo_program(PROGRAM_COFFEE)])
async def test_program_funded_voucher_claimed_is_paid_by_the_program_and_stays(
    sessions: Sessions, program: Program
) -> None:
    ann = await member(sessions, program)
    done = await sale(sessions, program, ann, "books", "40.00", "b1")
    code = done.promotions[0].voucher
    assert code is not None
    before = await issued(sessions)
    async with sessions() as s:
        barista = await staff_at(s, "coffee", 900)
        await claim_voucher(s, program, barista, code=code, now=SAT_9 + timedelta(minutes=5))
    after = await issued(sessions)
    assert after[""] - before[""] == 300  # the program paid the coffee's value
    async with sessions() as s:
        report = await settlement(
            s, program, start=SAT_9 - timedelta(days=1), end=SAT_9 + timedelta(days=1)
        )
    coffee = next(p for p in report.partners if p.slug == "coffee")
    assert (coffee.points_redeemed, coffee.vouchers_honoured) == (300, 300)
    assert report.program_funded == 50 + 300
    back = await refund(sessions, program, done.transaction_id, "r1")
    assert [(p.voucher, p.voucher_status) for p in back.promotions] == [(code, "claimed")]


async def test_refunds_partial_then_full_give_each_funder_back_what_it_paid(
    sessions: Sessions, program: Program
) -> None:
    ann = await member(sessions, program)
    before = await issued(sessions)
    done = await sale(sessions, program, ann, "gym", "30.00", "g1")
    # 30.00 at 2% = 60 points; the first visit +101 split 26/25/25/25.
    assert [a.points for a in done.promotions] == [101]
    third = await refund(sessions, program, done.transaction_id, "r1", "10.00")
    # The award's part as the sale's own: 101 − floor(101 × 20/30) = 34, shared as the
    # funders paid (26/25/25/25), to the point: 9/9/8/8.
    assert [(p.promotion, p.points, p.shortfall) for p in third.promotions] == [
        ("new-partner", 34, 0)
    ]
    assert {k: v - before[k] for k, v in (await issued(sessions)).items()} == {
        "coffee": 26 - 9,
        "books": 25 - 9,
        "gym": 40 + 25 - 8,  # its own 60 less a third
        "bakery": 25 - 8,
        "": 0,
    }
    rest = await refund(sessions, program, done.transaction_id, "r2")
    assert sum(p.points for p in rest.promotions) == 101 - 34
    assert rest.balance == 50
    assert await issued(sessions) == before
    async with sessions() as s:
        report = await settlement(
            s, program, start=SAT_9 - timedelta(days=1), end=SAT_9 + timedelta(days=1)
        )
    assert all(p.promotions_funded == 0 for p in report.partners)
    # A replay of the partial refund says what it said.
    again = await refund(sessions, program, done.transaction_id, "r1", "10.00")
    assert again.replayed and again.promotions == third.promotions


async def test_refund_shortfall_of_promotion_points(sessions: Sessions, program: Program) -> None:
    ann = await member(sessions, program)
    done = await sale(sessions, program, ann, "gym", "30.00", "g1")
    wallet = done.balance  # 211
    # She spends all of it at the bookshop (half of 4.22 in points; 3% of 2.11 earns 6).
    spent = await sale(sessions, program, ann, "books", "4.22", "k1", redeem=wallet)
    assert spent.points_redeemed == wallet and spent.points_earned == 6
    back = await refund(sessions, program, done.transaction_id, "r1")
    assert back.points_clawed_back == 6  # of the sale's own 60
    assert [(p.promotion, p.points, p.shortfall) for p in back.promotions] == [
        ("new-partner", 0, 101)
    ]
    assert back.shortfall == 54 + 101
    assert back.cash_back == D("30.00") - D("1.55")
    again = await refund(sessions, program, done.transaction_id, "r1")
    assert (again.shortfall, again.cash_back, again.promotions) == (
        back.shortfall,
        back.cash_back,
        back.promotions,
    )


async def test_extra_stamps_fill_a_card_and_a_full_refund_takes_back_the_rest(
    sessions: Sessions, program: Program
) -> None:
    ann = await member(sessions, program)
    sales = [
        await sale(
            sessions, program, ann, "coffee", "5.00", f"c{i}", now=SAT_9 + timedelta(minutes=i)
        )
        for i in range(2)
    ]
    # Each sale: its own stamp and two more (3, then 6 = a full card of 5 and 1 over).
    assert [a.stamps for a in sales[0].promotions if a.stamps] == [2]
    async with sessions() as s:
        on_card = await s.scalar(
            text("SELECT balance FROM accounts WHERE kind = 'stamps' AND member_id = :m"),
            {"m": ann},
        )
        fills = await s.scalar(
            text("SELECT count(*) FROM transactions WHERE kind = 'card_filled'")
        )
    assert (on_card, fills) == (1, 1)
    assert sales[1].balance == 50 + 50 + 50 + 250


WELCOME_BACK = {
    "slug": "welcome-back",
    "title": "We missed you",
    "who": {"inactive_days": 60},
    "effect": {"bonus_points": 150},
    "funded_by": "program",
}


@pytest.mark.parametrize("program", [promo_program(WELCOME_BACK)])
async def test_welcome_back_once_when_sales_race(sessions: Sessions, program: Program) -> None:
    # Joined 90 days ago and never bought: the first of these sales is the one after the
    # break; those that race it read the member's purchases again under the wallet's lock.
    ann = await member(sessions, program, joined_at=SAT_9 - timedelta(days=90))
    results = await asyncio.gather(
        *(
            sale(
                sessions,
                program,
                ann,
                ["coffee", "books", "gym", "bakery"][i % 4],
                "5.00",
                f"w{i}",
            )
            for i in range(8)
        )
    )
    assert sum(len(r.promotions) for r in results) == 1
    assert (await issued(sessions))[""] == 50 + 150


def voucher_card_program(*promotions: dict[str, Any]) -> Program:
    """The test program with its coffee card giving a voucher instead of points."""
    raw = {
        **TEST_PROGRAM,
        "program": {**TEST_PROGRAM["program"], "timezone": "Europe/Warsaw"},
        "rewards": [
            {
                "slug": "free-coffee",
                "title": "A coffee of your choice",
                "partner": "coffee",
                "points": 300,
                "valid_days": 30,
            }
        ],
        "stamp_cards": [
            {
                "slug": "coffee-5",
                "name": "Fifth coffee free",
                "partners": ["coffee"],
                "stamps": 5,
                "per_day": 0,
                "reward": "free-coffee",
            }
        ],
        "promotions": list(promotions),
    }
    return parse_program(raw)


@pytest.mark.parametrize("voucher", [False, True])
async def test_a_card_filled_by_promotion_stamps_is_told_with_its_reward(
    sessions: Sessions, voucher: bool
) -> None:
    program = voucher_card_program(STAMPS) if voucher else promo_program(STAMPS)
    ann = await member(sessions, program)
    first = await sale(sessions, program, ann, "coffee", "5.00", "c0")
    assert [(n.card, n.status, n.stamps) for n in first.stamps] == [
        ("coffee-5", "added", 1),
        ("coffee-5", "promoted", 3),
    ]
    # Her own stamp is the 4th; the promotion's two fill the card and start the next at 1.
    done = await sale(
        sessions, program, ann, "coffee", "5.00", "c1", now=SAT_9 + timedelta(minutes=1)
    )
    told = [(n.card, n.status, n.stamps, n.reward_points) for n in done.stamps]
    assert told == [
        ("coffee-5", "added", 4, 0),
        ("coffee-5", "filled", 5, 0 if voucher else 250),
        ("coffee-5", "promoted", 1, 0),
    ]
    async with sessions() as s:
        on_card = await s.scalar(
            text("SELECT balance FROM accounts WHERE kind = 'stamps' AND member_id = :m"),
            {"m": ann},
        )
        code = await s.scalar(select(Voucher.code).where(Voucher.member_id == ann))
    assert on_card == 1
    if voucher:
        assert code is not None and done.stamps[1].voucher == code
        assert done.balance == 50 + 50
    else:
        assert code is None and done.balance == 50 + 50 + 250
    # A replay says the same.
    again = await sale(
        sessions, program, ann, "coffee", "5.00", "c1", now=SAT_9 + timedelta(minutes=1)
    )
    assert again.replayed and again.stamps == done.stamps


async def test_refund_replays_and_cash_handed_back_after_the_promotion_left_the_file(
    sessions: Sessions, program: Program
) -> None:
    ann = await member(sessions, program)
    done = await sale(sessions, program, ann, "gym", "30.00", "g1")
    await sale(sessions, program, ann, "books", "4.22", "k1", redeem=done.balance)
    back = await refund(sessions, program, done.transaction_id, "r1")
    assert back.shortfall == 54 + 101 and back.cash_back == D("28.45")
    later = promo_program()  # the campaign ended: no promotion in the file any more
    window = {"start": SAT_9, "end": SAT_9 + timedelta(days=1)}
    async with sessions() as s:
        now_cash = await cash_handed_back(s, program, **window)
        later_cash = await cash_handed_back(s, later, **window)
    assert now_cash == later_cash == {back.transaction_id: D("28.45")}
    again = await refund(sessions, later, done.transaction_id, "r1")
    assert again.replayed and (again.shortfall, again.cash_back) == (back.shortfall, D("28.45"))
    assert [(p.promotion, p.shortfall) for p in again.promotions] == [("new-partner", 101)]
    replayed = await sale(sessions, later, ann, "gym", "30.00", "g1")
    assert [(a.promotion, a.points) for a in replayed.promotions] == [("new-partner", 101)]


async def test_a_refund_takes_back_the_awards_part_by_the_sales_rule_shared_as_paid(
    sessions: Sessions, program: Program
) -> None:
    ann = await member(sessions, program)
    before = await issued(sessions)
    done = await sale(sessions, program, ann, "gym", "30.00", "g1")
    # 20.00 of 30.00: 101 − floor(101 × 10/30) = 68 (each funder's floor apart made 69),
    # shared 17/17/17/17 as the funders paid 26/25/25/25.
    most = await refund(sessions, program, done.transaction_id, "r1", "20.00")
    assert [(p.promotion, p.points) for p in most.promotions] == [("new-partner", 68)]
    moved = {k: v - before[k] for k, v in (await issued(sessions)).items()}
    assert moved == {"coffee": 9, "books": 8, "gym": 20 + 8, "bakery": 8, "": 0}
    rest = await refund(sessions, program, done.transaction_id, "r2")
    assert [(p.promotion, p.points) for p in rest.promotions] == [("new-partner", 33)]
    assert await issued(sessions) == before


async def test_a_shortfall_of_promotion_points_is_paid_back_to_its_funders_by_the_seller(
    sessions: Sessions, program: Program
) -> None:
    ann = await member(sessions, program)
    before = await issued(sessions)
    done = await sale(sessions, program, ann, "gym", "30.00", "g1")
    await sale(sessions, program, ann, "books", "4.22", "k1", redeem=done.balance)
    back = await refund(sessions, program, done.transaction_id, "r1")
    assert [(p.promotion, p.points, p.shortfall, p.repaid) for p in back.promotions] == [
        ("new-partner", 0, 101, 101)
    ]
    # The gym kept the 101 points' value from the cash: the other funders get theirs back
    # from its account; it bears the whole award, and its own points the member spent (54).
    moved = {k: v - before[k] for k, v in (await issued(sessions)).items()}
    assert moved == {"coffee": 0, "books": 6, "gym": 54 + 101, "bakery": 0, "": 0}
    async with sessions() as s:
        report = await settlement(
            s, program, start=SAT_9 - timedelta(days=1), end=SAT_9 + timedelta(days=1)
        )
    assert {p.slug: p.promotions_funded for p in report.partners} == {
        "coffee": 0,
        "books": 0,
        "gym": 101,
        "bakery": 0,
    }
    again = await refund(sessions, program, done.transaction_id, "r1")
    assert again.replayed and again.promotions == back.promotions


@pytest.mark.parametrize("program", [promo_program(BOOK_COFFEE)])
async def test_a_full_refund_and_a_claim_of_its_voucher_at_once_do_not_deadlock(
    sessions: Sessions, program: Program
) -> None:
    """The claim holds the voucher and waits for the café's account (held a moment by
    another); the refund comes meanwhile: it waits for the voucher before any account, so
    neither holds what the other waits for."""
    async with sessions() as s:
        barista = await staff_at(s, "coffee", 900)
    for i in range(3):
        ann = await member(sessions, program, tg=10 + i)
        done = await sale(sessions, program, ann, "books", "40.00", f"b{i}")
        code = done.promotions[0].voucher
        assert code is not None

        async def claim(code: str = code) -> Any:
            async with sessions() as s:
                return await claim_voucher(
                    s, program, barista, code=code, now=SAT_9 + timedelta(minutes=5)
                )

        async with sessions() as holder:
            await holder.execute(
                text(
                    """SELECT a.id FROM accounts AS a JOIN partners AS p ON p.id = a.partner_id
                       WHERE p.slug = 'coffee' AND a.kind = 'partner_redeemed' FOR UPDATE"""
                )
            )
            claiming = asyncio.create_task(claim())
            await asyncio.sleep(0.3)
            refunding = asyncio.create_task(
                refund(sessions, program, done.transaction_id, f"r{i}")
            )
            await asyncio.sleep(0.3)
            await holder.rollback()
        claimed, back = await asyncio.gather(claiming, refunding, return_exceptions=True)
        assert not isinstance(claimed, BaseException), claimed
        assert not isinstance(back, BaseException), back
        assert [(p.voucher, p.voucher_status) for p in back.promotions] == [(code, "claimed")]
        # And both at once, as they come.
        other = await member(sessions, program, tg=20 + i)
        done = await sale(sessions, program, other, "books", "40.00", f"o{i}")
        code = done.promotions[0].voucher
        assert code is not None
        outcomes = await asyncio.gather(
            refund(sessions, program, done.transaction_id, f"q{i}"),
            claim(code),
            return_exceptions=True,
        )
        assert not isinstance(outcomes[0], BaseException), outcomes[0]
        assert "Deadlock" not in repr(outcomes[1])


SILVER_BONUS = {
    "slug": "silver-bonus",
    "title": "Silver members: +50 at the café, the bookshop pays",
    "partners": ["coffee"],
    "who": {"tiers": ["Silver"]},
    "effect": {"bonus_points": 50},
    "funded_by": {"books": 100},
}


@pytest.mark.parametrize("program", [promo_program(SILVER_BONUS)])
async def test_accounts_are_locked_for_a_tier_only_promotion_whatever_the_tier(
    sessions: Sessions, program: Program
) -> None:
    """A Bronze member's sale at the café locks the bookshop's account before its own: a
    sale of theirs elsewhere may make them Silver before this one is posted, and then the
    bookshop pays, its account taken in the one order."""
    ann = await member(sessions, program)
    async with sessions() as s, s.begin():
        prepared = await promotions.prepare(
            s, program, member_id=ann, partner="coffee", charged=D("10.00"), now=SAT_9
        )
        assert prepared is not None and prepared.locked == {"books"}
    # And at Silver the bookshop pays.
    async with sessions() as s, s.begin():
        await s.execute(text("UPDATE members SET tier = 'Silver' WHERE id = :m"), {"m": ann})
    done = await sale(sessions, program, ann, "coffee", "10.00", "c1")
    assert [(a.promotion, a.points) for a in done.promotions] == [("silver-bonus", 50)]


async def test_funders_accounts_are_read_once_and_refunds_find_their_postings_by_index(
    sessions: Sessions, program: Program, engine: Any
) -> None:
    ann = await member(sessions, program)
    statements: list[str] = []

    def seen(*args: object) -> None:
        statements.append(str(args[2]))

    event.listen(engine.sync_engine, "before_cursor_execute", seen)
    try:
        done = await sale(sessions, program, ann, "gym", "30.00", "g1")
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", seen)
    assert [a.points for a in done.promotions] == [101]  # paid by four partners
    # Their accounts were read as they were locked, before the sale: not once each again.
    issued_sql = str(promotions._ISSUED).replace(":slug", "$1").strip()
    assert not [q for q in statements if q.strip() == issued_sql]
    back = await refund(sessions, program, done.transaction_id, "r1", "10.00")
    async with sessions() as s, s.begin():
        await s.execute(text("SET LOCAL enable_seqscan = off"))
        plan = "\n".join(
            (
                await s.execute(
                    text("EXPLAIN " + str(promotions._BACK_OF_REFUND)),
                    {"sale": done.transaction_id, "refund": back.transaction_id},
                )
            ).scalars()
        )
    assert "ix_transactions_related_id" in plan, plan


BEANS = {
    "slug": "beans",
    "title": "Double points on coffee beans",
    "partners": ["coffee"],
    "when": {"categories": ["coffee-beans"]},
    "min_purchase": "20.00",
    "effect": {"multiplier": "2"},
    "funded_by": "program",
}
BEAN_BAG = {
    "slug": "bean-bag",
    "title": "A bag of beans: +40 points",
    "when": {"categories": ["coffee-beans"]},
    "effect": {"bonus_points": 40},
}


@pytest.mark.parametrize("program", [promo_program(BEANS, BEAN_BAG)])
async def test_promotions_with_categories_count_the_sale_lines_of_them(
    sessions: Sessions, program: Program
) -> None:
    ann = await member(sessions, program)
    lines = (Line(D("30.00"), D(1), "coffee-beans", "B-250"), Line(D("70.00"), D(2), "cups"))

    async def sell(key: str, amount: str, with_lines: tuple[Line, ...]) -> PurchaseResult:
        async with sessions() as s:
            return await record_sale(
                s,
                program,
                Sale(
                    member_id=ann,
                    partner="coffee",
                    amount=D(amount),
                    key=key,
                    now=SAT_9,
                    lines=with_lines,
                ),
            )

    # 100.00 at 5 %: 500 points; ×2 on the beans' 30 % adds 150; the bag's bonus 40.
    done = await sell("l1", "100.00", lines)
    assert done.points_earned == 500
    assert [(p.promotion, p.points) for p in done.promotions] == [("beans", 150), ("bean-bag", 40)]
    # A replay with the same lines says the same; other lines under the key are refused.
    again = await sell("l1", "100.00", lines)
    assert again.replayed and [p.points for p in again.promotions] == [150, 40]
    with pytest.raises(IdempotencyConflict):
        await sell("l1", "100.00", (Line(D("100.00"), category="cups"),))
    # The same money without lines (a cashier's sale): neither applies.
    plain = await sell("l2", "100.00", ())
    assert plain.promotions == ()
    # Beans under the min_purchase of the multiplier: only the bag's bonus.
    small = await sell("l3", "50.00", (Line(D("10.00"), category="coffee-beans"), Line(D("40"))))
    assert [(p.promotion, p.points) for p in small.promotions] == [("bean-bag", 40)]
    with pytest.raises(LinesDontAddUp):
        await sell("l4", "50.00", (Line(D("10.00"), category="coffee-beans"),))
    # A refund takes the awards back in proportion to the money, as any promotion's.
    back = await refund(sessions, program, done.transaction_id, "r1")
    assert [(p.promotion, p.points) for p in back.promotions] == [("beans", 150), ("bean-bag", 40)]
    # The cashier's panel lists none of them: a cashier's sale has no lines.
    async with sessions() as s:
        shown = await promotions.preview(s, program, member_id=ann, partner="coffee", now=SAT_9)
    assert shown == []
