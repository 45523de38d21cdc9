"""Promotions through the real bot and the fake Bot API: the cashier's panel lists those
that would apply now, the cashier's receipt and the member's news say why each award was
given, the member's history shows it, and a manager's refund says what it took back.
The ledger's invariants are checked after each test (the `sessions` fixture)."""

from __future__ import annotations

import copy
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from decimal import Decimal as D

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.i18n import build_i18n
from bot.views.notices import RENDERERS
from db.ledger.models import Member, Transaction, Voucher
from db.rules.program import Program, parse_program
from db.rules.vouchers import display_code
from db.usecases.purchases import PurchaseResult, Sale, record_sale
from db.usecases.till import not_applied
from tests.botharness import BotHarness
from tests.conftest import TEST_PROGRAM
from tests.fakegram import UserClient, text_of
from tests.test_promotions import BOOK_COFFEE, DOUBLE, NEW_PARTNER, STAMPS, promo_program
from tests.till import card_link_payload, hire, join

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
def program() -> Program:
    return promo_program(NEW_PARTNER, BOOK_COFFEE)


async def panel(cashier: UserClient, member: UserClient) -> str:
    await cashier.send("/start " + await card_link_payload(member))
    return text_of(await cashier.wait_message("Points can pay up to"))


async def sell(cashier: UserClient, member: UserClient, amount: str) -> tuple[str, str]:
    """An earn-only sale at the till: the panel, then the cashier's receipt."""
    shown = await panel(cashier, member)
    await cashier.click("🧾 Sale: earn points")
    await cashier.wait_message("Enter the purchase amount")
    await cashier.send(amount)
    return shown, text_of(await cashier.wait_message("✅"))


async def test_panel_receipt_news_history_and_refund_say_why(
    harness: BotHarness, sessions: Sessions
) -> None:
    manager, ann = harness.user("Mo"), harness.user("Ann")
    await hire(harness, manager, "books", "manager")
    await join(ann)

    shown, receipt = await sell(manager, ann, "40")
    assert "🎉 Promotions now:" in shown
    # Each promotion's title, then what it gives: two titles never run together.
    assert "• First visit to a new partner: +101 points (on PLN\u00a010.00 or more)" in shown
    assert (
        "• Coffee with a book: a voucher for A coffee of your choice (on PLN\u00a040.00 or more)"
        in shown
    )
    async with sessions() as s:
        voucher = (await s.execute(select(Voucher))).scalar_one()
    code = display_code(voucher.code)
    # 40.00 at 3% = 120 points; the first visit +101; a coffee voucher the bookshop funds.
    assert "+120 points" in receipt
    why = [
        "🎉 +101 points — First visit to a new partner",
        f"🎉 A coffee of your choice (voucher {code}) — Coffee with a book",
    ]
    assert "\n".join(why) in receipt
    news = text_of(await ann.wait_message("Balance:"))
    assert "\n".join(why) in news and news.endswith("Balance: 271 points.")

    await ann.send("/history")
    history = text_of(await ann.wait_message("Transactions"))
    assert "promotion: First visit to a new partner: +101 points" in history

    # The second visit: the first-visit bonus is no longer offered, nor given.
    shown, receipt = await sell(manager, ann, "10")
    assert "First visit" not in shown and "🎉" not in receipt

    async with sessions() as s:
        first = await s.scalar(
            select(Transaction.id).where(Transaction.kind == "earn").order_by(Transaction.id)
        )
    await manager.send(f"/refund {first} all returned")
    reply = text_of(await manager.wait_message("Refunded"))
    assert "−101 points: First visit to a new partner (on the refunded money)" in reply
    assert f"The voucher {code} (Coffee with a book) is cancelled." in reply
    news = text_of(await ann.wait_message("Refund of"))
    assert "−101 points: First visit to a new partner (on the refunded money)" in news
    await ann.send("/history")
    history = text_of(await ann.wait_message("Transactions"))
    assert "promotion taken back: First visit to a new partner: −101 points" in history


@pytest.mark.parametrize("program", [promo_program(STAMPS)])
async def test_a_card_filled_by_promotion_stamps_is_told(harness: BotHarness) -> None:
    cashier, ann = harness.user("Cy"), harness.user("Ann")
    await hire(harness, cashier, "coffee", "cashier")
    await join(ann)
    await sell(cashier, ann, "5")
    await ann.wait_message("Balance:")
    # Her own stamp is the 4th; the promotion's two fill the card (+250) and one is left.
    _, receipt = await sell(cashier, ann, "6")
    told = [
        "🎉 +2 stamps — Two extra stamps",
        "🎟 Stamp 4/5 on Fifth coffee free.",
        "🎉 Card filled: Fifth coffee free. +250 points to the member.",
        "🎟 With the promotion's stamps, Fifth coffee free is at 1/5.",
    ]
    assert "\n".join(told) in receipt
    news = text_of(await ann.wait_message("Your card Fifth coffee free is full"))
    assert "🎉 Your card Fifth coffee free is full: +250 points." in news
    assert "🎟 With the promotion's stamps, Fifth coffee free: ●○○○○ 1/5" in news


