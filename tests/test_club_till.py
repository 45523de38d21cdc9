"""The club at the till, on a real PostgreSQL: a member's discount is their tier's plus the
club's, the club's ×1.5 is a promotion the program pays (applied, refunded and replayed as
one), promotions for club members reach club members only, a sale sent alone stays alone
for members not in the club, a month sold at the till (once per panel, never on the
cashier's own card, at the price shown), and settlement's club money. The till's
conversation is in test_bot_club_till.py. The ledger's invariants are checked after each
test (the `sessions` fixture)."""

from __future__ import annotations

import copy
import csv
import io
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.views.settlement_csv import write_settlement
from db.ledger.models import (
    AuditLog,
    ClubPayment,
    Member,
    Notice,
    Transaction,
    TxKind,
)
from db.queries.club import in_club
from db.queries.reports import club_takings
from db.queries.settlement import settlement
from db.rules.errors import ClubPriceChanged, DiscountChanged, NoClub, NotStaff, OwnCard
from db.rules.program import CLUB_PERIOD, Program, load_program, parse_program
from db.usecases import purchases
from db.usecases.club import Payment, record_payment
from db.usecases.club_till import sell_month
from db.usecases.discounts import quote
from db.usecases.members import register_member
from db.usecases.promotions import preview
from db.usecases.purchases import Refund, Sale, record_refund, record_sale
from db.usecases.staff import StaffInfo, accept_invite, create_invite
from db.usecases.till import request_redemption, till_sale
from tests.conftest import ROOT, TEST_PROGRAM

D = Decimal
Sessions = async_sessionmaker[AsyncSession]
NOW = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)
SECRET = b"test-secret"
CLUB = {
    "name": "City Club",
    "stars_per_month": 250,
    "price": "29.00",
    "multiplier": "1.5",
    "discount_percent": "5",
    "welcome_points": 500,
}
CLUB_BOOKS = {
    "slug": "club-books",
    "title": "Club members: 100 points on a book",
    "partners": ["books"],
    "who": {"club": True},
    "min_purchase": "30.00",
    "effect": {"bonus_points": 100},
    "funded_by": "program",
}


def till_club_program(**club: Any) -> Program:
    """The test program with Gold 5 % off, a club (5 % off on top, ×1.5, 29.00 a month at
    the till, 500 welcome points) and a bonus for club members at the bookshop."""
    data: dict[str, Any] = copy.deepcopy(TEST_PROGRAM)
    data["tiers"][2]["discount_percent"] = "5"  # Gold
    data["club"] = {**CLUB, **club}
    data["promotions"] = [CLUB_BOOKS]
    return parse_program(data)


@pytest.fixture
def program() -> Program:
    return till_club_program()


async def member(s: AsyncSession, program: Program, telegram_id: int, tier: str = "Gold") -> int:
    found = await register_member(
        s, program, telegram_id=telegram_id, first_name=f"M{telegram_id}", now=NOW - timedelta(1)
    )
    await s.execute(update(Member).where(Member.id == found.id).values(tier=tier))
    await s.commit()
    return found.id


async def join_club(s: AsyncSession, program: Program, member_id: int, at: datetime = NOW) -> None:
    """A month paid with Stars (the club's own flow), from `at`."""
    await record_payment(
        s,
        program,
        Payment(
            member_id=member_id,
            charge_id=f"stars-{member_id}-{at.isoformat()}",
            method="stars",
            currency="XTR",
            amount=D(250),
            now=at,
            until=at + CLUB_PERIOD,
            renews=True,
        ),
    )


async def staff_at(s: AsyncSession, partner: str, telegram_id: int, role: str = "cashier") -> Any:
    token = await create_invite(s, created_by=1, role=role, partner_slug=partner)
    return await accept_invite(s, token, telegram_id=telegram_id, first_name="Staff")


async def program_balance(s: AsyncSession) -> int:
    balance = await s.scalar(
        text("SELECT balance FROM account_balances WHERE kind = 'program' AND unit = 'points'")
    )
    await s.rollback()
    return int(balance or 0)


async def count(s: AsyncSession, what: Any, *where: Any) -> int:
    n = await s.scalar(select(func.count()).select_from(what).where(*where))
    await s.rollback()
    return int(n or 0)


