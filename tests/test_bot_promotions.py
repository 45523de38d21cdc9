"""Promotions through the real bot and the fake Bot API: the cashier's panel lists those
that would apply now, the cashier's receipt and the member's news say why each award was
given, the member's history shows it, and a manager's refund says what it took back.
The ledger's invariants are checked after each test (the `sessions` fixture)."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.ledger.models import Transaction, Voucher
from db.rules.program import Program
from db.rules.vouchers import display_code
from tests.botharness import BotHarness
from tests.fakegram import UserClient, text_of
from tests.test_promotions import BOOK_COFFEE, NEW_PARTNER, promo_program
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