async def test_a_refund_says_the_seller_pays_the_spent_promotion_points_back(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    manager, ann = harness.user("Mo"), harness.user("Ann")
    await hire(harness, manager, "gym", "manager")
    await join(ann)
    await sell(manager, ann, "30")  # 60 points and the first visit's 101
    async with sessions() as s:
        first = await s.scalar(select(Transaction.id).where(Transaction.kind == "earn"))
        member_id = await s.scalar(select(Transaction.member_id).where(Transaction.id == first))
        assert first is not None and member_id is not None
        # She spends all 211 points at the bookshop.
        await record_sale(
            s,
            program,
            Sale(
                member_id=member_id, partner="books", amount=D("4.22"), key="k1", redeem_points=211
            ),
        )
    await manager.send(f"/refund {first} all returned")
    reply = text_of(await manager.wait_message("Refunded"))
    assert (
        "First visit to a new partner: the 101 points the member had already spent go back to "
        "its funders from your partner's points, as their value is kept from the cash."
    ) in reply


async def test_every_figure_counts_the_promotions_points(
    harness: BotHarness, sessions: Sessions
) -> None:
    """The receipt's headline, /cancel, /shift, the refund's reply and the partner's /today
    count all the points a sale gave: its own and its promotions' (the lines below say
    each); the partner's figures tell its own sales' points from those it funded."""
    manager, ann = harness.user("Mo"), harness.user("Ann")
    await hire(harness, manager, "books", "manager")
    await join(ann)

    _shown, receipt = await sell(manager, ann, "40")
    lines = receipt.split("\n")
    # 40.00 at 3% = 120 points, and the first visit's +101: 221 (and the welcome 50).
    assert lines[0] == "✅ Ann: PLN\u00a040.00, +221 points. Their balance: 271 points.", lines
    assert lines[1] == "🟢 +120 points on the purchase itself"
    assert lines[2] == "🎉 +101 points — First visit to a new partner"
    await manager.send("/cancel")
    cancel = text_of(await manager.wait_message("Nothing to cancel"))
    async with sessions() as s:
        sale = await s.scalar(select(Transaction.id).where(Transaction.kind == "earn"))
    assert f"No. {sale}: PLN\u00a040.00, +221 points" in cancel

    await manager.send(f"/refund {sale} all returned")
    reply = text_of(await manager.wait_message("Refunded"))
    assert "Points returned to the member: 0; taken back: 221." in reply

    await manager.send("/shift")
    shift = text_of(await manager.wait_message("Your shift today")).split("\n")
    assert shift[1].endswith("· Ann · sale PLN\u00a040.00 · +221"), shift
    assert shift[2].endswith("· Ann · refund PLN\u00a040.00 (cash back PLN\u00a040.00) · −221")
    assert "points +221 / −221." in shift[3]

    await manager.send("/today")
    today = text_of(await manager.wait_message("Today"))
    # The bookshop's own sale gave 120 (all taken back); it funded a quarter of the first
    # visit's 101 (the split's largest remainder goes first to the first listed, the café).
    assert "Points its sales gave members: 120; refunds took back 120 of such points." in today
    assert (
        "Points it funded through promotions and vouchers: 25; refunds took back 25 of its "
        "promotions' points." in today
    )
    assert "Points members spent here: 0." in today
    assert "Points issued" not in today and "-" not in today


def discounted_program() -> Program:
    """The first visit (min 10.00) and the coffee with a book (min 40.00), with Gold 5 %
    off: a minimum counts after the discount."""
    data = copy.deepcopy(TEST_PROGRAM)
    data["program"]["timezone"] = "Europe/Warsaw"
    data["tiers"] = [
        {"name": "Bronze", "min_spend": "0", "multiplier": "1.0"},
        {"name": "Gold", "min_spend": "3000.00", "multiplier": "1.0", "discount_percent": "5"},
    ]
    data["rewards"] = [
        {
            "slug": "free-coffee",
            "title": "A coffee of your choice",
            "partner": "coffee",
            "points": 300,
            "valid_days": 30,
        }
    ]
    data["promotions"] = [NEW_PARTNER, BOOK_COFFEE]
    return parse_program(data)


@pytest.mark.parametrize("program", [discounted_program()])
async def test_the_receipt_names_what_the_panel_showed_and_the_sale_did_not_get(
    harness: BotHarness, sessions: Sessions
) -> None:
    manager, carl, ann = harness.user("Mo"), harness.user("Carl"), harness.user("Ann")
    await hire(harness, manager, "books", "manager")
    await hire(harness, carl, "books", "cashier")
    await join(ann)
    async with sessions() as s:
        await s.execute(
            update(Member).where(Member.telegram_id == ann.user_id).values(tier="Gold")
        )
        await s.commit()

    shown = await panel(manager, ann)
    # Her minimums count after her discount: the panel says so.
    assert (
        "• First visit to a new partner: +101 points (on PLN\u00a010.00 or more to pay, after "
        "the discount)" in shown
    )
    assert (
        "• Coffee with a book: a voucher for A coffee of your choice (on PLN\u00a040.00" in shown
    )
    await manager.click("🧾 Sale: earn points")
    await manager.wait_message("Enter the purchase amount")

    # Meanwhile another till sells to her at the bookshop: her first visit there is taken.
    await panel(carl, ann)
    await carl.click("🧾 Sale: earn points")
    await carl.wait_message("Enter the purchase amount")
    await carl.send("20")
    await carl.wait_message("To pay")
    await carl.click("🧾 Post: to pay PLN\u00a019.00")
    assert "🎉 +101 points — First visit" in text_of(await carl.wait_message("✅"))

    # 41.00 at 5 % off: 38.95 to pay, below the coffee's 40.00.
    await manager.send("41")
    await manager.wait_message("To pay")
    await manager.click("🧾 Post: to pay PLN\u00a038.95")
    receipt = text_of(await manager.wait_message("✅"))
    assert "🎉" not in receipt
    assert "Not applied: First visit to a new partner — already used" in receipt
    assert (
        "Not applied: Coffee with a book — the amount to pay, PLN\u00a038.95, is below "
        "PLN\u00a040.00" in receipt
    )


def test_a_promotion_that_ended_between_the_panel_and_the_posting_is_named() -> None:
    """The panel at 10:59 on a Saturday showed the weekend mornings' ×2; the sale posted at
    11:00 did not get it: the receipt says it ended at 11:00."""
    program = promo_program(DOUBLE)
    posted = datetime(2027, 3, 6, 10, 0, tzinfo=UTC)  # 11:00 in Warsaw
    result = PurchaseResult(
        transaction_id=1,
        kind="earn",
        member_id=1,
        partner="coffee",
        amount=Decimal("20.00"),
        paid=Decimal("20.00"),
        points_earned=40,
        points_redeemed=0,
        balance=90,
        tier="Bronze",
        created_at=posted,
    )
    missed = not_applied(program, ["double-coffee"], result)
    assert missed == [
        {
            "promotion": "double-coffee",
            "title": "Double points at the café",
            "reason": "ended",
            "ended_at": "11:00",
        }
    ]
    i18n = build_i18n()
    with i18n.context(), i18n.use_locale("en"):
        receipt = RENDERERS["sale_posted"](
            program, {"amount": "20.00", "points_earned": 40, "balance": 90, "not_applied": missed}
        ).text
    assert receipt.endswith("Not applied: Double points at the café — it ended at 11:00")
    # Within its hours it would have applied: nothing is named.
    at_ten = replace(result, created_at=posted - timedelta(hours=1))
    assert not_applied(program, [], at_ten) == []


def test_a_promotion_missed_for_another_reason_is_not_called_used() -> None:
    """Within its hours, a ×2 on a sale that earned no points added nothing: the receipt
    says so, not "already used"; a limited one missed is "already used"; an unlimited one
    the member no longer meets is said to be no longer for them."""
    program = promo_program(DOUBLE, NEW_PARTNER, BOOK_COFFEE)
    result = PurchaseResult(
        transaction_id=1,
        kind="earn",
        member_id=1,
        partner="coffee",
        amount=Decimal("12.00"),
        paid=Decimal("12.00"),
        points_earned=0,
        points_redeemed=0,
        balance=50,
        tier="Bronze",
        created_at=datetime(2027, 3, 6, 9, 0, tzinfo=UTC),  # Saturday 10:00 in Warsaw
    )
    assert [m["reason"] for m in not_applied(program, ["double-coffee"], result)] == ["no_points"]
    earned = replace(result, points_earned=24)
    # new-partner is once per partner (limited): used; the ×2 on 24 points: not for her now.
    assert [
        m["reason"] for m in not_applied(program, ["new-partner", "double-coffee"], earned)
    ] == [
        "used",
        "not_for_member",
    ]
    i18n = build_i18n()
    with i18n.context(), i18n.use_locale("en"):
        receipt = RENDERERS["sale_posted"](
            program,
            {
                "amount": "12.00",
                "points_earned": 0,
                "balance": 50,
                "not_applied": not_applied(program, ["double-coffee"], result),
            },
        ).text
    assert receipt.endswith(
        "Not applied: Double points at the café — it adds no points to this sale"
    )