async def test_a_club_member_gets_both_discounts_and_the_club_multiplier(
    sessions: Sessions, program: Program
) -> None:
    async with sessions() as s:
        cashier = await staff_at(s, "coffee", 900)
        ann, bob = await member(s, program, 1), await member(s, program, 2)
        await join_club(s, program, ann)
        priced = await quote(s, program, ann, D("100.00"), now=NOW)
        assert (priced.percent, priced.club_percent, priced.discount) == (D(10), D(5), D("10.00"))
        shown = await quote(s, program, bob, D("100.00"), now=NOW)
        assert (shown.percent, shown.club_percent, shown.discount) == (D(5), D(0), D("5.00"))

        done = await till_sale(
            s, program, cashier, member_id=ann, amount=D("100.00"), dialog="d-ann", now=NOW,
            discount_percent=D(10),
        )  # fmt: skip
        # 90.00 to pay × 5 % × 2 (Gold) = 900 points; the club's ×1.5 adds 450, paid by the
        # program.
        assert (done.discount, done.discount_percent, done.discount_club_percent) == (
            D("10.00"),
            D(10),
            D(5),
        )
        assert done.points_earned == 900
        assert [(a.promotion, a.points, a.multiplier) for a in done.promotions] == [
            ("club", 450, D("1.5"))
        ]
        assert done.balance == 50 + 500 + 900 + 450  # welcome, the club's welcome, the sale
        other = await till_sale(
            s, program, cashier, member_id=bob, amount=D("100.00"), dialog="d-bob", now=NOW,
            discount_percent=D(5),
        )  # fmt: skip
        assert (other.points_earned, other.promotions, other.discount) == (950, (), D("5.00"))
        assert other.discount_club_percent == 0
        # The club's discount to someone not in the club: refused, nothing posted.
        with pytest.raises(DiscountChanged):
            await till_sale(
                s, program, cashier, member_id=bob, amount=D("50.00"), dialog="d-bob-2",
                now=NOW, discount_percent=D(10),
            )  # fmt: skip
        with pytest.raises(DiscountChanged):
            await request_redemption(
                s, program, cashier, member_id=bob, amount=D("100.00"), points=None,
                dialog="d-bob-3", staff_chat_id=900, now=NOW, discount_percent=D(10),
            )  # fmt: skip
        # The receipt owed to the cashier carries the club's part, to say where it comes from.
        params = await s.scalar(
            select(Notice.params).where(Notice.kind == "purchase", Notice.member_id == ann)
        )
        await s.rollback()
    assert params is not None
    assert params["discount_club_percent"] == "5" and params["discount_percent"] == "10"
    assert params["promotions"][0]["promotion"] == "club"


async def test_promotions_for_club_members_reach_club_members_only(
    sessions: Sessions, program: Program
) -> None:
    async with sessions() as s:
        ann, bob = await member(s, program, 1, "Bronze"), await member(s, program, 2, "Bronze")
        await join_club(s, program, ann)
        shown = [
            p.slug for p in await preview(s, program, member_id=ann, partner="books", now=NOW)
        ]
        assert shown == ["club-books", "club"]
        assert await preview(s, program, member_id=bob, partner="books", now=NOW) == []
        # A club member's 40.00 book: 38.00 to pay (the club's 5 %), 3 % → 114 points, ×1.5
        # → +57, and the club's bonus of 100; nothing of it for Bob (at 40.00: 120 points).
        sale = Sale(member_id=ann, partner="books", amount=D("40.00"), key="b1", now=NOW)
        done = await record_sale(s, program, replace_discount(sale, D(5)))
        assert done.points_earned == 114
        assert [(a.promotion, a.points) for a in done.promotions] == [
            ("club", 57),
            ("club-books", 100),
        ]
        other = await record_sale(
            s, program, Sale(member_id=bob, partner="books", amount=D("40.00"), key="b2", now=NOW)
        )
        assert (other.points_earned, other.promotions) == (120, ())
        # Once the membership has lapsed, neither.
        later = NOW + CLUB_PERIOD + timedelta(hours=1)
        assert not await in_club(s, ann, later)
        again = await record_sale(
            s,
            program,
            Sale(member_id=ann, partner="books", amount=D("40.00"), key="b3", now=later),
        )
        assert (again.points_earned, again.promotions) == (120, ())


