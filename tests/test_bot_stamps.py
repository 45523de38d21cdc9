"""Stamp cards through the real bot and the fake Bot API: /stamps and /balance, the
cashier's receipt and the member's news of a stamp and of a full card (a voucher, or points
on a sale paid partly with points), a manager's refund, and the lapse job's reminder and
news. The ledger's invariants are checked after each test (the `sessions` fixture)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from babel.dates import format_date
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.workers.jobs import lapse_stamps, remind_lapsing_stamps
from db.ledger.models import Member, Transaction, Voucher
from db.rules.program import Program, parse_program
from db.usecases.members import find_by_telegram
from db.usecases.purchases import Sale, record_sale
from tests.botharness import BotHarness
from tests.fakegram import UserClient, text_of
from tests.test_stamps import STAMP_PROGRAM, discounted_stamp_program, stamp_program
from tests.till import card_link_payload, hire, join

Sessions = async_sessionmaker[AsyncSession]


def local_day(moment: datetime, program: Program) -> str:
    """A date as the bot writes it in English, in the program's time zone."""
    return format_date(moment.astimezone(program.program.zone), "medium", locale="en_GB")


@pytest.fixture
def program() -> Program:
    return stamp_program()


async def member_id(sessions: Sessions, user: UserClient) -> int:
    async with sessions() as s:
        member = await find_by_telegram(s, user.user_id)
    assert member is not None
    return member.id


async def seed(
    sessions: Sessions, program: Program, member: int, partner: str, days_ago: int, key: str
) -> None:
    """A sale of 10.00 some days ago (a stamp on that day's card)."""
    async with sessions() as s:
        await record_sale(
            s,
            program,
            Sale(
                member_id=member,
                partner=partner,
                amount=Decimal("10.00"),
                key=key,
                now=datetime.now(UTC) - timedelta(days=days_ago),
            ),
        )


async def sell(cashier: UserClient, member: UserClient, amount: str) -> str:
    """An earn-only sale at the till; the cashier's receipt."""
    await cashier.send("/start " + await card_link_payload(member))
    await cashier.wait_message("Points can pay up to")
    await cashier.click("🧾 Sale: earn points")
    await cashier.wait_message("Enter the purchase amount")
    await cashier.send(amount)
    return text_of(await cashier.wait_message("✅"))


async def test_stamps_screen_balance_receipt_and_news(
    harness: BotHarness, sessions: Sessions
) -> None:
    cashier, ann = harness.user("Carl"), harness.user("Ann")
    await hire(harness, cashier, "coffee", "cashier")
    await join(ann)

    # Every card of the program, at 0 too: so members learn they exist.
    await ann.send("/stamps")
    screen = text_of(await ann.wait_message("Stamp cards"))
    assert "Fifth coffee free\n○○○○○ 0/5\n📍 Bean There Coffee" in screen
    assert "🎁 A coffee of your choice at Bean There Coffee" in screen
    assert "A stamp for each purchase of PLN\u00a08.00 or more. At most 1 stamp a day." in screen
    assert "Stamps lapse 30 days after the card's last stamp." in screen
    assert "Town tour\n○○○ 0/3" in screen and "🎁 500 points" in screen
    assert "Each stamp from a different partner." in screen
    await ann.send("/balance")
    assert "🎟" not in text_of(await ann.wait_message("Tier"))  # no card in progress

    receipt = await sell(cashier, ann, "12.00")
    assert receipt.endswith("🎟 Stamp 1/5 on Fifth coffee free.")
    news = text_of(await ann.wait_message("Bean There Coffee"))
    assert "🎟 A stamp on Fifth coffee free: ●○○○○ 1/5\nBalance: 110 points." in news

    # The same day: the card's one stamp a day is given; the cashier and the member are
    # told why, in the same words.
    receipt = await sell(cashier, ann, "13.00")
    why = "No stamp on Fifth coffee free: its 1 stamp a day was given today."
    assert why in receipt
    news = text_of(await ann.wait_message("Balance: 175 points."))
    assert "🎟" not in news and f"\n{why}\nBalance: 175 points." in news

    # Too small a purchase: no stamp, and both learn the card's minimum.
    receipt = await sell(cashier, ann, "5")
    why = "No stamp on Fifth coffee free: it takes a purchase of PLN\u00a08.00 or more."
    assert why in receipt
    news = text_of(await ann.wait_message("Balance: 200 points."))
    assert f"\n{why}\nBalance: 200 points." in news

    await ann.send("/balance")
    balance = text_of(await ann.wait_message("Tier"))
    assert balance.endswith("🎟 Fifth coffee free: ●○○○○ 1/5")
    await ann.send("🎟 Stamps")  # the menu button
    screen = text_of(await ann.wait_message("Stamp cards"))
    assert "Fifth coffee free\n●○○○○ 1/5" in screen
    async with sessions() as s:
        stamped = await s.scalar(select(Transaction.created_at).where(Transaction.kind == "stamp"))
    assert stamped is not None
    lapses = local_day(stamped + timedelta(days=30), harness.runtime.program)
    assert f"⏳ These stamps lapse on {lapses} unless a new stamp comes first." in screen


