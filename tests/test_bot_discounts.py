"""Tier discounts end to end through the fake Bot API: the till shows the amount, the
discount and what is to pay before anything is posted; points pay a share of what is to pay;
a tier that changed meanwhile posts nothing; refunds and the partner's figures; a pure
discount program as members and cashiers see it. The ledger's invariants are checked after
each test (the `sessions` fixture)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.ledger.models import Member, RedemptionRequest, Transaction
from db.rules.program import Program
from db.usecases.adjust import adjust
from db.usecases.members import find_by_telegram
from tests.botharness import BotHarness
from tests.fakegram import UserClient, inline_buttons, text_of
from tests.test_discounts import discount_program
from tests.till import card_photo, hire, join

Sessions = async_sessionmaker[AsyncSession]
PLN = "PLN\u00a0"


@pytest.fixture
def program() -> Program:
    return discount_program()


async def set_tier(sessions: Sessions, user: UserClient, tier: str) -> None:
    async with sessions() as s:
        await s.execute(update(Member).where(Member.telegram_id == user.user_id).values(tier=tier))
        await s.commit()


async def give_points(sessions: Sessions, program: Program, user: UserClient, points: int) -> None:
    async with sessions() as s:
        member = await find_by_telegram(s, user.user_id)
        assert member is not None
        await adjust(s, program, member_id=member.id, points=points, reason="t", key="gift")


async def sales(sessions: Sessions) -> list[tuple[Decimal, Decimal | None, Decimal]]:
    """(amount, discount, paid) of every sale, oldest first."""
    async with sessions() as s:
        rows = await s.execute(
            select(Transaction.amount, Transaction.discount, Transaction.paid)
            .where(Transaction.kind.in_(("earn", "redeem")))
            .order_by(Transaction.id)
        )
        return [(r[0], r[1], r[2]) for r in rows]


async def balance_of(sessions: Sessions, user: UserClient) -> tuple[int, int]:
    """(balance, points held by open requests)."""
    async with sessions() as s:
        member = await find_by_telegram(s, user.user_id)
    assert member is not None
    return member.balance, member.held


async def open_sale(cashier: UserClient, member: UserClient, button: str) -> str:
    """The panel's text; the sale dialog waits for the amount."""
    await cashier.send_photo(await card_photo(member))
    panel = text_of(await cashier.wait_message("Points can pay up to"))
    await cashier.click(button)
    await cashier.wait_message("Enter the purchase amount")
    return panel


async def test_the_till_shows_what_is_to_pay_before_posting(
    harness: BotHarness, sessions: Sessions
) -> None:
    cashier, ann = harness.user("Carl"), harness.user("Ann")
    await hire(harness, cashier, "coffee", "cashier")
    await join(ann)
    await set_tier(sessions, ann, "Gold")
    panel = await open_sale(cashier, ann, "🧾 Sale: earn points")
    assert "Gold" in panel and "🏷 Gold: 5% off at every partner." in panel
    await cashier.send("100")
    shown = await cashier.wait_message("To pay")
    assert text_of(shown) == (
        f"Amount {PLN}100.00 · Gold discount 5% −{PLN}5.00 · To pay {PLN}95.00"
    )
    assert [b["text"] for b in inline_buttons(shown)] == [
        f"🧾 Post: to pay {PLN}95.00",
        "✖ Cancel",
    ]
    assert await sales(sessions) == []  # nothing happens before the cashier says so
    await cashier.click(f"🧾 Post: to pay {PLN}95.00")
    receipt = text_of(await cashier.wait_message("✅"))
    assert f"Gold discount 5% −{PLN}5.00 · To pay {PLN}95.00" in receipt
    assert "+950 points" in receipt  # 95.00 × 5 % × 2 (Gold)
    note = text_of(await ann.wait_message("Gold discount"))
    assert (
        f"🏷 Gold discount −{PLN}5.00 on your {PLN}100.00 purchase at Bean There Coffee: "
        f"{PLN}95.00 to pay." in note
    )
    assert f"+950 points earned on the {PLN}95.00 you paid." in note
    assert "Balance: 1,000 points." in note
    assert await sales(sessions) == [(Decimal("100.00"), Decimal("5.00"), Decimal("95.00"))]

    # At a tier without a discount the till posts at once, as it always did.
    bob = harness.user("Bob")
    await join(bob)
    panel = await open_sale(cashier, bob, "🧾 Sale: earn points")
    assert "off at every partner" not in panel
    await cashier.send("40")
    assert "+200 points" in text_of(await cashier.wait_message("✅ Bob"))
    assert not any("To pay" in text_of(m) for m in cashier.messages[-2:])
    assert (await sales(sessions))[-1] == (Decimal("40.00"), None, Decimal("40.00"))