def replace_discount(sale: Sale, percent: Decimal) -> Sale:
    return replace(sale, discount_percent=percent)


async def test_a_refund_takes_the_club_part_back_to_the_program(
    sessions: Sessions, program: Program
) -> None:
    async with sessions() as s:
        ann = await member(s, program, 1, "Bronze")
        await join_club(s, program, ann)
        before = await program_balance(s)
        sale = replace_discount(
            Sale(member_id=ann, partner="coffee", amount=D("100.00"), key="c1", now=NOW), D(5)
        )
        done = await record_sale(s, program, sale)
        # 95.00 × 5 % = 475 points; the club's ×1.5 adds 237 (floor of 712.5 − 475).
        assert (done.points_earned, [(a.promotion, a.points) for a in done.promotions]) == (
            475,
            [("club", 237)],
        )
        assert await program_balance(s) == before - 237
        half = await record_refund(
            s,
            program,
            Refund(done.transaction_id, key="r1", reason="half", amount=D("47.50"), now=NOW),
        )
        # Half the money takes back half the club's points, rounded as the sale's own are.
        assert [(b.promotion, b.points) for b in half.promotions] == [("club", 119)]
        rest = await record_refund(
            s, program, Refund(done.transaction_id, key="r2", reason="rest", now=NOW)
        )
        assert [(b.promotion, b.points) for b in rest.promotions] == [("club", 118)]
        assert await program_balance(s) == before  # all of it back to the program
        replayed = await record_refund(
            s, program, Refund(done.transaction_id, key="r1", reason="half", amount=D("47.50"))
        )
        assert replayed.replayed and [(b.promotion, b.points) for b in replayed.promotions] == [
            ("club", 119)
        ]
        again = await record_sale(s, program, sale)  # the sale's key again: its replay
        assert again.replayed and [(a.promotion, a.points) for a in again.promotions] == [
            ("club", 237)
        ]