async def test_a_full_card_gives_its_voucher_at_the_till(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    cashier, ann = harness.user("Carl"), harness.user("Ann")
    await hire(harness, cashier, "coffee", "cashier")
    await join(ann)
    m = await member_id(sessions, ann)
    for day in range(1, 5):
        await seed(sessions, program, m, "coffee", day, f"seed{day}")

    receipt = await sell(cashier, ann, "9.50")
    async with sessions() as s:
        voucher = (await s.execute(select(Voucher))).scalar_one()
    shown = f"{voucher.code[:4]}-{voucher.code[4:]}"  # as /vouchers shows it
    assert receipt.endswith(
        f"🎉 Card filled: Fifth coffee free. Voucher {shown} issued: A coffee of your choice."
    )
    news = text_of(await ann.wait_message("is full"))
    until = local_day(voucher.expires_at, program)
    assert (
        f"🎉 Your card Fifth coffee free is full! Your voucher {shown}: A coffee of your "
        f"choice, valid until {until}. Your next stamp starts a new card." in news
    )
    await ann.send("/stamps")
    assert "Fifth coffee free\n○○○○○ 0/5" in text_of(await ann.wait_message("Stamp cards"))


async def test_a_points_sale_that_fills_a_tour_card_tells_both_sides(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    cashier, ann = harness.user("Carl"), harness.user("Ann")
    await hire(harness, cashier, "bakery", "cashier")
    await join(ann)
    m = await member_id(sessions, ann)
    await seed(sessions, program, m, "books", 2, "b")
    await seed(sessions, program, m, "gym", 1, "g")  # 50 + 30 + 20 points
    await ann.send("/stamps")
    screen = text_of(await ann.wait_message("Stamp cards"))
    assert "📍 ✅ Chapter One Books · ✅ Iron Temple Gym · Golden Crust Bakery" in screen

    await cashier.send("/start " + await card_link_payload(ann))
    await cashier.wait_message("Points can pay up to")
    await cashier.click("💳 Sale: use points")
    await cashier.wait_message("Enter the purchase amount")
    await cashier.send("20")
    await cashier.wait_message("How many points?")
    await cashier.send("100")
    await ann.wait_message("Confirm?")
    await ann.click("✅ Confirm")
    # 100 points pay 1.00; 19.00 earn 76 at 4 %; the full card gives 500: 576 in all.
    told = text_of(await cashier.wait_message("The member confirmed"))
    assert (
        "+576 points earned. The member's balance: 576 points.\n"
        "🟢 +76 points on the purchase itself" in told
    )
    assert told.endswith("🎉 Card filled: Town tour. +500 points to the member.")
    news = text_of(await ann.wait_message("Balance:"))
    assert (
        "🎉 Your card Town tour is full: +500 points. Your next stamp starts a new card." in news
    )
    assert news.endswith("Balance: 576 points.")
    await ann.send("/history")
    assert "a full stamp card's reward: +500 points" in text_of(
        await ann.wait_message("Transactions")
    )


async def test_a_refund_takes_the_stamp_back_or_says_why_not(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    manager, ann = harness.user("Mo"), harness.user("Ann")
    await hire(harness, manager, "coffee", "manager")
    await join(ann)
    m = await member_id(sessions, ann)
    await sell(manager, ann, "10")
    await ann.wait_message("1/5")
    async with sessions() as s:
        sale = await s.scalar(select(Transaction.id).where(Transaction.kind == "earn"))
    await manager.send(f"/refund {sale} all wrong order")
    reply = text_of(await manager.wait_message("Refunded"))
    assert reply.endswith("Stamp taken back from Fifth coffee free: now 0/5.")
    news = text_of(await ann.wait_message("Refund of"))
    assert "🎟 The stamp this purchase added on Fifth coffee free is taken back: ○○○○○ 0/5" in news

    # A sale whose card was filled since: its stamp stays, and so does the reward.
    await seed(sessions, program, m, "coffee", 5, "old")
    async with sessions() as s:
        old = await s.scalar(select(Transaction.id).where(Transaction.idempotency_key == "old"))
    for day in range(1, 5):
        await seed(sessions, program, m, "coffee", day, f"seed{day}")  # the 5th fills it
    await manager.send(f"/refund {old} all returned")
    reply = text_of(await manager.wait_message("Refunded"))
    assert reply.endswith(
        "The stamp this sale added on Fifth coffee free stays: that card has been filled "
        "since, and its reward was given."
    )
    news = text_of(await ann.wait_message(lambda msg: "stays" in str(msg.get("text"))))
    assert (
        "🎟 The stamp this purchase added on Fifth coffee free stays: the card has been filled "
        "since, and its reward stays yours." in news
    )


async def test_the_lapse_job_reminds_and_then_lapses(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    ann, bob = harness.user("Ann"), harness.user("Bob")
    await join(ann)
    await join(bob)
    m = await member_id(sessions, ann)
    await seed(sessions, program, m, "coffee", 12, "a1")
    await seed(sessions, program, m, "coffee", 11, "a2")
    # Bob's stamp is newer: his card lapses 11 days after Ann's.
    await seed(sessions, program, await member_id(sessions, bob), "coffee", 0, "b1")
    last = datetime.now(UTC) - timedelta(days=11)

    assert await remind_lapsing_stamps(harness.runtime, now=last + timedelta(days=25)) == 1
    harness.dp["outbox"].kick()
    told = text_of(await ann.wait_message("lapse on"))
    date = local_day(last + timedelta(days=30), program)
    assert told == (
        f"⏳ Your 2 stamps on Fifth coffee free lapse on {date}. A stamp before then keeps "
        "them: Bean There Coffee."
    )
    assert await remind_lapsing_stamps(harness.runtime, now=last + timedelta(days=26)) == 0

    assert await lapse_stamps(harness.runtime, now=last + timedelta(days=30)) == 1
    harness.dp["outbox"].kick()
    gone = text_of(await ann.wait_message("lapsed"))
    assert gone == (
        "⌛ Your 2 stamps on Fifth coffee free lapsed: no new stamp in 30 days. Your next "
        "stamp starts a new card."
    )
    await ann.send("/balance")
    assert "🎟" not in text_of(await ann.wait_message("Tier"))
    assert not any("stamp" in text_of(msg) for msg in bob.messages if "text" in msg)


async def test_a_sale_posted_twice_tells_its_stamp_once_more(
    harness: BotHarness, sessions: Sessions
) -> None:
    cashier, ann = harness.user("Carl"), harness.user("Ann")
    await hire(harness, cashier, "coffee", "cashier")
    await join(ann)
    first = await sell(cashier, ann, "10 #R-7")
    assert first.endswith("🎟 Stamp 1/5 on Fifth coffee free.")
    again = await sell(cashier, ann, "10 #R-7")  # the same receipt: already posted
    assert again == (
        "This sale was already posted.\n✅ PLN\u00a010.00: +50 points. The member's balance: "
        "100 points.\n🎟 Stamp 1/5 on Fifth coffee free."
    )
    async with sessions() as s:
        stamps = await s.scalar(
            select(func.count()).select_from(Transaction).where(Transaction.kind == "stamp")
        )
    assert stamps == 1


@pytest.mark.parametrize("program", [discounted_stamp_program()])
async def test_a_discounted_sale_is_stamped_on_the_money_charged(
    harness: BotHarness, sessions: Sessions
) -> None:
    cashier, ann = harness.user("Carl"), harness.user("Ann")
    await hire(harness, cashier, "coffee", "cashier")
    await join(ann)
    async with sessions() as s:
        await s.execute(
            update(Member).where(Member.telegram_id == ann.user_id).values(tier="Gold")
        )
        await s.commit()
    await ann.send("/stamps")
    screen = text_of(await ann.wait_message("Stamp cards"))
    assert "A stamp for each purchase of PLN\u00a08.00 or more after your tier discount." in screen

    await cashier.send("/start " + await card_link_payload(ann))
    await cashier.wait_message("Points can pay up to")
    await cashier.click("🧾 Sale: earn points")
    await cashier.wait_message("Enter the purchase amount")
    await cashier.send("8.00")
    await cashier.wait_message("To pay")
    await cashier.click("🧾 Post: to pay PLN\u00a07.60")
    receipt = text_of(await cashier.wait_message("✅"))
    assert receipt.endswith(
        "No stamp on Fifth coffee free: it takes a purchase of PLN\u00a08.00 or more after the "
        "discount."
    )
    async with sessions() as s:
        stamps = await s.scalar(
            select(func.count()).select_from(Transaction).where(Transaction.kind == "stamp")
        )
    assert stamps == 0


def lapsing_tour_program() -> Program:
    """The stamp program whose tour card lapses too (30 days)."""
    cards = [dict(c) for c in STAMP_PROGRAM["stamp_cards"]]
    cards[1]["expire_days"] = 30
    return parse_program({**STAMP_PROGRAM, "stamp_cards": cards})


@pytest.mark.parametrize("program", [lapsing_tour_program()])
async def test_a_tour_cards_reminder_names_the_partners_still_to_visit(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    ann = harness.user("Ann")
    await join(ann)
    m = await member_id(sessions, ann)
    await seed(sessions, program, m, "books", 12, "b")
    await seed(sessions, program, m, "gym", 11, "g")
    last = datetime.now(UTC) - timedelta(days=11)
    assert await remind_lapsing_stamps(harness.runtime, now=last + timedelta(days=25)) == 1
    harness.dp["outbox"].kick()
    told = text_of(await ann.wait_message("lapse on"))
    date = local_day(last + timedelta(days=30), program)
    assert told == (
        f"⏳ Your 2 stamps on Town tour lapse on {date}. A stamp before then keeps them: "
        "Golden Crust Bakery."
    )
