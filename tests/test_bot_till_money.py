"""Money typed at the till, end to end through the fake Bot API (and the use cases where a
clock is needed): the input rule, receipt keys per business day, "again?", one's own card,
/cancel after a sale, earn-only after a decline, timeout or blocked member, and the member's
notification of a sale paid partly with points."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.callbacks import EarnOnlyCb
from bot.workers.jobs import close_expired_requests
from db.ledger.models import AuditLog, Member, RedemptionRequest, Transaction
from db.rules.errors import OwnCard
from db.rules.program import Program
from db.usecases.members import find_by_telegram, register_member
from db.usecases.staff import accept_invite, create_invite
from db.usecases.till import request_redemption, till_sale
from tests.botharness import BotHarness
from tests.conftest import make_program
from tests.fakegram import UserClient, inline_buttons, text_of
from tests.till import EARN, REDEEM, card_photo, hire, join, open_panel, start_sale

Sessions = async_sessionmaker[AsyncSession]


async def sales(sessions: Sessions) -> list[tuple[Decimal, str | None, str]]:
    async with sessions() as s:
        rows = await s.execute(
            select(Transaction.amount, Transaction.receipt, Transaction.kind)
            .where(Transaction.kind.in_(("earn", "redeem")))
            .order_by(Transaction.id)
        )
        return [(r[0], r[1], r[2]) for r in rows]


async def balance_of(sessions: Sessions, user: UserClient) -> int:
    async with sessions() as s:
        member = await find_by_telegram(s, user.user_id)
    assert member is not None
    return member.balance


async def audit_actions(sessions: Sessions) -> list[str]:
    async with sessions() as s:
        return list((await s.execute(select(AuditLog.action).order_by(AuditLog.id))).scalars())


async def earn(cashier: UserClient, member: UserClient, typed: str) -> dict:
    await start_sale(cashier, member, EARN)
    sent = await cashier.send(typed)
    return await cashier.wait_message(
        lambda m: text_of(m).startswith("✅") and m["message_id"] > sent["message_id"]
    )


async def ask_for_points(
    cashier: UserClient, member: UserClient, amount: str, points: str
) -> None:
    await start_sale(cashier, member, REDEEM)
    await cashier.send(amount)
    await cashier.wait_message("How many points?")
    await cashier.send(points)


async def test_amount_rule_refuses_guesses_and_reads_currency_and_receipt(
    harness: BotHarness, sessions: Sessions
) -> None:
    cashier, ann = harness.user("Carl"), harness.user("Ann")
    await hire(harness, cashier, "coffee", "cashier")
    await join(ann)
    prompt = text_of(await start_sale(cashier, ann, EARN))
    assert "12,50" in prompt and "12.50 #A-1043" in prompt  # the prompt says the rule
    for bad in ("12 50", "8 42", "20 15", "1 250", "1e3", "12.505", "12.50 A-1043", "5 EUR"):
        await cashier.send(bad)
        refusal = text_of(await cashier.wait_message("is not an amount"))
        assert bad in refusal and "12.50 #A-1043" in refusal, bad
    assert await sales(sessions) == []
    await cashier.send("12.50 PLN")  # still in the dialog
    assert "PLN\u00a012.50" in text_of(await cashier.wait_message("✅"))
    await earn(cashier, ann, "5 zł #A-7")
    await earn(cashier, ann, "pln 8,40")
    assert await sales(sessions) == [
        (Decimal("12.50"), None, "earn"),
        (Decimal("5.00"), "A-7", "earn"),
        (Decimal("8.40"), None, "earn"),
    ]
    # 12.50 → 62, 5.00 → 25, 8.40 → 42 points at 5 %.
    assert await balance_of(sessions, ann) == 50 + 62 + 25 + 42


async def test_receipt_numbers_are_unique_per_partner_and_business_day(
    sessions: Sessions, program: Program
) -> None:
    warsaw = make_program(program={"timezone": "Europe/Warsaw"})
    async with sessions() as s:
        member = await register_member(s, warsaw, telegram_id=501, first_name="Ann")
        token = await create_invite(s, created_by=1, role="cashier", partner_slug="coffee")
        staff = await accept_invite(s, token, telegram_id=502)

        async def sell(at: datetime) -> bool:
            result = await till_sale(
                s,
                warsaw,
                staff,
                member_id=member.id,
                amount=Decimal("20"),
                dialog=f"d{at.timestamp()}",
                receipt="R-1",
                now=at,
            )
            return result.replayed

        # 22:30 and 23:30 UTC on 10 January are one UTC day but two days in Warsaw (UTC+1).
        evening = datetime(2026, 1, 10, 22, 30, tzinfo=UTC)
        assert await sell(evening) is False
        assert await sell(evening + timedelta(minutes=20)) is True  # same day: the same sale
        assert await sell(evening + timedelta(hours=1)) is False  # after midnight in Warsaw
        assert await sell(evening + timedelta(days=3)) is False
    assert len(await sales(sessions)) == 3


async def test_same_amount_to_same_member_within_minutes_asks_again(
    harness: BotHarness, sessions: Sessions
) -> None:
    cashier, ann = harness.user("Carl"), harness.user("Ann")
    await hire(harness, cashier, "coffee", "cashier")
    await join(ann)
    await earn(cashier, ann, "30")
    await start_sale(cashier, ann, EARN)
    await cashier.send("30")
    question = await cashier.wait_message("Post it again?")
    assert "PLN\u00a030.00 to this member in the last minute" in text_of(question)
    assert len(await sales(sessions)) == 1
    # A double tap on "Post again" posts one more sale, not two.
    taps = await asyncio.gather(
        cashier.click(question, inline_buttons(question)[0]["callback_data"], check=False),
        cashier.click(question, inline_buttons(question)[0]["callback_data"], check=False),
    )
    await cashier.wait_message("✅")
    for tap in taps:  # each press is answered once its handler is done
        await cashier.wait_callback_answer(tap)
    assert len(await sales(sessions)) == 2

    await start_sale(cashier, ann, EARN)
    await cashier.send("30,00 pln")
    question = await cashier.wait_message("Post it again?")
    await cashier.click("✖ Cancel")
    await harness.server.wait_for(
        lambda: (
            "Nothing was posted"
            in text_of(harness.server.message(cashier.user_id, question["message_id"]))
        )
    )
    await earn(cashier, ann, "31")  # another amount is not asked about
    assert [amount for amount, _r, _k in await sales(sessions)] == [
        Decimal("30.00"),
        Decimal("30.00"),
        Decimal("31.00"),
    ]
    assert (await audit_actions(sessions)).count("sale") == 3


async def test_staff_cannot_credit_or_redeem_on_their_own_card(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    carl = harness.user("Carl")
    await join(carl)
    await hire(harness, carl, "coffee", "cashier")
    await carl.send_photo(await card_photo(carl))
    assert "your own member card" in text_of(await carl.wait_message("own member card"))
    # The use cases refuse it too (a forged dialog, an API), and write the attempt down.
    async with sessions() as s:
        member = await find_by_telegram(s, carl.user_id)
        staff = await accept_invite(
            s,
            await create_invite(s, created_by=1, role="cashier", partner_slug="books"),
            telegram_id=carl.user_id,
        )
        assert member is not None
        with pytest.raises(OwnCard):
            await till_sale(s, program, staff, member_id=member.id, amount=Decimal(10), dialog="x")
        with pytest.raises(OwnCard):
            await request_redemption(
                s,
                program,
                staff,
                member_id=member.id,
                amount=Decimal(10),
                points=None,
                dialog="y",
                staff_chat_id=carl.user_id,
            )
    assert await sales(sessions) == []
    assert (await audit_actions(sessions)).count("own_card_refused") == 3
    async with sessions() as s:
        requests = await s.scalar(select(func.count()).select_from(RedemptionRequest))
    assert requests == 0
    assert await balance_of(sessions, carl) == 50


async def test_cancel_after_a_sale_says_what_was_posted(
    harness: BotHarness, sessions: Sessions
) -> None:
    cashier, ann = harness.user("Carl"), harness.user("Ann")
    await hire(harness, cashier, "coffee", "cashier")
    await join(ann)
    await earn(cashier, ann, "40")
    async with sessions() as s:
        sale = await s.scalar(select(Transaction.id).where(Transaction.kind == "earn"))
    await cashier.send("/cancel")
    said = text_of(await cashier.wait_message("cancel"))
    assert "Nothing was posted" not in said
    assert f"No. {sale}" in said and "PLN\u00a040.00" in said and "+200 points" in said
    assert f"/refund {sale} all" in said
    await cashier.send("/cancel")  # asked again: the same truth, not "nothing was posted"
    again = text_of(await cashier.wait_message("/refund"))
    assert "Nothing was posted" not in again and f"No. {sale}" in again

    await ask_for_points(cashier, ann, "10", "100")
    await ann.wait_message("Confirm?")
    await ann.click("✅ Confirm")
    await cashier.wait_message("The member confirmed")
    await cashier.send("/cancel")
    said = text_of(await cashier.wait_message("already posted"))
    assert "PLN\u00a010.00" in said and "100 points paid PLN\u00a01.00" in said
    assert "+45 points" in said

    # A dialog with nothing posted in it is still cancelled plainly.
    await start_sale(cashier, ann, EARN)
    await cashier.send("/cancel")
    await cashier.wait_message("Cancelled. Nothing was posted.")
    assert len(await sales(sessions)) == 2


async def test_earn_only_after_decline_or_timeout_posts_once(
    harness: BotHarness, sessions: Sessions
) -> None:
    cashier, ann = harness.user("Carl"), harness.user("Ann")
    await hire(harness, cashier, "coffee", "cashier")
    await join(ann)
    await ask_for_points(cashier, ann, "10 #R-5", "20")
    await ann.wait_message("Confirm?")
    await ann.click("✖ Decline")
    offer = await cashier.wait_message(lambda m: bool(inline_buttons(m)))
    assert "declined" in text_of(offer)
    (button,) = inline_buttons(offer)
    assert button["text"] == "🧾 Post PLN\u00a010.00 without points"
    taps = await asyncio.gather(  # a double tap
        cashier.click(offer, button["callback_data"], check=False),
        cashier.click(offer, button["callback_data"], check=False),
    )
    assert "+50 points" in text_of(await cashier.wait_message("✅"))
    for tap in taps:  # each press is answered once its handler is done
        await cashier.wait_callback_answer(tap)
    assert await sales(sessions) == [(Decimal("10.00"), "R-5", "earn")]
    assert await balance_of(sessions, ann) == 100
    # The offer lost its button once the sale was posted.
    shown = harness.server.message(cashier.user_id, offer["message_id"])
    assert "without points" not in str(shown.get("reply_markup"))

    # Unanswered: the expiry tells the cashier, with the same button.
    await ask_for_points(cashier, ann, "12", "20")
    await cashier.wait_message("Waiting for the member")
    await ann.wait_message("Confirm?")
    await asyncio.sleep(0.2)  # the request's message ids are noted after the send
    later = datetime.now(UTC) + timedelta(minutes=3)
    assert await close_expired_requests(harness.runtime, now=later) == 1
    offer = await cashier.wait_message(lambda m: "without points" in str(m.get("reply_markup")))
    assert "did not answer in time" in text_of(offer)
    await cashier.click("🧾 Post PLN\u00a012.00 without points")
    await cashier.wait_message("+60 points")
    assert [a for a, _r, _k in await sales(sessions)] == [Decimal("10.00"), Decimal("12.00")]
    # Someone else's button (forged) posts nothing.
    eve = harness.user("Eve")
    await hire(harness, eve, "coffee", "cashier")
    request_id = EarnOnlyCb.unpack(inline_buttons(offer)[0]["callback_data"]).request
    forged = await eve.click(offer, EarnOnlyCb(request=request_id).pack(), check=False)
    assert "closed" in (await eve.wait_callback_answer(forged))["text"]
    assert len(await sales(sessions)) == 2


async def test_member_who_blocked_the_bot_is_reported_at_once(
    harness: BotHarness, sessions: Sessions
) -> None:
    cashier, ann, bob = harness.user("Carl"), harness.user("Ann"), harness.user("Bob")
    await hire(harness, cashier, "coffee", "cashier")
    await join(ann)
    await join(bob)
    photo = await card_photo(ann)

    # Known unreachable: Ann blocked the bot, and the bot was told.
    await ann.block()

    async def unreachable(user: UserClient) -> bool:
        async with sessions() as s:
            return not await s.scalar(
                select(Member.reachable).where(Member.telegram_id == user.user_id)
            )

    for _ in range(100):
        if await unreachable(ann):
            break
        await asyncio.sleep(0.02)
    assert await unreachable(ann)
    await start_sale(cashier, photo, REDEEM)
    await cashier.send("10")
    await cashier.wait_message("How many points?")
    await cashier.send("20")
    await cashier.wait_message("cannot confirm in Telegram")
    assert not any("Waiting for the member" in text_of(m) for m in cashier.messages)
    await cashier.click("🧾 Post PLN\u00a010.00 without points")
    await cashier.wait_message("✅")
    assert await balance_of(sessions, ann) == 100

    # Not yet known: Telegram refuses the confirmation request with 403.
    bob_card = await card_photo(bob)
    harness.server.block(bob.user_id)  # sends to Bob now fail; the bot was not told
    await start_sale(cashier, bob_card, REDEEM)
    await cashier.send("8")
    await cashier.wait_message("How many points?")
    await cashier.send("20")
    await cashier.wait_message(
        lambda m: "cannot confirm in Telegram" in text_of(m) and bool(inline_buttons(m))
    )
    assert await unreachable(bob)
    async with sessions() as s:
        statuses = list((await s.execute(select(RedemptionRequest.status))).scalars())
    assert statuses == ["unreachable", "unreachable"]
    assert "redeem_unreachable" in await audit_actions(sessions)
    await cashier.click("🧾 Post PLN\u00a08.00 without points")
    await cashier.wait_message("+40 points")
    assert await balance_of(sessions, bob) == 90


async def test_notification_of_a_sale_paid_partly_with_points_states_the_whole(
    harness: BotHarness, sessions: Sessions
) -> None:
    cashier, ann = harness.user("Carl"), harness.user("Ann")
    await hire(harness, cashier, "coffee", "cashier")
    await join(ann)
    await earn(cashier, ann, "40")
    await ann.wait_message("+200 points for your purchase of PLN\u00a040.00")
    await ask_for_points(cashier, ann, "4", "200")
    await ann.wait_message("Confirm?")
    await ann.click("✅ Confirm")
    note = text_of(await ann.wait_message("of your PLN\u00a04.00 purchase"))
    whole = "200 points paid PLN\u00a02.00 of your PLN\u00a04.00 purchase at Bean There Coffee"
    assert whole in note
    assert "+10 points earned on the PLN\u00a02.00 you paid" in note
    assert "Balance: 60 points." in note


async def test_a_new_card_always_opens_a_new_sale(harness: BotHarness, sessions: Sessions) -> None:
    """After a refused amount the cashier shows the next customer's card: the next amount
    goes to that customer, never to the one before (by photo or by typed number)."""
    cashier, ann, bob = harness.user("Carl"), harness.user("Ann"), harness.user("Bob")
    await hire(harness, cashier, "coffee", "cashier")
    await join(ann)
    await join(bob)
    await earn(cashier, ann, "30 #z-1")
    await start_sale(cashier, bob, EARN)
    await cashier.send("30 #Z-1")  # the receipt is Ann's sale's: the same, read in capitals
    taken = text_of(await cashier.wait_message("already posted here today"))
    assert "Receipt Z-1" in taken
    await cashier.send("12 50")
    await cashier.wait_message("is not an amount")
    panel = text_of(await open_panel(cashier, ann))  # the next customer
    assert panel.startswith("👤 Ann")
    await cashier.click(EARN)
    await cashier.wait_message("Enter the purchase amount")
    await cashier.send("10")
    assert text_of(await cashier.wait_message("PLN\u00a010.00")).startswith("✅ Ann: ")
    await start_sale(cashier, bob, EARN)
    async with sessions() as s:
        ann_member = await find_by_telegram(s, ann.user_id)
    assert ann_member is not None
    await cashier.send(ann_member.card_number[:4] + " " + ann_member.card_number[4:])
    assert text_of(await cashier.wait_message("Points can pay up to")).startswith("👤 Ann")
    assert await balance_of(sessions, bob) == 50  # nothing ever went to Bob
    assert await balance_of(sessions, ann) == 50 + 150 + 50


async def test_points_a_request_holds_cannot_be_asked_for_again(
    harness: BotHarness, sessions: Sessions
) -> None:
    """A request holds the member's points from the moment it is sent: a second cashier is
    offered only what is left (Max says so) and cannot ask for more; the first request's
    confirmation then spends the held points."""
    carl, dora, ann = harness.user("Carl"), harness.user("Dora"), harness.user("Ann")
    await hire(harness, carl, "coffee", "cashier")
    await hire(harness, dora, "books", "cashier")
    await join(ann)  # 50 points
    await ask_for_points(carl, ann, "10", "40")
    await ann.wait_message("Bean There Coffee asks")
    await start_sale(dora, ann, REDEEM)
    await dora.send("10")
    offer = await dora.wait_message("How many points?")
    assert "Up to 10 points" in text_of(offer), text_of(offer)
    assert inline_buttons(offer)[0]["text"] == "Max: 10"
    await dora.send("40")
    await dora.wait_message("Not enough points")
    assert not any("Chapter One Books asks" in text_of(m) for m in ann.messages)
    coffee = next(m for m in ann.messages if "Bean There Coffee asks" in text_of(m))
    await ann.click(coffee, inline_buttons(coffee)[0]["callback_data"])
    await carl.wait_message("The member confirmed")
    async with sessions() as s:
        balance, held = (
            await s.execute(text("SELECT balance, held FROM accounts WHERE kind = 'member'"))
        ).one()
    assert (balance, held) == (50 - 40 + 48, 0)  # 9.60 paid in money earns 48 points


async def test_the_members_refund_news_says_the_money_back(
    harness: BotHarness, sessions: Sessions
) -> None:
    """A sale paid partly with points whose earned points were spent, refunded in full: the
    member reads the money they get back and why it is less than the sale."""
    carl, boss, ann = harness.user("Carl"), harness.user("Boss"), harness.user("Ann")
    await hire(harness, carl, "coffee", "cashier")
    await hire(harness, boss, "coffee", "manager")
    await join(ann)  # 50 points
    await ask_for_points(carl, ann, "100", "50")  # 0.50 in points, 99.50 in money: +497
    await ann.wait_message("Confirm?")
    await ann.click("✅ Confirm")
    await carl.wait_message("The member confirmed")
    async with sessions() as s:
        sale = await s.scalar(select(func.max(Transaction.id)))
    await ask_for_points(carl, ann, "20", "497")  # spends every point that sale earned
    ask = await ann.wait_message(lambda m: "Confirm?" in text_of(m) and "4.97" in text_of(m))
    await ann.click(ask, inline_buttons(ask)[0]["callback_data"])
    await carl.wait_message(lambda m: "customer pays PLN\u00a015.03" in text_of(m))
    ann.mark_all_seen()
    await boss.send(f"/refund {sale} all broken cup")
    said = text_of(await boss.wait_message("give back"))
    news = text_of(await ann.wait_message("Refund of"))
    back = said.split("give back ")[1].split(" in money")[0]
    assert f"{back} back to you in money" in news
    assert "already spent" in news and "kept from the money back" in news


async def test_refund_takes_the_number_as_shift_shows_it_and_asks_for_the_reason(
    harness: BotHarness, sessions: Sessions
) -> None:
    cashier, boss, ann = harness.user("Carl"), harness.user("Boss"), harness.user("Ann")
    await hire(harness, cashier, "coffee", "cashier")
    await hire(harness, boss, "coffee", "manager")
    await join(ann)
    await earn(cashier, ann, "40")
    async with sessions() as s:
        sale = await s.scalar(select(Transaction.id).where(Transaction.kind == "earn"))
    await cashier.send("/shift")
    assert f"No. {sale}" in text_of(await cashier.wait_message("Your shift today"))
    await boss.send(f"/refund No. {sale} all")
    assert "reason" in text_of(await boss.wait_message("Please give a reason"))
    await boss.send(f"/refund No. {sale} 10 cold coffee")
    done = text_of(await boss.wait_message("Refunded"))
    assert f"of sale No. {sale}" in done and "give back PLN\u00a010.00 in money" in done


async def test_the_member_is_told_when_a_sale_lifts_their_tier(
    harness: BotHarness, sessions: Sessions
) -> None:
    cashier, ann = harness.user("Carl"), harness.user("Ann")
    await hire(harness, cashier, "coffee", "cashier")
    await join(ann)
    await earn(cashier, ann, "999")
    first = text_of(await ann.wait_message("Bean There Coffee"))
    assert "You reached" not in first
    await earn(cashier, ann, "20")  # 1,019.00 in all: Silver from 1,000.00
    news = text_of(await ann.wait_message(lambda m: "PLN\u00a020.00" in text_of(m)))
    assert "🏅 You reached Silver: from now on your points × 1.5." in news


async def test_cancel_withdraws_a_request_the_member_has_not_answered(
    harness: BotHarness, sessions: Sessions
) -> None:
    """The customer pays another way: /cancel withdraws the request, so a late Confirm
    charges nothing, and the sale can still be posted without points."""
    cashier, ann = harness.user("Carl"), harness.user("Ann")
    await hire(harness, cashier, "coffee", "cashier")
    await join(ann)
    await ask_for_points(cashier, ann, "10", "20")
    ask = await ann.wait_message("Confirm?")
    await cashier.wait_message("Waiting for the member")
    for _attempt in range(100):  # the request's messages are noted just after they go out
        async with sessions() as s:
            noted = await s.scalar(select(RedemptionRequest.member_message_id))
        if noted:
            break
        await asyncio.sleep(0.02)
    await cashier.send("/cancel")
    told = await cashier.wait_message(
        lambda m: "withdrew the request" in text_of(m) and bool(inline_buttons(m))
    )
    assert "Nothing was charged" in text_of(told)
    await harness.server.wait_for(
        lambda: (
            "withdrew this request"
            in text_of(harness.server.message(ann.user_id, ask["message_id"]))
        )
    )
    late = await ann.click(ask, inline_buttons(ask)[0]["callback_data"], check=False)
    assert "already closed" in (await ann.wait_callback_answer(late))["text"]
    assert await sales(sessions) == []
    await cashier.click(told, inline_buttons(told)[0]["callback_data"])
    await cashier.wait_message("+50 points")
    assert await sales(sessions) == [(Decimal("10.00"), None, "earn")]


async def test_no_free_points_is_no_dead_end(harness: BotHarness, sessions: Sessions) -> None:
    """A member whose points cannot pay anything: the cashier is told at once and posts the
    sale without points in one tap (no prompt that only refuses)."""
    cashier, ann = harness.user("Carl"), harness.user("Ann")
    await hire(harness, cashier, "coffee", "cashier")
    await join(ann)
    await ask_for_points(cashier, ann, "10", "50")  # all 50 points held by this request
    await ann.wait_message("Confirm?")
    await start_sale(cashier, ann, REDEEM)
    await cashier.send("8")
    offer = await cashier.wait_message("none free")
    assert "Post PLN\u00a08.00 without points?" in text_of(offer)
    await cashier.click("🧾 Post without points")
    assert "+40 points" in text_of(await cashier.wait_message("PLN\u00a08.00"))
    assert await sales(sessions) == [(Decimal("8.00"), None, "earn")]
