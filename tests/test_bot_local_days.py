"""Days a member reads are the program's local days, not UTC's: a purchase at 00:24 on
2 December in Warsaw (23:24 UTC on the 1st) is of 2 December in /history, its points expire
on 2 December a year later in /balance and in the reminder, and /balance counts with them
the points expiring later on that local day. The ledger's invariants are checked after each
test (the `sessions` fixture)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.rules.program import Program
from db.usecases.members import find_by_telegram
from db.usecases.purchases import Sale, record_sale
from db.usecases.reminders import Reminder
from tests.botharness import BotHarness
from tests.conftest import make_program
from tests.fakegram import text_of
from tests.till import join

Sessions = async_sessionmaker[AsyncSession]
# No welcome gift: its points would expire first, a year after the test runs.
WARSAW = make_program(program={"timezone": "Europe/Warsaw", "welcome_points": 0})
# 00:24 on 2 December 2030 in Warsaw (UTC+1 in winter); 21:00 that day; the next day.
JUST_AFTER_MIDNIGHT = datetime(2030, 12, 1, 23, 24, tzinfo=UTC)
EVENING = datetime(2030, 12, 2, 20, 0, tzinfo=UTC)
NEXT_DAY = datetime(2030, 12, 3, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("program", [WARSAW])
async def test_days_are_the_programs_local_days(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    ann = harness.user("Ann")
    await join(ann)
    async with sessions() as s:
        member = await find_by_telegram(s, ann.user_id)
        assert member is not None
        for when, amount in (
            (JUST_AFTER_MIDNIGHT, "20.00"),
            (EVENING, "10.00"),
            (NEXT_DAY, "6.00"),
        ):
            await record_sale(
                s,
                program,
                Sale(
                    member_id=member.id,
                    partner="coffee",
                    amount=Decimal(amount),
                    key=when.isoformat(),
                    now=when,
                ),
            )
    ann.mark_all_seen()

    await ann.send("/balance")
    balance = text_of(await ann.wait_message("Tier"))
    # The first two purchases' 100 + 50 points expire on 2 December 2031, local time (in
    # UTC, the first on 1 December and the second on the 2nd); the third's 30 a day later.
    assert "⏳ 150 points expire on 2 Dec 2031." in balance

    await ann.send("/history")
    history = text_of(await ann.wait_message("Transactions"))
    assert "2 Dec 2030 · Bean There Coffee · purchase PLN\u00a020.00: +100 points" in history
    assert "1 Dec 2030" not in history

    reminder = Reminder(
        member.id, ann.user_id, "en", 150, JUST_AFTER_MIDNIGHT + timedelta(days=365), []
    )
    assert await harness.notifier.expiring(reminder)
    told = text_of(await ann.wait_message("will expire"))
    assert told.startswith("⏳ 150 points will expire on 2 Dec 2031.")
