"""What new users of the till found, end to end through the fake Bot API: held points are
not shown as spendable, refunds say the cash handed back, typed voucher codes are read as
/voucher reads them, refusals say that nothing changed. The ledger's invariants are checked
after each test."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.ledger.models import AuditLog, Transaction, TxKind, Voucher, VoucherSource
from db.rules.program import Program, parse_program
from db.usecases.members import find_by_telegram
from db.usecases.purchases import Sale, record_sale
from db.usecases.vouchers import issue_voucher
from tests.botharness import BotHarness
from tests.conftest import TEST_PROGRAM
from tests.fakegram import UserClient
from tests.fakegram import text_of as raw_text
from tests.test_bot_stamps import member_id, seed, sell
from tests.test_bot_vouchers import REWARDS, give, take_coffee, vouchers, wallet
from tests.test_stamps import stamp_program
from tests.till import hire, join, open_panel, start_sale

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


async def test_refusals_say_why_and_that_nothing_changed(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    carl, mia, bea = harness.user("Carl"), harness.user("Mia"), harness.user("Bea")
    ann = harness.user("Ann")
    await hire(harness, carl, "coffee", "cashier")
    await hire(harness, mia, "coffee", "manager")
    await hire(harness, bea, "bakery", "manager")
    await join(ann)
    await give(sessions, program, ann, 950)  # 1,000
    await take_coffee(ann)
    await take_coffee(ann)
    first, second = [code for code, _status in await vouchers(sessions)]
    async with sessions() as s:
        await s.execute(
            update(Voucher)
            .where(Voucher.code == second)
            .values(expires_at=datetime(2026, 1, 5, 14, 30, tzinfo=UTC))
        )
        await s.commit()

    async def said(user: UserClient, text: str) -> str:
        sent = await user.send(text)
        return text_of(
            await user.wait_message(lambda m, after=sent["message_id"]: m["message_id"] > after)
        )

    assert await said(bea, f"/voucher {first}") == (
        "This voucher is for Bean There Coffee: it cannot be claimed here. Nothing was changed."
    )
    assert await said(carl, f"/voucher {second}") == (
        "This voucher expired on 5 Jan 2026 at 14:30: it cannot be claimed. Nothing was changed."
    )
    assert await said(carl, "/voucher ZZZZ-ZZZZ") == (
        "No voucher has the code ZZZZ-ZZZZ. Check it, or scan the voucher's QR code. Nothing "
        "was changed."
    )
    await carl.send(f"/voucher {first}")
    await carl.wait_message("A coffee of your choice")
    await carl.click("✅ Claim")
    await carl.wait_message("claimed")
    again = await said(carl, f"/voucher {first}")
    assert again.startswith("Already claimed on ")
    assert again.endswith(": a voucher is used once. Nothing was changed.")
    async with sessions() as s:
        refused = (
            await s.execute(
                select(AuditLog.details)
                .where(AuditLog.action == "voucher_open_refused")
                .order_by(AuditLog.id)
            )
        ).scalars()
        assert [(d["code"], d["refused"]) for d in refused] == [
            (first, "voucher_wrong_partner"),
            (second, "voucher_expired"),
            (first, "voucher_claimed"),
        ]
        claim = await s.scalar(select(Transaction.id).where(Transaction.kind == TxKind.VOUCHER))
    assert await said(mia, f"/refund {claim} all oops") == (
        f"No. {claim} is a voucher claim, not a sale: it cannot be refunded, and a claim cannot "
        "be undone in the bot. If it was claimed by mistake, contact the program's owner. "
        "Nothing was changed."
    )

    # The till's amount rule, at the till and in /refund.
    await start_sale(carl, ann)
    assert (await said(carl, "12 50")).startswith(
        "“12 50” is not an amount I can use: nothing was posted. Type the amount"
    )
    await carl.send("40")
    await carl.wait_message("✅")
    async with sessions() as s:
        sale = await s.scalar(select(Transaction.id).where(Transaction.kind == TxKind.EARN))
    assert (await said(mia, f"/refund {sale} 1 250 broken cup")).startswith(
        "“1 250” is not an amount I can use: nothing was refunded."
    )
    assert (await said(mia, f"/refund {sale} PLN 5 broken cup")).startswith(
        f"↩️ Refunded PLN 5.00 of sale No. {sale}; give back PLN 5.00 in money."
    )
    assert (await said(mia, f"/refund {sale} 5zł broken cup")).startswith(
        f"↩️ Refunded PLN 5.00 of sale No. {sale}; give back PLN 5.00 in money."
    )
    assert (await said(mia, f"/refund {sale} PLN 5")).startswith("Please give a reason")
    assert await said(mia, f"/refund {sale} 31 broken cup") == (
        "At most PLN 30.00 of this sale is left to refund. Nothing was changed."
    )
    await said(mia, f"/refund {sale} all broken cup")
    assert await said(mia, f"/refund {sale} 1 broken cup") == (
        "This sale was already refunded in full. Nothing was changed."
    )


@pytest.mark.parametrize("program", [stamp_program()])
async def test_a_full_cards_voucher_code_and_the_refund_of_the_sale_that_filled_it(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    boss, ann = harness.user("Mo"), harness.user("Ann")
    await hire(harness, boss, "coffee", "manager")
    await join(ann)
    m = await member_id(sessions, ann)
    for day in range(1, 5):
        await seed(sessions, program, m, "coffee", day, f"seed{day}")
    receipt = await sell(boss, ann, "9.50")
    async with sessions() as s:
        voucher = (await s.execute(select(Voucher))).scalar_one()
        sale = await s.scalar(
            select(func.max(Transaction.id)).where(Transaction.kind == TxKind.EARN)
        )
    shown = f"{voucher.code[:4]}-{voucher.code[4:]}"  # as /vouchers shows it
    assert f"Voucher {shown} issued" in receipt
    assert f"Your voucher {shown}:" in text_of(await ann.wait_message("is full"))

    await boss.send(f"/refund {sale} all wrong order")
    reply = text_of(await boss.wait_message("Refunded"))
    assert reply.endswith(
        "The stamp this sale added on Fifth coffee free stays: this sale filled the card, and "
        "its reward was given and stays."
    )
    news = text_of(await ann.wait_message(lambda msg: "stays" in str(msg.get("text"))))
    assert (
        "🎟 The stamp this purchase added on Fifth coffee free stays: this purchase filled the "
        "card, and its reward stays yours." in news
    )
