"""Promotions through the real bot and the fake Bot API: the cashier's panel lists those
that would apply now, the cashier's receipt and the member's news say why each award was
given, the member's history shows it, and a manager's refund says what it took back.
The ledger's invariants are checked after each test (the `sessions` fixture)."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.ledger.models import Transaction, Voucher
from db.rules.program import Program
from db.rules.vouchers import display_code
from db.usecases.purchases import Sale, record_sale
from tests.botharness import BotHarness
from tests.fakegram import UserClient, text_of
from tests.test_promotions import BOOK_COFFEE, NEW_PARTNER, STAMPS, promo_program
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
    assert "• +101 points First visit to a new partner (on PLN\u00a010.00 or more)" in shown
    assert (
        "• a voucher: A coffee of your choice Coffee with a book (on PLN\u00a040.00 or more)"
        in shown
    )
    async with sessions() as s:
        voucher = (await s.execute(select(Voucher))).scalar_one()
    code = display_code(voucher.code)
    # 40.00 at 3% = 120 points; the first visit +101; a coffee voucher the bookshop funds.
    assert "+120 points" in receipt
    why = [
        "🎉 +101 points First visit to a new partner",
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
        "🎉 +2 stamps: Two extra stamps",
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