async def test_a_tier_changed_after_the_amount_was_shown_posts_nothing(
    harness: BotHarness, sessions: Sessions
) -> None:
    cashier, ann = harness.user("Carl"), harness.user("Ann")
    await hire(harness, cashier, "coffee", "cashier")
    await join(ann)
    await set_tier(sessions, ann, "Gold")
    await open_sale(cashier, ann, "🧾 Sale: earn points")
    await cashier.send("100")
    await cashier.wait_message("To pay")
    await set_tier(sessions, ann, "Silver")  # the nightly recalculation, say
    await cashier.click(f"🧾 Post: to pay {PLN}95.00")
    await cashier.wait_message("discount changed since the amount was shown")
    assert await sales(sessions) == []
    await cashier.send("100")  # the dialog asks for the amount again: now Silver's 3 %
    shown = await cashier.wait_message("To pay")
    assert f"Silver discount 3% −{PLN}3.00 · To pay {PLN}97.00" in text_of(shown)
    await cashier.click(f"🧾 Post: to pay {PLN}97.00")
    await cashier.wait_message("✅")
    assert await sales(sessions) == [(Decimal("100.00"), Decimal("3.00"), Decimal("97.00"))]


async def test_points_pay_a_share_of_what_is_to_pay(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    cashier, ann = harness.user("Carl"), harness.user("Ann")
    await hire(harness, cashier, "coffee", "cashier")
    await join(ann)
    await set_tier(sessions, ann, "Gold")
    await give_points(sessions, program, ann, 10_000)
    await open_sale(cashier, ann, "💳 Sale: use points")
    await cashier.send("100")
    prompt = text_of(await cashier.wait_message("How many points?"))
    # Up to 50 % of the 95.00 to pay: 4,750 points, not 5,000.
    assert prompt.startswith(f"Amount {PLN}100.00 · Gold discount 5% −{PLN}5.00")
    assert "Up to 4,750 points" in prompt
    await cashier.click("Max: 4,750")
    await cashier.wait_message("Waiting for the member to confirm 4,750 points")
    ask = text_of(await ann.wait_message("Confirm?"))
    assert f"Gold discount −{PLN}5.00 on your {PLN}100.00 purchase" in ask
    assert f"asks to pay {PLN}47.50 of the {PLN}95.00 to pay with 4,750 points" in ask
    await ann.click("✅ Confirm")
    told = text_of(await cashier.wait_message("The member confirmed"))
    assert f"To pay {PLN}95.00" in told
    assert f"4,750 points paid {PLN}47.50." in told
    assert f"The customer pays {PLN}47.50." in told and "+475 points" in told
    note = text_of(await ann.wait_message("of it."))
    assert f"✅ 4,750 points paid {PLN}47.50 of it." in note
    assert f"+475 points earned on the {PLN}47.50 you paid." in note
    assert await sales(sessions) == [(Decimal("100.00"), Decimal("5.00"), Decimal("47.50"))]
    await cashier.send("/cancel")
    said = text_of(await cashier.wait_message("already posted"))
    assert f"4,750 points paid {PLN}47.50, +475" in said

    # The member moves down a tier before confirming the next one: nothing is posted, the
    # request closes, and the cashier starts again.
    await open_sale(cashier, ann, "💳 Sale: use points")
    await cashier.send("20")
    await cashier.wait_message("How many points?")
    await cashier.send("100")
    await cashier.wait_message("Waiting for the member")
    await ann.wait_message("Confirm?")
    await set_tier(sessions, ann, "Silver")
    await ann.click("✅ Confirm")
    refused = await ann.wait_callback_answer()
    assert "Your discount changed" in refused["text"]
    closed = await cashier.wait_message(
        lambda m: "discount changed" in text_of(m) and "✖" in text_of(m)
    )
    assert "Nothing was charged" in text_of(closed) and inline_buttons(closed) == []
    assert len(await sales(sessions)) == 1
    balance, held = await balance_of(sessions, ann)
    assert (balance, held) == (50 + 10_000 - 4750 + 475, 0)
    async with sessions() as s:
        statuses = (await s.execute(select(RedemptionRequest.status))).scalars().all()
    assert sorted(statuses) == ["cancelled", "confirmed"]


async def test_a_replayed_or_cancelled_discounted_sale_says_its_discount(
    harness: BotHarness, sessions: Sessions
) -> None:
    """A double tap (the same receipt posted again) and /cancel say the discount with the
    amount: the cashier takes what is to pay, never the amount typed."""
    cashier, ann = harness.user("Carl"), harness.user("Ann")
    await hire(harness, cashier, "coffee", "cashier")
    await join(ann)
    await set_tier(sessions, ann, "Gold")
    await open_sale(cashier, ann, "🧾 Sale: earn points")
    await cashier.send("100 #R-1")
    await cashier.wait_message("To pay")
    await cashier.click(f"🧾 Post: to pay {PLN}95.00")
    await cashier.wait_message("✅")
    async with sessions() as s:
        sale = await s.scalar(select(Transaction.id).where(Transaction.kind == "earn"))
    await cashier.send("/cancel")
    said = text_of(await cashier.wait_message("already posted"))
    assert said == (
        "Nothing to cancel: the last sale was already posted.\n"
        f"No. {sale}: {PLN}100.00, +950 points\n"
        f"Amount {PLN}100.00 · Gold discount 5% −{PLN}5.00 · To pay {PLN}95.00\n"
        f"To undo it, a manager refunds it: /refund {sale} all reason"
    )

    await open_sale(cashier, ann, "🧾 Sale: earn points")
    await cashier.send("100 #R-1")  # the same receipt: posted already
    await cashier.wait_message("To pay")
    await cashier.click(f"🧾 Post: to pay {PLN}95.00")
    again = text_of(await cashier.wait_message("This sale was already posted"))
    assert again == (
        f"Amount {PLN}100.00 · discount −{PLN}5.00 · To pay {PLN}95.00\n"
        "This sale was already posted.\n"
        f"✅ {PLN}100.00: +950 points. The member's balance: 1,000 points."
    )
    await cashier.send("/cancel")
    said = text_of(await cashier.wait_message("already posted"))
    assert f"No. {sale}: {PLN}100.00, +950 points\nAmount {PLN}100.00 · discount" in said
    assert said.count(f"To pay {PLN}95.00") == 1
    assert await sales(sessions) == [(Decimal("100.00"), Decimal("5.00"), Decimal("95.00"))]


async def test_refunds_and_figures_of_a_discounted_sale(
    harness: BotHarness, sessions: Sessions
) -> None:
    cashier, boss, ann = harness.user("Carl"), harness.user("Mo"), harness.user("Ann")
    await hire(harness, cashier, "coffee", "cashier")
    await hire(harness, boss, "coffee", "manager")
    await join(ann)
    await set_tier(sessions, ann, "Gold")
    await open_sale(cashier, ann, "🧾 Sale: earn points")
    await cashier.send("100")
    await cashier.wait_message("To pay")
    await cashier.click(f"🧾 Post: to pay {PLN}95.00")
    await cashier.wait_message("✅")
    async with sessions() as s:
        sale = await s.scalar(select(Transaction.id).where(Transaction.kind == "earn"))

    await cashier.send("/shift")
    shift = text_of(await cashier.wait_message("Your shift today"))
    # Sales are the money they charged, the discount beside it (refunds are of that money).
    assert f"sale {PLN}95.00 (after a discount of {PLN}5.00)" in shift
    assert f"sales {PLN}95.00 ({PLN}95.00 of it in money)" in shift
    assert f"Discounts given: {PLN}5.00." in shift

    await boss.send(f"/refund {sale} 95.01 broken cup")
    assert f"At most {PLN}95.00" in text_of(await boss.wait_message("left to refund"))
    await boss.send(f"/refund {sale} 20 broken cup")
    part = text_of(await boss.wait_message("Refunded"))
    assert f"Refunded {PLN}20.00 of sale No. {sale}; give back {PLN}20.00 in money." in part
    assert "taken back: 200" in part  # 950 × 20 / 95
    assert f"had a discount of {PLN}5.00: refunds are of the money it charged" in part
    await boss.send(f"/refund {sale} all broken cup")
    rest = text_of(await boss.wait_message(f"Refunded {PLN}75.00"))
    assert f"give back {PLN}75.00 in money" in rest and "taken back: 750" in rest
    assert await balance_of(sessions, ann) == (50, 0)
    await boss.send(f"/refund {sale} 1 broken cup")
    await boss.wait_message("already refunded in full")

    await boss.send("/today")
    today = text_of(await boss.wait_message("Today"))
    assert f"Sales to members: 1 (1 member), {PLN}95.00." in today
    assert (
        f"Paid with points: {PLN}0.00. Sales refunded: {PLN}95.00 (cash handed back: {PLN}95.00)."
    ) in today
    assert f"Discounts given: {PLN}5.00." in today
    await boss.send("/stats today")
    stats = text_of(await boss.wait_message("📊"))
    assert f"🏷 Discounts given: {PLN}5.00 (at the selling partner's cost)" in stats
    assert f"Sales: 1 for {PLN}95.00; average check {PLN}95.00; refunds {PLN}95.00" in stats


@pytest.mark.parametrize("program", [discount_program(earn=False, welcome=0)])
async def test_a_pure_discount_program(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    cashier, ann = harness.user("Carl"), harness.user("Ann")
    await hire(harness, cashier, "coffee", "cashier")
    await join(ann)
    rules = text_of(next(m for m in ann.messages if "one card for" in text_of(m)))
    assert (
        "Member discounts at every partner, by tier (reached by what you spend in 12 months): "
        f"Bronze 0%, Silver 3% from {PLN}1,000.00, Gold 5% from {PLN}3,000.00." in rules
    )
    assert "Earn points" not in rules
    await set_tier(sessions, ann, "Gold")
    await ann.send("/balance")
    assert "🏷 Gold: 5% off at every partner." in text_of(await ann.wait_message("Tier"))
    await ann.send("/partners")
    partners = text_of(await ann.wait_message("Our partners"))
    assert "🏷 Member discounts at every partner, by tier (reached by" in partners
    assert "back in points" not in partners and "Bean There Coffee" in partners

    await open_sale(cashier, ann, "🧾 Sale: earn points")
    await cashier.send("100")
    await cashier.wait_message("To pay")
    await cashier.click(f"🧾 Post: to pay {PLN}95.00")
    assert "+0 points" in text_of(await cashier.wait_message("✅"))
    note = text_of(await ann.wait_message("Gold discount"))
    assert note == (
        f"🏷 Gold discount −{PLN}5.00 on your {PLN}100.00 purchase at Bean There Coffee: "
        f"{PLN}95.00 to pay.\nBalance: 0 points."
    )
    assert await sales(sessions) == [(Decimal("100.00"), Decimal("5.00"), Decimal("95.00"))]
