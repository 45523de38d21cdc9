"""The club at the till, end to end through the fake Bot API: the panel says a member's
place in the club and where their discount comes from, the receipt and the member's news
say the club's ×1.5 with its points; a month sold from the panel (take the money, Taken),
recorded once however often pressed, at the price the file says now; /shift, /today and
/settlement count it; a membership bought between the amount shown and the posting posts
nothing. The ledger's invariants are checked after each test (the `sessions` fixture)."""

from __future__ import annotations

import copy
import csv
import io
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from babel.dates import format_date
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.callbacks import ClubSaleCb
from db.ledger.models import ClubMembership, ClubPayment, Member, Transaction
from db.rules.program import CLUB_PERIOD, Program, parse_program
from db.usecases.club import Payment, record_payment
from db.usecases.members import find_by_telegram
from tests.botharness import OWNER_ID, BotHarness, running_bot
from tests.conftest import TEST_PROGRAM
from tests.fakegram import UserClient, inline_buttons, text_of
from tests.test_club_till import CLUB, till_club_program
from tests.till import EARN, hire, join, open_panel, start_sale

Sessions = async_sessionmaker[AsyncSession]
PLN = "PLN\u00a0"
D = Decimal
A_MONTH = f"⭐ City Club: a month for {PLN}29.00"
ANOTHER = f"⭐ City Club: another month for {PLN}29.00"


@pytest.fixture
def program() -> Program:
    return till_club_program()


async def member_id(sessions: Sessions, user: UserClient) -> int:
    async with sessions() as s:
        found = await find_by_telegram(s, user.user_id)
    assert found is not None
    return found.id


async def set_tier(sessions: Sessions, user: UserClient, tier: str) -> None:
    async with sessions() as s:
        await s.execute(update(Member).where(Member.telegram_id == user.user_id).values(tier=tier))
        await s.commit()


async def pay_stars(sessions: Sessions, program: Program, user: UserClient) -> None:
    """A month bought with Telegram Stars (the club's own flow), now."""
    who, now = await member_id(sessions, user), datetime.now(UTC)
    async with sessions() as s:
        await record_payment(
            s,
            program,
            Payment(who, f"stars-{who}", "stars", "XTR", D(250), now, now + CLUB_PERIOD, True),
        )


def day(when: datetime | date) -> str:
    """A day as the bot writes it in English (bot/views/formatting.py day)."""
    return format_date(when, format="medium", locale="en_GB")


async def ends_at(sessions: Sessions, user: UserClient) -> datetime:
    async with sessions() as s:
        end = await s.scalar(
            select(ClubMembership.ends_at)
            .join(Member, Member.id == ClubMembership.member_id)
            .where(Member.telegram_id == user.user_id)
        )
    assert end is not None
    return end


async def payments(sessions: Sessions) -> list[tuple[str, Decimal]]:
    async with sessions() as s:
        rows = await s.execute(
            select(ClubPayment.method, ClubPayment.amount).order_by(ClubPayment.id)
        )
        return [(r[0], r[1]) for r in rows]


