"""Staff mode at the till, end to end through the fake Bot API server. After each test the
ledger's invariants are checked (the `sessions` fixture)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.callbacks import RedeemCb, TillCb
from bot.handlers.staff import till as till_handlers
from bot.workers.jobs import close_expired_requests
from db.ledger.models import AuditLog, RedemptionRequest, Transaction
from db.rules.program import Program
from db.usecases import till as till_usecases
from db.usecases.members import find_by_telegram
from tests.botharness import BotHarness
from tests.fakegram import UserClient, inline_buttons, text_of
from tests.till import (
    EARN,
    REDEEM,
    card_link_payload,
    card_photo,
    hire,
    join,
    open_panel,
    start_sale,
)

Sessions = async_sessionmaker[AsyncSession]
D40, D478 = Decimal("40.00"), Decimal("4.78")


async def balance_of(sessions: Sessions, user: UserClient) -> int:
    async with sessions() as s:
        member = await find_by_telegram(s, user.user_id)
    assert member is not None
    return member.balance


async def count_sales(sessions: Sessions) -> int:
    async with sessions() as s:
        return int(
            await s.scalar(select(func.count()).where(Transaction.kind.in_(("earn", "redeem"))))
            or 0
        )


async def test_till_day_one(harness: BotHarness, sessions: Sessions) -> None:
    """Invite → cashier joins → member shows card → cashier photographs the QR → earn →
    member notified → sale with points, confirmed by the member → balances exact."""
    cashier, ann = harness.user("Carl"), harness.user("Ann")
    await hire(harness, cashier, "coffee", "cashier")
    await join(ann)

    panel = text_of(await open_panel(cashier, ann))
    assert "Ann" in panel and "Bronze" in panel and "50 points" in panel
    await cashier.click(EARN)
    await cashier.wait_message("Enter the purchase amount")
    await cashier.send("40,00")
    done = text_of(await cashier.wait_message("✅"))
    assert "+200 points" in done and "250 points" in done
    note = text_of(await ann.wait_message("Bean There Coffee"))
    assert "+200 points" in note and "Balance: 250 points." in note
    assert await balance_of(sessions, ann) == 250

    # Second sale: the camera opens the card's deep link.
    await start_sale(cashier, ann, REDEEM, by_link=True)
    await cashier.send("10")
    await cashier.wait_message("How many points? Up to 250 points")
    await cashier.send("max")
    await cashier.wait_message("Waiting for the member")
    ask = await ann.wait_message("Confirm?")
    assert "PLN\u00a02.50" in text_of(ask) and "250 points" in text_of(ask)
    await ann.click("✅ Confirm")
    told = text_of(await cashier.wait_message("The member confirmed"))
    assert "The customer pays PLN\u00a07.50" in told and "+37 points" in told
    assert await balance_of(sessions, ann) == 250 - 250 + 37

    await cashier.send("/shift")
    shift = text_of(await cashier.wait_message("Your shift today"))
    assert "Total: 2 operations" in shift and "+237" in shift and "−250" in shift
    assert "sales PLN\u00a050.00 (PLN\u00a047.50 of it in money)" in shift
    async with sessions() as s:
        actions = (await s.execute(select(AuditLog.action).order_by(AuditLog.id))).scalars().all()
    assert actions == [
        "staff_invite",
        "staff_join",
        "lookup",
        "sale",
        "lookup",
        "redeem_request",
        "redeem_confirm",
    ]


async def test_every_bad_amount_is_refused_and_changes_nothing(
    harness: BotHarness, sessions: Sessions
) -> None:
    cashier, ann = harness.user("Carl"), harness.user("Ann")
    await hire(harness, cashier, "coffee", "cashier")
    await join(ann)
    await start_sale(cashier, ann)
    for bad, answer in [
        ("0", "not an amount"),
        ("-5", "not an amount"),
        ("abc", "not an amount"),
        ("12.345", "not an amount"),
        ("1e3", "not an amount"),
        ("5000.01", "more than PLN\u00a05,000.00, the largest purchase"),
        ("99999999999999999999", "largest purchase"),
    ]:
        await cashier.send(bad)
        assert answer in text_of(await cashier.wait_message(answer)), bad
    assert await count_sales(sessions) == 0
    await cashier.send("12.50 #R-77")  # still in the dialog: a good amount goes through
    assert "+62 points" in text_of(await cashier.wait_message("✅"))
    assert await count_sales(sessions) == 1


async def test_unreadable_photo_and_bad_card_number(harness: BotHarness) -> None:
    from tests.fakegram import make_png

    cashier, ann = harness.user("Carl"), harness.user("Ann")
    await hire(harness, cashier, "coffee", "cashier")
    await join(ann)
    await cashier.send_photo(make_png(64, 64))
    await cashier.wait_message("could not read a member card")
    await cashier.send("1234 5678 9012")
    await cashier.wait_message("card number is not valid")


async def test_card_number_typed_and_receipt_key_posts_once(
    harness: BotHarness, sessions: Sessions
) -> None:
    cashier, ann = harness.user("Carl"), harness.user("Ann")
    await hire(harness, cashier, "coffee", "cashier")
    await join(ann)
    async with sessions() as s:
        number = (await find_by_telegram(s, ann.user_id)).card_number  # type: ignore[union-attr]
    for _ in range(2):  # the same receipt entered twice: one posting
        await cashier.send(f"{number[:4]} {number[4:8]} {number[8:]}")
        await cashier.wait_message("Points can pay up to")
        await cashier.click(EARN)
        await cashier.wait_message("Enter the purchase amount")
        await cashier.send("20 #R-1")
        await cashier.wait_message("✅")
    assert any("already posted" in text_of(m) for m in cashier.messages)
    assert await count_sales(sessions) == 1
    assert await balance_of(sessions, ann) == 150


async def test_two_cashiers_credit_one_member_at_once(
    harness: BotHarness, sessions: Sessions
) -> None:
    ann = harness.user("Ann")
    await join(ann)
    payload = await card_link_payload(ann)
    cashiers = [harness.user(f"C{i}") for i in range(2)]
    for cashier, partner in zip(cashiers, ["coffee", "books"], strict=True):
        await hire(harness, cashier, partner, "cashier")
        await cashier.send("/start " + payload)
        await cashier.wait_message("Points can pay up to")
        await cashier.click(EARN)
        await cashier.wait_message("Enter the purchase amount")
    await asyncio.gather(*(c.send("100") for c in cashiers))
    for cashier in cashiers:
        await cashier.wait_message("✅")
    assert await balance_of(sessions, ann) == 50 + 500 + 300


async def test_redelivered_amount_update_posts_once(
    harness: BotHarness, sessions: Sessions
) -> None:
    cashier, ann = harness.user("Carl"), harness.user("Ann")
    await hire(harness, cashier, "coffee", "cashier")
    await join(ann)
    await start_sale(cashier, ann)
    sent = await cashier.send("30")
    # Telegram delivering the very same message again (a retried webhook, say).
    harness.server.push_update({"message": sent})
    await cashier.wait_message("✅")
    await asyncio.sleep(0.3)
    assert await count_sales(sessions) == 1
    assert await balance_of(sessions, ann) == 200


def _request_id(message: dict) -> str:
    button = inline_buttons(message)[0]
    return RedeemCb.unpack(button["callback_data"]).request


async def _ask_for_points(cashier: UserClient, ann: UserClient, points: str) -> dict:
    await start_sale(cashier, ann, REDEEM)
    await cashier.send("10")
    await cashier.wait_message("How many points?")
    await cashier.send(points)
    await cashier.wait_message("Waiting for the member")
    return await ann.wait_message("Confirm?")


async def test_the_waiting_text_says_how_long_the_request_lasts(
    harness: BotHarness, sessions: Sessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The minutes the cashier is told are the request's lifetime, REQUEST_TTL."""
    monkeypatch.setattr(till_usecases, "REQUEST_TTL", timedelta(minutes=5))
    monkeypatch.setattr(till_handlers, "REQUEST_TTL", till_usecases.REQUEST_TTL)
    cashier, ann = harness.user("C"), harness.user("Ann")
    await hire(harness, cashier, "coffee", "cashier")
    await join(ann)
    await _ask_for_points(cashier, ann, "20")
    waiting = [text_of(m) for m in cashier.messages if "Waiting for the member" in text_of(m)]
    assert len(waiting) == 1 and waiting[0].endswith("The request lasts 5 minutes.")
    async with sessions() as s:
        (lifetime,) = (
            await s.execute(select(RedemptionRequest.expires_at - RedemptionRequest.created_at))
        ).one()
    assert lifetime == timedelta(minutes=5)


