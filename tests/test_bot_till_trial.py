"""What new users of the till found, end to end through the fake Bot API: held points are
not shown as spendable, refunds say the cash handed back, typed voucher codes are read as
/voucher reads them, refusals say that nothing changed. The ledger's invariants are checked
after each test."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.rules.program import Program, parse_program
from tests.botharness import BotHarness
from tests.conftest import TEST_PROGRAM
from tests.fakegram import text_of as raw_text
from tests.test_bot_vouchers import REWARDS, give, take_coffee, wallet
from tests.till import hire, join, open_panel

Sessions = async_sessionmaker[AsyncSession]


def text_of(message: dict) -> str:
    """A message's text with money's no-break spaces as plain ones."""
    return raw_text(message).replace("\xa0", " ")


@pytest.fixture
def program() -> Program:
    return parse_program({**TEST_PROGRAM, "rewards": REWARDS})


async def test_held_points_are_not_shown_as_spendable(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    carl, ann = harness.user("Carl"), harness.user("Ann")
    await hire(harness, carl, "coffee", "cashier")
    await join(ann)
    await ann.send("/balance")
    plain = text_of(await ann.wait_message("Tier"))
    assert "💰 50 points (worth PLN 0.50)\n" in plain and "held" not in plain
    await give(sessions, program, ann, 450)  # 500 with the welcome gift
    await take_coffee(ann)  # 300 held for the voucher
    assert await wallet(sessions, ann) == (500, 300)

    await ann.send("/balance")
    said = text_of(await ann.wait_message("Tier"))
    assert (
        "💰 500 points (worth PLN 5.00), of which 300 held for your open vouchers, gifts and "
        "requests (200 to spend)"
    ) in said

    panel = text_of(await open_panel(carl, ann))
    assert (
        "💰 500 points (worth PLN 5.00), of which 300 held for their open vouchers, gifts and "
        "requests (200 to spend)"
    ) in panel