async def test_a_club_member_gets_both_discounts_and_the_club_points_at_the_till(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    cashier, ann, bob = harness.user("Carl"), harness.user("Ann"), harness.user("Bob")
    await hire(harness, cashier, "coffee", "cashier")
    for user in (ann, bob):
        await join(user)
        await set_tier(sessions, user, "Gold")
    await pay_stars(sessions, program, ann)
    await ann.wait_message("City Club")  # the club's news of the payment

    panel = await open_panel(cashier, ann)
    text = text_of(panel)
    assert "🏷 10% off at every partner: 5% Gold + 5% City Club." in text
    zone = program.program.zone
    until = day((await ends_at(sessions, ann)).astimezone(zone))
    assert f"⭐ City Club member until {until}." in text
    assert "• City Club: ×1.5" in text
    assert [b["text"] for b in inline_buttons(panel)] == [
        "🧾 Sale: earn points",
        "💳 Sale: use points",
        ANOTHER,
        "✖ Cancel",
    ]
    await cashier.click(EARN)
    await cashier.wait_message("Enter the purchase amount")
    await cashier.send("100")
    shown = text_of(await cashier.wait_message("To pay"))
    assert shown == (
        f"Amount {PLN}100.00 · discount 5% Gold + 5% City Club −{PLN}10.00 · To pay {PLN}90.00"
    )
    await cashier.click(f"🧾 Post: to pay {PLN}90.00")
    receipt = text_of(await cashier.wait_message("✅"))
    # 90.00 × 5 % × 2 (Gold) = 900 points; the club's ×1.5 adds 450.
    assert f"discount 5% Gold + 5% City Club −{PLN}10.00 · To pay {PLN}90.00" in receipt
    assert "✅ Ann: " in receipt and "+1,350 points" in receipt
    assert "🟢 +900 points on the purchase itself" in receipt
    assert "🎉 ×1.5 City Club: +450 points" in receipt
    news = text_of(await ann.wait_message("Bean There"))
    assert (
        f"🏷 Discount 5% Gold + 5% City Club −{PLN}10.00 on your {PLN}100.00 purchase at "
        f"Bean There Coffee: {PLN}90.00 to pay." in news
    )
    assert "🎉 ×1.5 City Club: +450 points" in news

    # Bob is not in the club: his tier's discount alone, and no ×1.5.
    panel = text_of(await open_panel(cashier, bob))
    assert "🏷 Gold: 5% off at every partner." in panel
    assert "City Club: not a member." in panel and "×1.5" not in panel
    assert A_MONTH in [b["text"] for b in inline_buttons(cashier.messages[-1])]
    await cashier.click(EARN)
    await cashier.wait_message("Enter the purchase amount")
    await cashier.send("100")
    assert f"Gold discount 5% −{PLN}5.00" in text_of(await cashier.wait_message("To pay"))
    await cashier.click(f"🧾 Post: to pay {PLN}95.00")
    receipt = text_of(await cashier.wait_message("✅ Bob"))
    assert "+950 points" in receipt and "City Club" not in receipt


async def test_the_club_bonus_at_the_bookshop_is_for_club_members_only(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    bookseller, ann, bob = harness.user("Bea"), harness.user("Ann"), harness.user("Bob")
    await hire(harness, bookseller, "books", "cashier")
    for user in (ann, bob):
        await join(user)
    await pay_stars(sessions, program, ann)
    panel = text_of(await open_panel(bookseller, ann))
    assert "• Club members: 100 points on a book" in panel
    await bookseller.click(EARN)
    await bookseller.wait_message("Enter the purchase amount")
    await bookseller.send("40")
    shown = text_of(await bookseller.wait_message("To pay"))
    assert f"City Club discount 5% −{PLN}2.00 · To pay {PLN}38.00" in shown  # Bronze: 0 %
    await bookseller.click(f"🧾 Post: to pay {PLN}38.00")
    receipt = text_of(await bookseller.wait_message("✅"))
    # 38.00 × 3 % = 114 points; ×1.5 adds 57; the club's bonus 100.
    assert "+271 points" in receipt
    assert "🎉 ×1.5 City Club: +57 points" in receipt
    assert "🎉 +100 points — Club members: 100 points on a book" in receipt
    panel = text_of(await open_panel(bookseller, bob))
    assert "Club members" not in panel and "Promotions now" not in panel
    await bookseller.click(EARN)
    await bookseller.wait_message("Enter the purchase amount")
    await bookseller.send("40")
    receipt = text_of(await bookseller.wait_message("✅ Bob"))
    assert "+120 points" in receipt and "🎉" not in receipt


async def test_a_month_sold_at_the_till_is_recorded_once_and_counted(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    cashier, manager, ann = harness.user("Carl"), harness.user("Mia"), harness.user("Ann")
    await hire(harness, cashier, "coffee", "cashier")
    await hire(harness, manager, "coffee", "manager")
    await join(ann)
    await open_panel(cashier, ann)
    before = datetime.now(UTC)
    await cashier.click(A_MONTH)
    ask = await cashier.wait_message("Take")
    zone = program.program.zone
    until = day((before + CLUB_PERIOD).astimezone(zone))
    assert text_of(ask) == (
        f"Take {PLN}29.00 from the customer, then press Taken. Membership until {until}."
    )
    assert await payments(sessions) == []  # nothing before the money is taken
    taken = next(b["callback_data"] for b in inline_buttons(ask) if b["text"] == "✅ Taken")
    await cashier.click("✅ Taken")
    receipt = text_of(await cashier.wait_message("A member until"))
    assert receipt == (
        f"✅ City Club: {PLN}29.00 from Ann. A member until {until}.\n"
        "🎁 The member got +500 points for joining."
    )
    news = text_of(await ann.wait_message("Welcome to City Club"))
    assert f"You paid {PLN}29.00: you are a member until {until}." in news
    assert "🎁 +500 points: the club's welcome gift." in news
    end = await ends_at(sessions, ann)
    assert before + CLUB_PERIOD <= end <= datetime.now(UTC) + CLUB_PERIOD
    # The button pressed again (its keyboard is gone; a stale or repeated press): nothing.
    await cashier.click(ask, taken, check=False)
    again = await cashier.wait_callback_answer()
    assert f"already recorded: membership until {until}" in again["text"]
    assert await payments(sessions) == [("till", D("29.00"))]
    async with sessions() as s:
        balance = await s.scalar(select(func.count()).select_from(Transaction))
    assert balance == 2  # Ann's welcome and the club's welcome points: no sale

    await cashier.send("/shift")
    shift = text_of(await cashier.wait_message("Your shift today"))
    assert f"⭐ City Club: 1 month sold, {PLN}29.00 collected (club money, not a sale)." in shift
    await manager.send("/today")
    today = text_of(await manager.wait_message("Today"))
    assert f"⭐ City Club: 1 month sold, {PLN}29.00 collected" in today
    assert f"Sales to members: 0 (0 members), {PLN}0.00." in today

    # Now a member: the panel says until when, and offers another month (it extends).
    panel = await open_panel(cashier, ann)
    assert f"⭐ City Club member until {until}." in text_of(panel)
    await cashier.click(ANOTHER)
    later = day((end + CLUB_PERIOD).astimezone(zone))
    assert f"Membership until {later}." in text_of(await cashier.wait_message("Take"))


async def test_a_price_changed_in_the_file_is_refused_with_the_new_one(
    harness: BotHarness, sessions: Sessions
) -> None:
    cashier, ann = harness.user("Carl"), harness.user("Ann")
    await hire(harness, cashier, "coffee", "cashier")
    await join(ann)
    await open_panel(cashier, ann)
    await cashier.click(A_MONTH)
    await cashier.wait_message("Take")
    # The file changed meanwhile (the bot restarted with it; the buttons stay in the chat):
    # the running program's club is swapped for the new file's, in place.
    object.__setattr__(harness.runtime.program, "club", till_club_program(price="35.00").club)
    await cashier.click("✅ Taken")
    refused = await cashier.wait_message("has changed")
    assert text_of(refused) == (
        f"The price of a month of City Club has changed: it is now {PLN}35.00, not "
        f"{PLN}29.00. Nothing was recorded."
    )
    assert await payments(sessions) == []
    await cashier.click(f"⭐ City Club: a month for {PLN}35.00")
    assert f"Take {PLN}35.00 from the customer" in text_of(await cashier.wait_message("Take"))
    await cashier.click("✅ Taken")
    await cashier.wait_message("A member until")
    assert await payments(sessions) == [("till", D("35.00"))]


async def test_a_membership_bought_between_the_amount_and_the_posting_posts_nothing(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    cashier, ann = harness.user("Carl"), harness.user("Ann")
    await hire(harness, cashier, "coffee", "cashier")
    await join(ann)
    await set_tier(sessions, ann, "Gold")
    await start_sale(cashier, ann)
    await cashier.send("100")
    shown = text_of(await cashier.wait_message("To pay"))
    assert f"Gold discount 5% −{PLN}5.00" in shown
    await pay_stars(sessions, program, ann)  # in Telegram, while the cashier waits
    await cashier.click(f"🧾 Post: to pay {PLN}95.00")
    changed = text_of(await cashier.wait_message("changed since the amount was shown"))
    assert "(their tier or club membership changed). Nothing was posted." in changed
    async with sessions() as s:
        sales = await s.scalar(
            select(func.count()).select_from(Transaction).where(Transaction.kind == "earn")
        )
    assert sales == 0
    await cashier.send("100")  # the dialog asks for the amount again: now with the club's
    shown = text_of(await cashier.wait_message("To pay"))
    assert f"discount 5% Gold + 5% City Club −{PLN}10.00" in shown
    await cashier.click(f"🧾 Post: to pay {PLN}90.00")
    assert "🎉 ×1.5 City Club: +450 points" in text_of(await cashier.wait_message("✅"))


async def test_settlement_shows_the_club_money_a_partner_collected(
    harness: BotHarness, sessions: Sessions
) -> None:
    cashier, ann = harness.user("Carl"), harness.user("Ann")
    await hire(harness, cashier, "coffee", "cashier")
    await join(ann)
    await open_panel(cashier, ann)
    await cashier.click(A_MONTH)
    await cashier.wait_message("Take")
    await cashier.click("✅ Taken")
    await cashier.wait_message("A member until")
    # Settled for days that have ended: the month sold two days ago.
    last = datetime.now(UTC).date() - timedelta(days=1)
    first = last - timedelta(days=6)
    async with sessions() as s:
        await s.execute(
            update(ClubPayment).values(created_at=datetime.now(UTC) - timedelta(days=2))
        )
        await s.commit()
    owner = harness.owner()
    await owner.send(f"/settlement {first}..{last}")
    message = await owner.wait_message(lambda m: "document" in m, timeout=15)
    assert (
        f"Club months sold at tills: {PLN}29.00 collected by the partners for the coalition"
        in text_of(message)
    )
    stored = harness.server.file(message["document"]["file_id"])
    assert stored is not None
    rows = {
        r["Partner code"] or r["Line"]: r
        for r in csv.DictReader(io.StringIO(stored.data.decode("utf-8-sig")))
    }
    coffee = rows["coffee"]
    assert (coffee["Club money collected"], coffee["Amount"], coffee["Who pays"]) == (
        "29.00",
        "-29.00",
        "partner pays coalition",
    )
    assert rows["total"]["Club money collected"] == "29.00"


async def test_the_own_card_and_a_stale_panel_sell_nothing(
    harness: BotHarness, sessions: Sessions
) -> None:
    cashier, ann = harness.user("Carl"), harness.user("Ann")
    await hire(harness, cashier, "coffee", "cashier")
    await join(cashier)  # the cashier's own card
    await join(ann)
    await cashier.send("/card")
    own = await cashier.wait_message(lambda m: "photo" in m)
    photo = harness.server.file(own["photo"][-1]["file_id"]).data
    await cashier.send_photo(photo)
    assert "your own member card" in text_of(await cashier.wait_message("own member card"))
    first = await open_panel(cashier, ann)
    await open_panel(cashier, ann)  # a new panel: the first one's buttons are stale
    data = next(b["callback_data"] for b in inline_buttons(first) if b["text"] == A_MONTH)
    await cashier.click(first, data)
    assert "This sale is closed" in (await cashier.wait_callback_answer())["text"]
    forged = ClubSaleCb(action="taken", dialog="forged-dialog", minor=2900).pack()
    await cashier.click(first, forged, check=False)
    assert "This sale is closed" in (await cashier.wait_callback_answer())["text"]
    assert await payments(sessions) == []


async def test_a_refund_takes_the_club_points_back(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    manager, ann = harness.user("Mia"), harness.user("Ann")
    await hire(harness, manager, "coffee", "manager")
    await join(ann)
    await pay_stars(sessions, program, ann)
    await ann.wait_message("City Club")
    await start_sale(manager, ann)
    await manager.send("100")
    await manager.wait_message("To pay")
    await manager.click(f"🧾 Post: to pay {PLN}95.00")
    # 95.00 × 5 % = 475 points; the club's ×1.5 adds 237.
    receipt = text_of(await manager.wait_message("✅"))
    assert "🎉 ×1.5 City Club: +237 points" in receipt
    async with sessions() as s:
        sale = await s.scalar(select(Transaction.id).where(Transaction.kind == "earn"))
    await manager.send(f"/refund {sale} all returned")
    reply = text_of(await manager.wait_message("Refunded"))
    assert "−237 points: City Club (on the refunded money)" in reply
    news = text_of(await ann.wait_message("Refund of"))
    assert "−237 points: City Club (on the refunded money)" in news
    assert "Balance: 550 points." in news  # the welcome gift and the club's welcome points


async def test_a_month_sold_from_a_panel_is_not_sold_or_cancelled_again(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    server = harness.server
    cashier, ann = harness.user("Carl"), harness.user("Ann")
    await hire(harness, cashier, "coffee", "cashier")
    await join(ann)
    panel = await open_panel(cashier, ann)
    offer = next(b["callback_data"] for b in inline_buttons(panel) if b["text"] == A_MONTH)
    await cashier.click(A_MONTH)
    ask = await cashier.wait_message("Take")
    drop = next(b["callback_data"] for b in inline_buttons(ask) if b["text"] == "✖ Cancel")
    await cashier.click("✅ Taken")
    await cashier.wait_message("A member until")
    until = day((await ends_at(sessions, ann)).astimezone(program.program.zone))

    # The panel's offer pressed again: the month is sold, no money is asked for again.
    asked = len([m for m in cashier.messages if text_of(m).startswith("Take ")])
    await cashier.click(panel, offer)
    again = await cashier.wait_callback_answer()
    assert again.get("show_alert")
    assert again["text"] == (
        f"A month of City Club was already sold from this panel: membership until {until}. "
        "Do not take money for it again. For another month, scan the card again."
    )
    assert len([m for m in cashier.messages if text_of(m).startswith("Take ")]) == asked

    # Cancel on the money message after Taken: it says the month stays sold.
    await cashier.click(ask, drop, check=False)
    await cashier.wait_callback_answer()
    edited = await cashier.wait_for(
        lambda: (
            "recorded" in text_of(server.message(cashier.user_id, ask["message_id"]) or {})
            and server.message(cashier.user_id, ask["message_id"])
        )
    )
    assert text_of(edited) == (
        f"This month was recorded (membership until {until}), so it was not cancelled. A "
        "refund is the program owner's: /club_refund."
    )
    assert await payments(sessions) == [("till", D("29.00"))]

    # A new panel sells another month; its Cancel before Taken records nothing.
    await open_panel(cashier, ann)
    await cashier.click(ANOTHER)
    ask = await cashier.wait_message("Take")
    await cashier.click("✖ Cancel")
    await cashier.wait_for(
        lambda: (
            text_of(server.message(cashier.user_id, ask["message_id"]) or {})
            == "Not recorded: no month of the club was sold."
        )
    )
    assert await payments(sessions) == [("till", D("29.00"))]


async def test_a_yen_price_travels_in_whole_yen(engine: AsyncEngine, sessions: Sessions) -> None:
    data = copy.deepcopy(TEST_PROGRAM)
    data["program"]["currency"] = "JPY"
    data["club"] = {**CLUB, "price": "3000"}
    yen = parse_program(data)
    async with running_bot(engine, sessions, yen, admin_ids=[OWNER_ID]) as running:
        cashier, ann = running.user("Carl"), running.user("Ann")
        await hire(running, cashier, "coffee", "cashier")
        await join(ann)
        panel = await open_panel(cashier, ann)
        [button] = [b for b in inline_buttons(panel) if b["text"].startswith("⭐ City Club")]
        assert ClubSaleCb.unpack(button["callback_data"]).minor == 3000  # not 300000
        await cashier.click(button["text"])
        ask = await cashier.wait_message("Take")
        assert "3,000" in text_of(ask) and "3,000.00" not in text_of(ask)
        await cashier.click("✅ Taken")
        await cashier.wait_message("A member until")
        assert await payments(sessions) == [("till", D("3000"))]
