"""A cashier's day as their chat shows it: one receipt per sale, and /shift with receipt
numbers and local times. The program runs in Warsaw time, so UTC would show."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from babel.dates import format_date, format_time
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.ledger.models import Transaction
from db.rules.program import Program
from tests.botharness import BotHarness
from tests.conftest import make_program
from tests.fakegram import UserClient, text_of
from tests.till import EARN, REDEEM, hire, join, start_sale

Sessions = async_sessionmaker[AsyncSession]
ZONE = "Asia/Kathmandu"  # +05:45: a time shown in UTC or any whole-hour zone is caught


@pytest.fixture
def program() -> Program:
    return make_program(program={"timezone": ZONE})


def count(user: UserClient, needle: str) -> int:
    return sum(needle in text_of(m) for m in user.messages)


async def test_one_receipt_per_sale_and_shift_in_local_time(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    cashier, ann = harness.user("Carl"), harness.user("Ann")
    await hire(harness, cashier, "coffee", "cashier")
    await join(ann)

    await start_sale(cashier, ann, EARN)
    await cashier.send("40 #A-1043")
    await cashier.wait_message("✅")

    await start_sale(cashier, ann, REDEEM)
    await cashier.send("10 #B-7")
    await cashier.wait_message("How many points?")
    await cashier.send("20")
    await cashier.wait_message("Waiting for the member")
    await ann.wait_message("Confirm?")
    await ann.click("✅ Confirm")
    await cashier.wait_message("The member confirmed")

    await cashier.send("/shift")
    shift = text_of(await cashier.wait_message("Your shift today")).split("\n")
    # Every receipt was said once: the sale's, and the confirmation (the "waiting" message
    # reads as settled, not as a second confirmation).
    assert count(cashier, "+200 points. Their balance") == 1
    assert count(cashier, "The member confirmed") == 1
    assert count(cashier, "The customer pays") == 1

    async with sessions() as s:
        sales = (await s.execute(select(Transaction).order_by(Transaction.id))).scalars().all()
    sales = [t for t in sales if t.kind in ("earn", "redeem")]
    local = [t.created_at.astimezone(program.program.zone) for t in sales]
    today = format_date(datetime.now(UTC).astimezone(program.program.zone), "medium", "en_GB")
    assert shift[0] == f"🧾 Your shift today, {today}"
    for line, sale, at, receipt in zip(shift[1:3], sales, local, ("A-1043", "B-7"), strict=True):
        assert line.startswith(f"{format_time(at, 'short', locale='en_GB')} · No. {sale.id} · ")
        assert f" · receipt {receipt} · Ann · " in line, line
    assert "Total: 2 operations" in shift[3]