async def test_a_sale_alone_stays_alone_for_members_not_in_the_club(
    sessions: Sessions, program: Program, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At a partner whose only promotion is the club's, a member not in the club's sale is
    still sent alone (the club status read first, alone too); a member's goes through the
    transaction that applies the club's ×1.5."""
    alone: list[str] = []
    real = purchases.fetch_row_alone

    async def spy(session: AsyncSession, sql: str, *args: Any) -> Any:
        alone.append("sale" if "ledger_sale" in sql else "club")
        return await real(session, sql, *args)

    monkeypatch.setattr(purchases, "fetch_row_alone", spy)
    # The club's ×1.5 everywhere, and its bonus at the bookshop: for club members only.
    assert purchases._posting_is_all(program, "coffee")
    assert purchases._posting_is_all(program, "books")
    async with sessions() as s:
        ann, bob = await member(s, program, 1, "Bronze"), await member(s, program, 2, "Bronze")
        await join_club(s, program, ann)
    async with sessions() as s:
        plain = await record_sale(
            s, program, Sale(member_id=bob, partner="coffee", amount=D("20.00"), key="a1", now=NOW)
        )
    assert alone == ["club", "sale"] and (plain.points_earned, plain.promotions) == (100, ())
    alone.clear()
    async with sessions() as s:
        sale = Sale(member_id=ann, partner="coffee", amount=D("20.00"), key="a2", now=NOW)
        clubbed = await record_sale(s, program, replace_discount(sale, D(5)))
    assert alone == ["club"]  # then in a transaction, with the club's promotion
    assert [(a.promotion, a.points) for a in clubbed.promotions] == [("club", 47)]
    # A discount shown for a member not in the club, sent alone: refused, nothing written.
    alone.clear()
    async with sessions() as s:
        with pytest.raises(DiscountChanged):
            await record_sale(
                s,
                program,
                replace_discount(
                    Sale(member_id=bob, partner="coffee", amount=D("20.00"), key="a3", now=NOW),
                    D(5),
                ),
            )
        assert await count(s, Transaction, Transaction.idempotency_key == "a3") == 0


async def test_a_membership_bought_after_the_amount_was_shown_changes_the_discount(
    sessions: Sessions, program: Program
) -> None:
    async with sessions() as s:
        cashier = await staff_at(s, "coffee", 900)
        ann = await member(s, program, 1)
        shown = await quote(s, program, ann, D("100.00"), now=NOW)
        assert shown.percent == 5
        await join_club(s, program, ann)  # bought in Telegram while the cashier waits
        with pytest.raises(DiscountChanged):
            await till_sale(
                s, program, cashier, member_id=ann, amount=D("100.00"), dialog="d1", now=NOW,
                discount_percent=shown.percent,
            )  # fmt: skip
        assert await count(s, Transaction, Transaction.kind == TxKind.EARN) == 0
        again = await quote(s, program, ann, D("100.00"), now=NOW)
        done = await till_sale(
            s, program, cashier, member_id=ann, amount=D("100.00"), dialog="d2", now=NOW,
            discount_percent=again.percent,
        )  # fmt: skip
        assert done.discount == D("10.00")


async def test_a_month_sold_at_the_till_is_recorded_once_per_panel(
    sessions: Sessions, program: Program
) -> None:
    async with sessions() as s:
        cashier = await staff_at(s, "coffee", 900)
        ann = await member(s, program, 1, "Bronze")
        sold = await sell_month(
            s, program, cashier, member_id=ann, panel="p1", price=D("29.00"), secret=SECRET,
            now=NOW,
        )  # fmt: skip
        assert sold.new and sold.joined and sold.welcome_points == 500
        assert sold.ends_at == NOW + CLUB_PERIOD
        again = await sell_month(
            s, program, cashier, member_id=ann, panel="p1", price=D("29.00"), secret=SECRET,
            now=NOW + timedelta(minutes=1),
        )  # fmt: skip
        assert not again.new and again.ends_at == sold.ends_at
        paid = (
            await s.execute(
                select(
                    ClubPayment.method,
                    ClubPayment.amount,
                    ClubPayment.currency,
                    ClubPayment.partner_id,
                    ClubPayment.staff_id,
                    ClubPayment.charge_id,
                )
            )
        ).one()
        await s.rollback()
        assert tuple(paid) == (
            "till",
            D("29.00"),
            "PLN",
            cashier.partner_id,
            cashier.id,
            f"till:{cashier.partner_id}:p1",
        )
        # Another panel: another month, after the first.
        more = await sell_month(
            s, program, cashier, member_id=ann, panel="p2", price=D("29.00"), secret=SECRET,
            now=NOW + timedelta(days=2),
        )  # fmt: skip
        assert more.new and not more.joined and more.welcome_points == 0
        assert more.ends_at == NOW + 2 * CLUB_PERIOD
        assert await count(s, Notice, Notice.kind == "club_paid") == 2
        assert await count(s, Notice, Notice.kind == "club_sold") == 0  # no chat given
        takings = await club_takings(
            s, start=NOW - timedelta(1), end=NOW + timedelta(days=3), staff_id=cashier.id
        )
        assert (takings.months, takings.money) == (2, D("58.00"))


async def test_a_month_is_refused_on_the_own_card_at_another_price_and_without_the_role(
    sessions: Sessions, program: Program
) -> None:
    async with sessions() as s:
        cashier = await staff_at(s, "coffee", 900)
        own = await member(s, program, 900, "Bronze")  # the cashier's own card
        ann = await member(s, program, 1, "Bronze")
        with pytest.raises(OwnCard):
            await sell_month(
                s, program, cashier, member_id=own, panel="p1", price=D("29.00"), secret=SECRET
            )
        refused = await s.scalar(
            select(AuditLog.details).where(AuditLog.action == "own_card_refused")
        )
        await s.rollback()
        assert refused == {"attempted": "club_sale"}
        with pytest.raises(ClubPriceChanged) as changed:
            await sell_month(
                s, program, cashier, member_id=ann, panel="p2", price=D("25.00"), secret=SECRET
            )
        assert changed.value.params["price"] == D("29.00")
        marketer = StaffInfo(
            id=cashier.id,
            telegram_id=cashier.telegram_id,
            role="marketer",
            partner_id=None,
            partner_slug=None,
            partner_name=None,
        )
        with pytest.raises(NotStaff):
            await sell_month(
                s, program, marketer, member_id=ann, panel="p3", price=D("29.00"), secret=SECRET
            )
        stars_only = till_club_program(price="0")
        with pytest.raises(NoClub):
            await sell_month(
                s, stars_only, cashier, member_id=ann, panel="p4", price=D(0), secret=SECRET
            )
        assert await count(s, ClubPayment) == 0


async def test_settlement_counts_the_club_money_each_partner_collected(
    sessions: Sessions, program: Program
) -> None:
    start, end = NOW - timedelta(days=1), NOW + timedelta(days=5)
    async with sessions() as s:
        barista, bookseller = await staff_at(s, "coffee", 900), await staff_at(s, "books", 901)
        ann, bob = await member(s, program, 1, "Bronze"), await member(s, program, 2, "Bronze")
        cat = await member(s, program, 3, "Bronze")
        for cashier, who, panel, when in (
            (barista, ann, "p1", NOW),
            (barista, bob, "p2", NOW + timedelta(days=1)),
            (bookseller, cat, "p3", NOW),
            (barista, cat, "p4", NOW - timedelta(days=3)),  # before the period
        ):
            await sell_month(
                s, program, cashier, member_id=who, panel=panel, price=D("29.00"),
                secret=SECRET, now=when,
            )  # fmt: skip
        # A month refunded in the period (the club's refunds set refunded_at): Bob's of the
        # period, and Cat's of before it: each counts in the period it happened.
        await s.execute(
            update(ClubPayment)
            .where(ClubPayment.charge_id.in_([f"till:{barista.partner_id}:p{n}" for n in (2, 4)]))
            .values(refunded_at=NOW + timedelta(days=2))
        )
        await s.commit()
        sale = Sale(member_id=ann, partner="coffee", amount=D("100.00"), key="c1", now=NOW)
        await record_sale(s, program, replace_discount(sale, D(5)))
        report = await settlement(s, program, start=start, end=end)
    by = {p.slug: p for p in report.partners}
    # Coffee: 29 + 29 collected, less 29 + 29 refunded; books: 29.
    assert (by["coffee"].club_money, by["books"].club_money, by["gym"].club_money) == (
        D("0.00"),
        D("29.00"),
        D("0.00"),
    )
    assert report.club_money == D("29.00")
    out = io.StringIO()
    write_settlement(report, "PLN", out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    lines = {r["Partner code"] or r["Line"]: r for r in rows}
    books = lines["books"]
    assert books["Club money collected"] == "29.00"
    # The bookshop issued no points: it owes the coalition the 29.00 it collected.
    assert (books["Net points"], books["Amount"], books["Who pays"]) == (
        "0",
        "-29.00",
        "partner pays coalition",
    )
    for r in rows[:-1]:
        net = int(r["Net points"]) * D(r["Point value"])
        assert D(r["Amount"]) == net - D(r["Club money collected"])
    total = lines["total"]
    assert D(total["Club money collected"]) == sum(D(r["Club money collected"]) for r in rows[:-1])
    assert D(total["Amount"]) == sum(D(r["Amount"]) for r in rows[:-1])
    assert total["Club money collected"] == "29.00"


@pytest.mark.parametrize("program", [load_program(ROOT / "program.toml")])
async def test_the_demo_programs_club_books_bonus_is_for_club_members_only(
    sessions: Sessions, program: Program
) -> None:
    async with sessions() as s:
        ann, bob = await member(s, program, 1, "Bronze"), await member(s, program, 2, "Bronze")
        await join_club(s, program, ann)
        for who, expected in ((ann, True), (bob, False)):
            shown = await preview(s, program, member_id=who, partner="books", now=NOW)
            assert ("club-books" in [p.slug for p in shown]) is expected
            priced = await quote(s, program, who, D("40.00"), now=NOW)
            sale = Sale(member_id=who, partner="books", amount=D("40.00"), key=f"k{who}", now=NOW)
            done = await record_sale(s, program, replace_discount(sale, priced.percent))
            got = {a.promotion: a.points for a in done.promotions}
            assert ("club-books" in got) is expected and ("club" in got) is expected
            if expected:
                assert got["club-books"] == 100
