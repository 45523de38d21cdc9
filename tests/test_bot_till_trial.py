"""What new users of the till found, end to end through the fake Bot API: held points are
not shown as spendable, refunds say the cash handed back, typed voucher codes are read as
/voucher reads them, refusals say that nothing changed. The ledger's invariants are checked
after each test."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.ledger.models import VoucherSource
from db.rules.program import Program, parse_program
from db.usecases.members import find_by_telegram
from db.usecases.purchases import Sale, record_sale
from db.usecases.vouchers import issue_voucher
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


async def test_shift_and_today_say_the_cash_each_refund_handed_back(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    """A sale paid partly with points, whose earned points the member spent elsewhere, is
    refunded: the drawer gave back less than the refund's value, and the figures say so."""
    boss, ann = harness.user("Mia"), harness.user("Ann")
    await hire(harness, boss, "coffee", "manager")
    await join(ann)
    async with sessions() as s:
        member = await find_by_telegram(s, ann.user_id)
        assert member is not None
        sale = await record_sale(
            s,
            program,
            Sale(
                member_id=member.id,
                partner="coffee",
                amount=Decimal(40),
                redeem_points=10,
                key="s",
            ),
        )
        await record_sale(
            s,
            program,
            Sale(
                member_id=member.id,
                partner="books",
                amount=Decimal("4.78"),
                redeem_points=239,
                key="x",
            ),
        )
    await boss.send(f"/refund {sale.transaction_id} all returned")
    done = text_of(await boss.wait_message("Refunded"))
    assert "Refunded PLN 40.00" in done and "give back PLN 38.08 in money" in done

    await boss.send("/shift")
    shift = text_of(await boss.wait_message("Your shift today")).split("\n")
    assert shift[1].endswith(" · Ann · refund PLN 40.00 (cash back PLN 38.08) · +10 −17"), shift
    assert "Cash handed back for refunds: PLN 38.08." in shift
    await boss.send("/today")
    today = text_of(await boss.wait_message("Today"))
    assert "Sales refunded: PLN 40.00 (cash handed back: PLN 38.08)." in today


async def test_typed_codes_read_as_voucher_reads_them(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    """A code typed alone with O, I or L for 0 and 1 opens the voucher, as /voucher does; a
    code-like text that cannot be a code is said to be one, not taken for an amount."""
    carl, ann = harness.user("Carl"), harness.user("Ann")
    await hire(harness, carl, "coffee", "cashier")
    await join(ann)
    async with sessions() as s:
        member = await find_by_telegram(s, ann.user_id)
        assert member is not None
        await issue_voucher(
            s,
            program,
            member_id=member.id,
            reward="sticker",
            source=VoucherSource.PROMOTION,
            now=datetime.now(UTC),
            code="R0FP31KM",
        )
        await s.commit()
    for typed in ("ROFP-3IKM", "rofp3lkm", "R0FP 31KM"):
        sent = await carl.send(typed)
        shown = await carl.wait_message(
            lambda m, after=sent["message_id"]: m["message_id"] > after
        )
        assert "A sticker" in text_of(shown) and "R0FP-31KM" in text_of(shown), typed
    for typed, why in (
        ("PT9Y-DVS", "it has 7 characters"),
        ("pt9ydvsxy", "it has 9 characters"),
        ("ABCU-12K4", "no code has U"),
    ):
        sent = await carl.send(typed)
        said = text_of(
            await carl.wait_message(lambda m, after=sent["message_id"]: m["message_id"] > after)
        )
        assert said == (
            f"That looks like a voucher code, but {why} (codes are 8 characters, like "
            "K7QM-2XHD). Check it and type it again."
        ), typed
    # An amount with its currency, outside a sale, is still said to need a card first.
    await carl.send("100 PLN")
    await carl.wait_message("No sale is open")
