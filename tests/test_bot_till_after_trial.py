"""What a trial by a cashier, a manager and a marketer found at the till, end to end through
the fake Bot API: /cancel never offers to refund a sale refunded since. The ledger's
invariants are checked after each test (the `sessions` fixture)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.ledger.models import Transaction
from tests.botharness import BotHarness
from tests.fakegram import text_of
from tests.test_bot_till_money import earn
from tests.till import hire, join

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