async def test_max_offered_is_what_the_request_takes(
    harness: BotHarness, sessions: Sessions
) -> None:
    """The till's "Max" and the request's "as many as allowed" are one computation
    (db/usecases/till.py allowance): here the purchase's share bounds it, not the balance."""
    cashier, ann = harness.user("C"), harness.user("Ann")
    await hire(harness, cashier, "coffee", "cashier")
    await join(ann)  # 50 welcome points
    await start_sale(cashier, ann, REDEEM)
    await cashier.send("0.60")  # 50 % of PLN 0.60 is 30 points
    offer = await cashier.wait_message("How many points? Up to 30 points")
    assert [b["text"] for b in inline_buttons(offer)] == ["Max: 30", "✖ Cancel"]
    await cashier.click("Max: 30")
    ask = text_of(await ann.wait_message("Confirm?"))
    assert "30 points" in ask


async def test_member_confirms_twice_declines_or_lets_it_expire(
    harness: BotHarness, sessions: Sessions
) -> None:
    cashier, ann = harness.user("Carl"), harness.user("Ann")
    await hire(harness, cashier, "coffee", "cashier")
    await join(ann)

    request = await _ask_for_points(cashier, ann, "20")
    await ann.click("✅ Confirm")
    await cashier.wait_message("The member confirmed")
    again = await ann.click(
        request, RedeemCb(request=_request_id(request), ok=True).pack(), check=False
    )
    assert "already closed" in (await ann.wait_callback_answer(again))["text"]
    # 10.00 with 20 points (0.20): 9.80 paid earns floor(49.0) = 49 points.
    assert await balance_of(sessions, ann) == 50 - 20 + 49

    await _ask_for_points(cashier, ann, "10")
    await ann.click("✖ Decline")
    await cashier.wait_message("The member declined")
    assert await balance_of(sessions, ann) == 79

    late = await _ask_for_points(cashier, ann, "10")

    async def messages_noted() -> bool:
        async with sessions() as s:
            noted = await s.scalar(
                select(RedemptionRequest.member_message_id).where(
                    RedemptionRequest.public_id == _request_id(late)
                )
            )
        return noted is not None

    for _ in range(100):
        if await messages_noted():
            break
        await asyncio.sleep(0.02)
    later = datetime.now(UTC) + timedelta(minutes=3)
    expired = await close_expired_requests(harness.runtime, now=later)
    assert expired == 1
    await cashier.wait_message("did not answer in time")
    await harness.server.wait_for(
        lambda: "expired" in text_of(harness.server.message(ann.user_id, late["message_id"]))
    )
    answer = await ann.click(
        late, RedeemCb(request=_request_id(late), ok=True).pack(), check=False
    )
    assert "already closed" in (await ann.wait_callback_answer(answer))["text"]
    assert await balance_of(sessions, ann) == 79
    assert await count_sales(sessions) == 1


