"""What a trial by a cashier, a manager and a marketer found at the till, end to end through
the fake Bot API: /cancel never offers to refund a sale refunded since; /shift and /today
word the club's months for a day without sales, and say a refunded month is the club's,
apart from sales' refunds; /settlement's caption says what the tills collected for the club,
what was refunded and what the partners kept. The ledger's invariants are checked after
each test (the `sessions` fixture)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.ledger.models import ClubPayment, Transaction
from db.queries.settlement import settlement
from db.rules.program import Program
from db.usecases.club import Payment, record_payment
from db.usecases.members import find_by_telegram
from tests.botharness import BotHarness
from tests.fakegram import UserClient, text_of
from tests.test_bot_club_till import A_MONTH
from tests.test_bot_till_money import earn
from tests.test_club_till import till_club_program
from tests.till import hire, join, open_panel

Sessions = async_sessionmaker[AsyncSession]
PLN = "PLN\u00a0"


async def test_cancel_says_the_last_sale_was_refunded_since(
    harness: BotHarness, sessions: Sessions
) -> None:
    carl, mia, ann = harness.user("Carl"), harness.user("Mia"), harness.user("Ann")
    await hire(harness, carl, "coffee", "cashier")
    await hire(harness, mia, "coffee", "manager")
    await join(ann)
    await earn(carl, ann, "40")
    async with sessions() as s:
        sale = await s.scalar(select(Transaction.id).where(Transaction.kind == "earn"))

    # A part refunded: what is left to refund, and how.
    await mia.send(f"/refund {sale} 10 one cup cold")
    await mia.wait_message("Refunded")
    await carl.send("/cancel")
    said = text_of(await carl.wait_message("already posted"))
    assert f"No. {sale}: {PLN}40.00, +200 points" in said
    assert (
        f"{PLN}10.00 of it was refunded since. To undo the rest ({PLN}30.00), a manager "
        f"refunds it: /refund {sale} all reason"
    ) in said

    # All of it refunded: nothing left to undo, and no /refund offered.
    await mia.send(f"/refund {sale} all returned")
    await mia.wait_message("Refunded")
    await carl.send("/cancel")
    said = text_of(await carl.wait_message("refunded in full"))
    assert said.startswith("Nothing to cancel: the last sale was posted, then refunded in full.")
    assert f"No. {sale}" in said and "/refund" not in said


async def sell_a_month(cashier: UserClient, member: UserClient) -> None:
    await open_panel(cashier, member)
    await cashier.click(A_MONTH)
    await cashier.wait_message("Take")
    await cashier.click("✅ Taken")
    await cashier.wait_message("A member until")


async def figures(user: UserClient, command: str, head: str) -> str:
    user.mark_all_seen()
    await user.send(command)
    return text_of(await user.wait_message(head))


@pytest.mark.parametrize("program", [till_club_program()])
async def test_shift_and_today_word_club_months_and_their_refunds(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    carl, mia, ann = harness.user("Carl"), harness.user("Mia"), harness.user("Ann")
    await hire(harness, carl, "coffee", "cashier")
    await hire(harness, mia, "coffee", "manager")
    await join(ann)
    await sell_a_month(carl, ann)

    # Only a month of the club: no sales for it to be apart from.
    shift = await figures(carl, "/shift", "Your shift today")
    assert f"⭐ City Club: 1 month sold, {PLN}29.00 collected (club money, not a sale)." in shift
    assert "sales above" not in shift
    today = await figures(mia, "/today", "Today")
    assert f"⭐ City Club: 1 month sold, {PLN}29.00 collected (club money, not a sale)." in today

    # With a sale (to Bob, who is not in the club): the month is not in the sales above.
    bob = harness.user("Bob")
    await join(bob)
    await earn(carl, bob, "20")
    shift = await figures(carl, "/shift", "Your shift today")
    assert f"⭐ City Club: 1 month sold, {PLN}29.00 collected (not in the sales above)." in shift
    today = await figures(mia, "/today", "Today")
    assert f"⭐ City Club: 1 month sold, {PLN}29.00 collected (not in the sales above)." in today

    # The owner refunds the month (the till gives the cash back): said as the club's, apart
    # from the sales' refunds.
    async with sessions() as s:
        payment = await s.scalar(select(ClubPayment.id))
        member = await find_by_telegram(s, ann.user_id)
    assert member is not None
    owner = harness.owner()
    await owner.send(f"/club_refund {member.card_number}")
    await owner.wait_message("Club payments")
    await owner.click(f"↩️ No. {payment}: {PLN}29.00")
    await owner.wait_message("paid in cash")
    await owner.click("✅ Record as refunded")
    await owner.wait_message("recorded as refunded")
    refunded = (
        f"⭐ City Club: 1 month refunded, {PLN}29.00 (given back from the till, not a sale's "
        "refund)."
    )
    shift = await figures(carl, "/shift", "Your shift today")
    assert refunded in shift and "Cash handed back for refunds" not in shift
    today = await figures(mia, "/today", "Today")
    assert refunded in today
    assert f"Sales refunded: {PLN}0.00 (cash handed back: {PLN}0.00)." in today


@pytest.mark.parametrize("program", [till_club_program()])
async def test_settlement_caption_says_club_money_kept_collected_and_refunded(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    """Four months sold at the café's till two days ago (116.00), one of them refunded
    yesterday: the partners keep 87.00 for the coalition."""
    people = [harness.user(name) for name in ("Ann", "Bob", "Cat", "Dan")]
    now = datetime.now(UTC)
    async with sessions() as s:
        for n, user in enumerate(people):
            await join(user)
            member = await find_by_telegram(s, user.user_id)
            assert member is not None
            sold = now - timedelta(days=2)
            await record_payment(
                s,
                program,
                Payment(member.id, f"till:1:p{n}", "till", "PLN", Decimal("29.00"), sold,
                        partner_id=1),
            )  # fmt: skip
        # The owner's refund of one (db/usecases/club_refunds.py sets refunded_at).
        await s.execute(
            update(ClubPayment)
            .where(ClubPayment.charge_id == "till:1:p0")
            .values(refunded_at=now - timedelta(days=1))
        )
        await s.commit()
    last = now.date() - timedelta(days=1)
    first = last - timedelta(days=6)
    owner = harness.owner()
    await owner.send(f"/settlement {first}..{last}")
    caption = text_of(await owner.wait_message(lambda m: "document" in m, timeout=15))
    assert (
        f"Club months at tills: {PLN}87.00 kept of {PLN}116.00 collected ({PLN}29.00 "
        "refunded in the period), owed by the partners to the coalition (in their amounts)."
    ) in caption
    assert "collected by the partners" not in caption
    async with sessions() as s:
        zone = program.program.zone
        report = await settlement(
            s,
            program,
            start=datetime.combine(first, datetime.min.time(), tzinfo=zone),
            end=datetime.combine(last + timedelta(days=1), datetime.min.time(), tzinfo=zone),
        )
    assert (report.club_collected, report.club_refunded, report.club_money) == (
        Decimal("116.00"),
        Decimal("29.00"),
        Decimal("87.00"),
    )
