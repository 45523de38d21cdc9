"""Tier discounts: the rounding rule, sales with and without a discount, points on what is to
pay, a tier that changed between the till's panel and the posting, refunds of a discounted
sale, a pure discount program, and the figures. Use cases on real PostgreSQL; the till's
conversation is in test_bot_discounts.py. The ledger's invariants are checked after each
test (the `sessions` fixture)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from db.ledger.models import Member, Partner, RedemptionRequest, Transaction
from db.ledger.writer import fingerprint
from db.queries.reports import partner_figures
from db.queries.settlement import settlement
from db.queries.stats import coalition_report, kpis
from db.rules.discounts import discount_of, price
from db.rules.errors import DiscountChanged, RedeemLimitExceeded, RefundTooLarge
from db.rules.program import Program, ProgramError, parse_program
from db.usecases.adjust import adjust
from db.usecases.members import get_member, register_member
from db.usecases.purchases import PurchaseResult, Refund, Sale, record_refund, record_sale
from db.usecases.staff import accept_invite, create_invite
from db.usecases.till import confirm_redemption, request_redemption
from tests.conftest import TEST_PROGRAM, make_program

D = Decimal
T0 = datetime(2026, 3, 2, 10, tzinfo=UTC)


def discount_program(*, earn: bool = True, welcome: int = 50) -> Program:
    """The test program with Silver 3 % and Gold 5 % off; `earn=False`: a pure discount
    program (no partner gives points)."""
    data: dict[str, Any] = copy.deepcopy(TEST_PROGRAM)
    data["program"]["welcome_points"] = welcome
    data["tiers"] = [
        {"name": "Bronze", "min_spend": "0", "multiplier": "1.0"},
        {"name": "Silver", "min_spend": "1000.00", "multiplier": "1.5", "discount_percent": "3"},
        {"name": "Gold", "min_spend": "3000.00", "multiplier": "2.0", "discount_percent": "5"},
    ]
    if not earn:
        for partner in data["partners"]:
            partner["earn_percent"] = "0"
    return parse_program(data)


@pytest.fixture
def program() -> Program:
    return discount_program()


async def member_at(
    session: AsyncSession, program: Program, telegram_id: int, tier: str, points: int = 0
) -> int:
    """A member put straight at `tier` (as the nightly recalculation would), with `points`
    more than the welcome gift."""
    member = await register_member(
        session, program, telegram_id=telegram_id, first_name="M", now=T0
    )
    await session.execute(update(Member).where(Member.id == member.id).values(tier=tier))
    await session.commit()
    if points:
        await adjust(
            session,
            program,
            member_id=member.id,
            points=points,
            reason="t",
            key=f"adjust-{member.id}",
        )
    return member.id


async def sale(
    session: AsyncSession,
    program: Program,
    member_id: int,
    amount: str,
    key: str,
    *,
    percent: str = "0",
    points: int = 0,
    partner: str = "coffee",
    at: datetime = T0,
) -> PurchaseResult:
    return await record_sale(
        session,
        program,
        Sale(
            member_id=member_id,
            partner=partner,
            amount=D(amount),
            key=key,
            redeem_points=points,
            now=at,
            discount_percent=D(percent),
        ),
    )


async def transactions(session: AsyncSession) -> int:
    count = await session.scalar(select(func.count()).select_from(Transaction))
    await session.rollback()
    return int(count or 0)


# ------------------------------------------------------------------ the rule


def test_the_discount_is_rounded_half_up_to_the_cent_and_leaves_a_cent_to_pay() -> None:
    assert discount_of(D("10.10"), D("5")) == D("0.51")  # 0.505: half up
    assert discount_of(D("10.09"), D("5")) == D("0.50")  # 0.5045
    assert discount_of(D("33.33"), D("12.5")) == D("4.17")  # 4.16625
    assert discount_of(D("100.00"), D("5")) == D("5.00")
    assert discount_of(D("0.09"), D("5")) == D("0.00")  # 0.0045: nothing off
    assert discount_of(D("0.10"), D("5")) == D("0.01")  # 0.005: half up
    assert discount_of(D("100.00"), D("0")) == D("0.00")
    # Never the whole amount: the ledger wants discount < amount.
    assert discount_of(D("0.01"), D("99")) == D("0.00")
    assert discount_of(D("0.02"), D("99")) == D("0.01")  # 0.0198 would round to 0.02
    gold = discount_program().tiers[2]
    priced = price(D("100"), gold)
    assert (priced.tier, priced.percent, priced.discount, priced.to_pay) == (
        "Gold",
        D("5"),
        D("5.00"),
        D("95.00"),
    )


def test_the_program_file_checks_the_discount() -> None:
    data: dict[str, Any] = copy.deepcopy(TEST_PROGRAM)
    data["tiers"][2]["discount_percent"] = "100"
    with pytest.raises(ProgramError, match=r"tiers\[2\]\.discount_percent"):
        parse_program(data)
    data["tiers"][2]["discount_percent"] = "-1"
    with pytest.raises(ProgramError, match=r"tiers\[2\]\.discount_percent"):
        parse_program(data)


# ------------------------------------------------------------------ sales


async def test_a_sale_without_a_discount_is_what_it_always_was(
    session: AsyncSession, program: Program
) -> None:
    """A member at a tier without a discount (0 %) and the program without discounts post
    as before: no discount recorded, the same digest, the same points."""
    plain = make_program()
    for prog, tg in ((program, 1), (plain, 2)):
        member = await member_at(session, prog, tg, "Bronze")
        result = await sale(session, prog, member, "40", f"k{tg}")
        assert (result.discount, result.paid, result.points_earned) == (D(0), D("40.00"), 200)
        tx = await session.get_one(Transaction, result.transaction_id)
        assert tx.discount is None and tx.paid == D("40.00")
        assert tx.fingerprint == fingerprint("purchase", member, "coffee", "40.00", 0, None)
        await session.rollback()
    # A tiny amount at a discount tier takes nothing off: recorded as no discount.
    silver = await member_at(session, program, 3, "Silver")
    tiny = await sale(session, program, silver, "0.10", "tiny", percent="3")
    assert tiny.discount == D(0) and tiny.paid == D("0.10")


async def test_points_pay_a_share_of_what_is_to_pay_and_earn_on_the_money_paid(
    session: AsyncSession, program: Program
) -> None:
    ann = await member_at(session, program, 1, "Gold", points=10_000)
    earn_only = await sale(session, program, ann, "100", "s1", percent="5")
    # Gold: 5 % off 100.00; 95.00 paid earns 95.00 × 5 % × 2 / 0.01 = 950.
    assert (earn_only.amount, earn_only.discount, earn_only.paid) == (
        D("100.00"),
        D("5.00"),
        D("95.00"),
    )
    assert earn_only.points_earned == 950
    assert (earn_only.discount_tier, earn_only.discount_percent) == ("Gold", D("5"))
    tx = await session.get_one(Transaction, earn_only.transaction_id)
    assert (tx.amount, tx.discount, tx.paid) == (D("100.00"), D("5.00"), D("95.00"))
    await session.rollback()

    # Points pay at most 50 % of the 95.00 to pay (4,750 points), not of the 100.00 typed.
    with pytest.raises(RedeemLimitExceeded) as refused:
        await sale(session, program, ann, "100", "s2", percent="5", points=4751)
    assert refused.value.params["max"] == 4750
    with_points = await sale(session, program, ann, "100", "s2", percent="5", points=4750)
    # 4,750 points pay 47.50 of the 95.00; the 47.50 paid in money earns 475.
    assert (with_points.discount, with_points.paid) == (D("5.00"), D("47.50"))
    assert (with_points.points_redeemed, with_points.points_earned) == (4750, 475)
    assert with_points.balance == 50 + 10_000 + 950 - 4750 + 475
    # A replay keeps the discount.
    again = await sale(session, program, ann, "100", "s2", percent="5", points=4750)
    assert again.replayed and again.discount == D("5.00") and again.paid == D("47.50")


async def test_a_tier_changed_since_the_panel_posts_nothing(
    session: AsyncSession, program: Program
) -> None:
    ann = await member_at(session, program, 1, "Gold", points=1000)
    before = await transactions(session)
    for shown in ("3", "0"):  # the panel said Silver's 3 %, or no discount at all
        with pytest.raises(DiscountChanged):
            await sale(session, program, ann, "100", f"shown-{shown}", percent=shown)
    assert await transactions(session) == before
    assert (await get_member(session, ann)).balance == 1050
    await session.rollback()
    assert (await sale(session, program, ann, "100", "ok", percent="5")).discount == D("5.00")

    # The same through the invitation path (a referred member's first qualifying sale).
    bob = await register_member(
        session, program, telegram_id=2, first_name="B", inviter_id=ann, now=T0
    )
    await session.execute(update(Member).where(Member.id == bob.id).values(tier="Silver"))
    await session.commit()
    with pytest.raises(DiscountChanged):
        await sale(session, program, bob.id, "100", "ref", percent="5")
    referred = await sale(session, program, bob.id, "100", "ref", percent="3")
    assert referred.referral is not None and referred.discount == D("3.00")

    # A sale that moves its member up a tier is replayed, not refused, once posted.
    cid = await member_at(session, program, 3, "Bronze")
    await sale(session, program, cid, "2990", "big", partner="gym")  # Silver now
    crossing = await sale(session, program, cid, "100", "cross", percent="3")
    assert crossing.tier_reached and crossing.tier == "Gold"  # 2,990 + 97.00 paid
    replay = await sale(session, program, cid, "100", "cross", percent="3")
    assert replay.replayed and replay.discount == D("3.00")


async def test_a_redemption_request_keeps_the_discount_shown(
    session: AsyncSession, program: Program
) -> None:
    ann = await member_at(session, program, 1, "Gold", points=10_000)
    staff = await accept_invite(
        session,
        await create_invite(session, created_by=1, role="cashier", partner_slug="coffee"),
        telegram_id=99,
    )
    with pytest.raises(DiscountChanged):  # the panel showed Silver's discount
        await request_redemption(
            session,
            program,
            staff,
            member_id=ann,
            amount=D("100"),
            points=None,
            dialog="d0",
            staff_chat_id=99,
            discount_percent=D("3"),
        )
    req = await request_redemption(
        session,
        program,
        staff,
        member_id=ann,
        amount=D("100"),
        points=None,
        dialog="d1",
        staff_chat_id=99,
        discount_percent=D("5"),
    )
    assert (req.points, req.discount, req.money, req.to_pay) == (
        4750,
        D("5.00"),
        D("47.50"),
        D("47.50"),
    )
    # The member moves down before confirming: the confirmation posts nothing.
    await session.execute(update(Member).where(Member.id == ann).values(tier="Silver"))
    await session.commit()
    with pytest.raises(DiscountChanged):
        await confirm_redemption(session, program, "d1", 1)
    assert await transactions(session) == 2  # the welcome gift and the adjustment
    status = await session.scalar(
        select(RedemptionRequest.status).where(RedemptionRequest.public_id == "d1")
    )
    assert status == "pending"  # the member's handler closes it (test_bot_discounts.py)
    await session.rollback()
    await session.execute(update(Member).where(Member.id == ann).values(tier="Gold"))
    await session.commit()
    _req, result = await confirm_redemption(session, program, "d1", 1)
    assert (result.discount, result.paid, result.points_redeemed) == (D("5.00"), D("47.50"), 4750)


# ------------------------------------------------------------------ refunds


async def test_refunds_of_a_discounted_sale_are_of_the_money_it_charged(
    session: AsyncSession, program: Program
) -> None:
    """Two members make the same discounted sale with points; one refunds it at once, the
    other in three parts: the parts add up exactly to the whole, and the discount itself is
    never refunded."""
    whole, parts = [await member_at(session, program, tg, "Gold", 10_000) for tg in (1, 2)]
    sales = {
        m: await sale(session, program, m, "100", f"s{m}", percent="5", points=4750)
        for m in (whole, parts)
    }
    full = await record_refund(
        session,
        program,
        Refund(
            transaction_id=sales[whole].transaction_id,
            key="r-all",
            reason="returned",
            now=T0 + timedelta(hours=1),
        ),
    )
    # 95.00 charged: 47.50 in money and 4,750 points back; the 475 earned taken back.
    assert (full.amount, full.money_refund, full.cash_back) == (
        D("95.00"),
        D("47.50"),
        D("47.50"),
    )
    assert (full.points_returned, full.points_clawed_back, full.shortfall) == (4750, 475, 0)
    assert full.sale_discount == D("5.00")

    tx = sales[parts].transaction_id
    with pytest.raises(RefundTooLarge) as too_much:
        await record_refund(
            session, program, Refund(transaction_id=tx, amount=D("95.01"), key="x", reason="r")
        )
    assert too_much.value.params["max"] == D("95.00")
    steps = []
    for i, amount in enumerate((D("30"), D("40.55"), None)):
        steps.append(
            await record_refund(
                session,
                program,
                Refund(
                    transaction_id=tx,
                    amount=amount,
                    key=f"r{i}",
                    reason="returned",
                    now=T0 + timedelta(hours=1 + i),
                ),
            )
        )
    assert steps[-1].amount == D("24.45")
    for field in ("amount", "money_refund", "cash_back"):
        assert sum((getattr(s, field) for s in steps), D(0)) == getattr(full, field), field
    for field in ("points_returned", "points_clawed_back", "shortfall"):
        assert sum(getattr(s, field) for s in steps) == getattr(full, field), field
    member_whole, member_parts = await get_member(session, whole), await get_member(session, parts)
    assert member_whole.balance == member_parts.balance == 10_050
    # A replayed partial refund says the same again, discount included.
    replay = await record_refund(
        session, program, Refund(transaction_id=tx, amount=D("40.55"), key="r1", reason="returned")
    )
    assert replay.replayed
    for field in (
        "amount",
        "money_refund",
        "cash_back",
        "points_returned",
        "points_clawed_back",
        "shortfall",
        "sale_discount",
    ):
        assert getattr(replay, field) == getattr(steps[1], field), field


async def test_refund_of_a_discounted_sale_without_points(
    session: AsyncSession, program: Program
) -> None:
    ann = await member_at(session, program, 1, "Gold")
    sold = await sale(session, program, ann, "100", "s", percent="5")
    part = await record_refund(
        session,
        program,
        Refund(transaction_id=sold.transaction_id, amount=D("19"), key="r1", reason="r"),
    )
    # 19.00 of the 95.00 charged: 950 × 19 / 95 = 190 points back.
    assert (part.amount, part.cash_back, part.points_clawed_back) == (D("19.00"), D("19.00"), 190)
    rest = await record_refund(
        session, program, Refund(transaction_id=sold.transaction_id, key="r2", reason="r")
    )
    assert (rest.amount, rest.cash_back, rest.points_clawed_back) == (D("76.00"), D("76.00"), 760)
    assert (await get_member(session, ann)).balance == 50


# ------------------------------------------------------------------ a discount program


async def test_a_pure_discount_program_takes_money_off_and_gives_no_points(
    session: AsyncSession,
) -> None:
    program = discount_program(earn=False, welcome=0)
    ann = await member_at(session, program, 1, "Gold")
    sold = await sale(session, program, ann, "100", "s", percent="5")
    assert (sold.discount, sold.paid, sold.points_earned, sold.balance) == (
        D("5.00"),
        D("95.00"),
        0,
        0,
    )
    back = await record_refund(
        session, program, Refund(transaction_id=sold.transaction_id, key="r", reason="r")
    )
    assert (back.amount, back.cash_back, back.points_clawed_back) == (D("95.00"), D("95.00"), 0)


# ------------------------------------------------------------------ figures


async def test_figures_show_discounts_given_and_settlement_ignores_them(
    session: AsyncSession, program: Program
) -> None:
    ann = await member_at(session, program, 1, "Gold", points=10_000)
    bob = await member_at(session, program, 2, "Silver")
    await sale(session, program, ann, "100", "a1", percent="5", points=4750)
    await sale(session, program, bob, "10.10", "b1", percent="3")  # 0.303: 0.30 off
    await sale(session, program, bob, "20", "b2", partner="books", percent="3")
    await sale(session, program, ann, "40", "a2", percent="5")
    start, end = T0 - timedelta(days=1), T0 + timedelta(days=1)
    coffee = await session.scalar(select(Partner.id).where(Partner.slug == "coffee"))
    assert coffee is not None
    figures = await partner_figures(session, coffee, start=start, end=end)
    assert figures.discounts == D("5.00") + D("0.30") + D("2.00")
    # Sales are the money they charged: 150.10 of purchases less the 7.30 taken off.
    assert figures.revenue == D("142.80")
    assert figures.paid_with_points == D("47.50")  # not the discounts
    k = await kpis(session, program, start=start, end=end, partner_id=coffee)
    assert k.discounts_total == D("7.30") and k.sales_paid == D("95.30")
    assert k.sales_total == D("142.80") and sum(d.sales_total for d in k.days) == D("142.80")
    total, rows = await coalition_report(session, program, start=start, end=end)
    assert total.discounts_total == D("7.90")
    assert {r.slug: r.kpis.discounts_total for r in rows}["books"] == D("0.60")
    # Settlement counts points only: the discounts are at the partners' own cost.
    report = await settlement(session, program, start=start, end=end)
    positions = {p.slug: p for p in report.partners}
    # Points earned on the money paid: 47.50, 9.80 (Silver × 1.5) and 38.00 at 5 %.
    assert positions["coffee"].points_issued == 475 + 73 + 380
    assert positions["coffee"].points_redeemed == 4750
    assert positions["books"].points_issued == 87  # 19.40 at 3 % × 1.5