async def test_forged_callbacks_change_nothing(harness: BotHarness, sessions: Sessions) -> None:
    cashier, ann, eve = harness.user("Carl"), harness.user("Ann"), harness.user("Eve")
    await hire(harness, cashier, "coffee", "cashier")
    await join(ann)
    await join(eve)
    request = await _ask_for_points(cashier, ann, "30")
    request_id = _request_id(request)
    # Eve forges Ann's confirmation, and a till button.
    forged = await eve.click(request, RedeemCb(request=request_id, ok=True).pack(), check=False)
    assert "already closed" in (await eve.wait_callback_answer(forged))["text"]
    till = await eve.click(request, TillCb(action="earn", dialog=request_id).pack(), check=False)
    assert "no longer active" in (await eve.wait_callback_answer(till))["text"]
    assert await balance_of(sessions, ann) == 50
    async with sessions() as s:
        status = await s.scalar(
            select(RedemptionRequest.status).where(RedemptionRequest.public_id == request_id)
        )
    assert status == "pending"  # Ann can still answer it herself
    await ann.click("✅ Confirm")
    await cashier.wait_message("The member confirmed")


async def test_refunds_by_managers_of_the_right_partner_only(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    cashier, coffee_boss, books_boss = harness.user("C"), harness.user("M1"), harness.user("M2")
    ann = harness.user("Ann")
    await hire(harness, cashier, "coffee", "cashier")
    await hire(harness, coffee_boss, "coffee", "manager")
    await hire(harness, books_boss, "books", "manager")
    await join(ann)
    await start_sale(cashier, ann)
    await cashier.send("40")
    await cashier.wait_message("✅")
    async with sessions() as s:
        sale = await s.scalar(select(Transaction.id).where(Transaction.kind == "earn"))

    await books_boss.send(f"/refund {sale} all broken cup")
    await books_boss.wait_message("belongs to another partner")
    await cashier.send(f"/refund {sale} all broken cup")
    await cashier.wait_message(lambda m: "Refunded" not in text_of(m))
    assert await balance_of(sessions, ann) == 250

    await coffee_boss.send(f"/refund {sale} 10.00 broken cup")
    done = text_of(await coffee_boss.wait_message("Refunded"))
    assert "taken back: 50" in done and "give back PLN\u00a010.00 in money" in done
    assert done.count("PLN") == 2  # the sum refunded and the one figure to hand back
    assert "Refund of PLN\u00a010.00" in text_of(await ann.wait_message("Refund"))
    assert await balance_of(sessions, ann) == 200
    await coffee_boss.send(f"/refund {sale} 31 broken cup")
    await coffee_boss.wait_message("left to refund")
    await coffee_boss.send("/today")
    today = text_of(await coffee_boss.wait_message("Today"))
    assert "Sales to members: 1 (1 member), PLN\u00a040.00" in today
    assert "Sales refunded: PLN\u00a010.00" in today


async def test_revoked_cashier_loses_the_till(harness: BotHarness, sessions: Sessions) -> None:
    cashier, ann = harness.user("Carl"), harness.user("Ann")
    await hire(harness, cashier, "coffee", "cashier")
    await join(ann)
    panel = await open_panel(cashier, ann)
    owner = harness.owner()
    await owner.send("/staff_list")
    listing = text_of(await owner.wait_message("Staff"))
    staff_id = listing.split("\n")[1].split(":")[0]
    await owner.send(f"/staff_revoke {staff_id}")
    await owner.wait_message("Revoked")
    clicked = await cashier.click(panel, inline_buttons(panel)[0]["callback_data"])
    assert "no longer staff" in (await cashier.wait_callback_answer(clicked))["text"]
    # Told what happened and what to do, not to join as a member.
    await cashier.send_photo(await card_photo(ann))
    told = text_of(await cashier.wait_message("no longer staff"))
    assert "cashier · Bean There Coffee" in told and "owner" in told
    await cashier.send("12.50")
    await cashier.wait_message("no longer staff")
    assert not [m for m in cashier.messages if "not a member yet" in text_of(m)]
    async with sessions() as s:
        lookups = await s.scalar(select(func.count()).where(AuditLog.action == "lookup"))
    assert lookups == 1


async def test_owner_adjusts_points_and_reads_the_audit_log(
    harness: BotHarness, sessions: Sessions
) -> None:
    ann, owner, stranger = harness.user("Ann"), harness.owner(), harness.user("Eve")
    await join(ann)
    async with sessions() as s:
        number = (await find_by_telegram(s, ann.user_id)).card_number  # type: ignore[union-attr]
    await stranger.send(f"/adjust {number} +1000 because")
    await stranger.wait_message("/adjust is for: owner")
    await owner.send(f"/adjust {number} +25 birthday gift")
    await owner.wait_message("Balance: 75 points")
    assert "birthday gift" in text_of(await ann.wait_message("birthday"))
    await owner.send(f"/adjust {number} -100 typo")
    await owner.wait_message("Not enough points")
    await owner.send("/audit")
    log = text_of(await owner.wait_message("staff actions"))
    assert "adjust" in log and "birthday gift" in log
    assert await balance_of(sessions, ann) == 75


async def test_refund_after_the_points_were_spent_names_one_sum_of_cash(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    """A sale paid partly with points whose earned points the member spent: the refund goes
    through, takes back what is there and names one sum of cash to hand back."""
    from db.usecases.purchases import Sale, record_sale

    boss, ann = harness.user("Mia"), harness.user("Ann")
    await hire(harness, boss, "coffee", "manager")
    await join(ann)
    async with sessions() as s:
        member = await find_by_telegram(s, ann.user_id)
        assert member is not None
        sale = await record_sale(
            s,
            program,
            Sale(member_id=member.id, partner="coffee", amount=D40, redeem_points=10, key="s"),
        )
        await record_sale(
            s,
            program,
            Sale(member_id=member.id, partner="books", amount=D478, redeem_points=239, key="x"),
        )
    await boss.send(f"/refund {sale.transaction_id} all returned")
    done = text_of(await boss.wait_message("Refunded"))
    assert "give back PLN\u00a038.08 in money" in done
    assert "returned to the member: 10; taken back: 17" in done
    assert "182 points" in done and "PLN\u00a01.82" in done
    assert "Not enough points" not in done
    assert await balance_of(sessions, ann) == 0


async def test_revoking_a_cashier_closes_their_pending_requests(
    harness: BotHarness, sessions: Sessions
) -> None:
    cashier, ann = harness.user("Carl"), harness.user("Ann")
    await hire(harness, cashier, "coffee", "cashier")
    await join(ann)
    request = await _ask_for_points(cashier, ann, "30")
    owner = harness.owner()
    await owner.send("/staff_list")
    staff_id = text_of(await owner.wait_message("Staff")).split("\n")[1].split(":")[0]
    await owner.send(f"/staff_revoke {staff_id}")
    await owner.wait_message("Revoked")
    confirm = await ann.click(request, RedeemCb(request=_request_id(request), ok=True).pack())
    assert "already closed" in (await ann.wait_callback_answer(confirm))["text"]
    assert await balance_of(sessions, ann) == 50
    assert await count_sales(sessions) == 0
    async with sessions() as s:
        status = await s.scalar(
            select(RedemptionRequest.status).where(
                RedemptionRequest.public_id == _request_id(request)
            )
        )
    assert status == "cancelled"


async def test_a_sale_whose_dialog_was_ended_meanwhile_is_closed_not_a_failure(
    harness: BotHarness, sessions: Sessions
) -> None:
    """Updates of one chat are handled at the same time (polling hands them to tasks; a
    webhook takes several at once): here /cancel ends the sale while the press that chose
    it waits for Telegram, which then asks for the amount of a dialog that no longer names
    its member. The amount is refused as a closed sale, as a stale button is, not met with
    "something went wrong" (found by the chaos soak, benchmarks/chaos)."""
    cashier, ann = harness.user("Carl"), harness.user("Ann")
    await hire(harness, cashier, "coffee", "cashier")
    await join(ann)
    await open_panel(cashier, ann)
    harness.server.delay("answerCallbackQuery", 1.0, count=1)  # the press waits for Telegram
    await cashier.click(EARN)
    await harness.server.wait_for(lambda: harness.server.calls("answerCallbackQuery"))
    await cashier.send("/cancel")
    await cashier.wait_message("Cancelled. Nothing was posted.")
    await cashier.wait_message("Enter the purchase amount")  # the press, finishing
    await cashier.send("12.50")
    await cashier.wait_message("This sale is closed. Scan the card again.")
    assert not [m for m in cashier.messages if "went wrong" in text_of(m)]
    assert await count_sales(sessions) == 0
