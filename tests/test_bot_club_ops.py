"""The club's operations end to end, through the fake Bot API: the daily job's notices as
members read them, the club's lines in /stats, the "club members" segment in the campaign
builder, and the owner's /club_refund (Stars refunded by Telegram, a refusal recording
nothing, card and till payments recorded, a second press changing nothing). Payments are
recorded directly (db.usecases.club.record_payment): paying is tested elsewhere."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from babel.dates import format_date
from prometheus_client import REGISTRY
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.callbacks import ClubRefundCb
from bot.workers.jobs import tell_club
from db.ledger.models import (
    AuditLog,
    ClubMembership,
    ClubPayment,
    ClubUnclaimed,
    Notice,
    Outbox,
)
from db.queries.club import membership
from db.queries.wallet import set_marketing_consent
from db.rules.cards import format_card_number
from db.rules.program import CLUB_PERIOD, Program, parse_program
from db.usecases.adjust import adjust
from db.usecases.club import ClubPaid, Payment, record_payment
from db.usecases.members import find_by_telegram
from tests.botharness import BotHarness
from tests.conftest import TEST_PROGRAM
from tests.fakegram import UserClient, inline_buttons, text_of
from tests.till import join

D = Decimal
Sessions = async_sessionmaker[AsyncSession]
DAY = timedelta(days=1)
NBSP = "\u00a0"


@pytest.fixture
def program(request: pytest.FixtureRequest) -> Program:
    """The test program with a club (without one where a test says `NO_CLUB`)."""
    data = copy.deepcopy(TEST_PROGRAM)
    param = getattr(request, "param", True)
    if param:
        data["club"] = {
            "name": "City Club",
            "stars_per_month": 250,
            "price": "29.00",
            "multiplier": "1.5",
            "discount_percent": "5",
            **(param if isinstance(param, dict) else {}),
        }
    return parse_program(data)


NO_CLUB = pytest.mark.parametrize("program", [False], indirect=True, ids=["no club"])
WELCOME = pytest.mark.parametrize(
    "program", [{"welcome_points": 500}], indirect=True, ids=["welcome points"]
)


def local_day(moment: datetime, program: Program) -> str:
    return format_date(moment.astimezone(program.program.zone), "medium", locale="en_GB")


async def member_of(sessions: Sessions, user: UserClient) -> Any:
    async with sessions() as s:
        member = await find_by_telegram(s, user.user_id)
    assert member is not None
    return member


async def pay(
    sessions: Sessions,
    program: Program,
    member_id: int,
    method: str,
    charge: str,
    at: datetime,
    *,
    recurring: bool = False,
) -> ClubPaid:
    """A payment recorded as the bot records it (`recurring`: Telegram's renewal of a
    Stars subscription)."""
    if method == "stars":
        payment = Payment(
            member_id,
            charge,
            "stars",
            "XTR",
            D(250),
            at,
            until=at + CLUB_PERIOD,
            renews=True,
            recurring=recurring,
        )
    elif method == "card":
        payment = Payment(
            member_id, charge, "card", "PLN", D("29.00"), at, provider_charge_id="pv-7"
        )
    else:
        payment = Payment(member_id, charge, "till", "PLN", D("29.00"), at, partner_id=1)
    async with sessions() as s:
        return await record_payment(s, program, payment)


async def count(sessions: Sessions, what: Any, *where: Any) -> int:
    async with sessions() as s:
        return int(await s.scalar(select(func.count()).select_from(what).where(*where)) or 0)


# --------------------------------------------------------------------------- the daily job


async def test_the_member_is_told_once_before_and_once_after_the_end(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    ann = harness.user("Ann")
    await join(ann)
    member = await member_of(sessions, ann)
    now = datetime.now(UTC)
    paid = await pay(sessions, program, member.id, "till", "till:1", now - CLUB_PERIOD + 2 * DAY)

    assert await tell_club(harness.runtime, now=now) == 1
    ending = text_of(await ann.wait_message("ends on"))
    assert ending == (
        f"⏳ Your City Club membership ends on {local_day(paid.ends_at, program)}. To stay in "
        "the club, extend it: /club, or at any partner's till."
    )
    assert await tell_club(harness.runtime, now=now) == 0
    assert await tell_club(harness.runtime, now=now + 3 * DAY) == 1
    ended = text_of(await ann.wait_message("ended on"))
    assert ended == (
        f"⌛ Your City Club membership ended on {local_day(paid.ends_at, program)}, and its "
        "perks with it. You are welcome back any time: /club, or at any partner's till."
    )
    assert await tell_club(harness.runtime, now=now + 4 * DAY) == 0
    assert await count(sessions, Notice, Notice.kind.in_(("club_ending", "club_ended"))) == 2


async def balance_of(user: UserClient) -> str:
    user.mark_all_seen()
    await user.send("/balance")
    return text_of(await user.wait_message("points"))


async def club_screen(user: UserClient) -> dict[str, Any]:
    user.mark_all_seen()
    await user.send("/club")
    return await user.wait_message("City Club")


def button_texts(message: dict[str, Any]) -> list[str]:
    return [str(b["text"]) for b in inline_buttons(message)]


async def test_the_day_telegram_charges_is_said_and_a_subscription_that_lapsed_is_over(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    """Ann has a till month and takes a Stars subscription during it: her membership runs
    to the end of both, but Telegram charges again 30 days after she subscribed, and the
    bot says that day. Then Telegram's charge never comes (no Stars left): a day later
    nothing says it renews, and she may subscribe again."""
    ann = harness.user("Ann")
    await join(ann)
    member = await member_of(sessions, ann)
    await pay(sessions, program, member.id, "till", "till:1", datetime.now(UTC))
    await club_screen(ann)
    link = ann.invoice_link("Extend for 250 ⭐")
    outcome = await ann.pay(link)
    assert outcome.ok and outcome.charge is not None
    news = text_of(await ann.wait_message("City Club extended"))
    charged = datetime.fromtimestamp(
        outcome.charge.successful_payment["subscription_expiration_date"], UTC
    )
    async with sessions() as s:
        found = await membership(s, member.id)
    assert found is not None and found.ends_at > charged + 20 * DAY
    ends, renews = local_day(found.ends_at, program), local_day(charged, program)
    assert f"you are a member until {ends}." in news
    assert (
        f"Telegram charges your Stars subscription again on {renews}, which extends it; "
        "/club to stop it."
    ) in news
    shown = await club_screen(ann)
    assert (
        f"✅ You are a member until {ends}; Telegram charges your Stars subscription again on "
        f"{renews}, which extends it."
    ) in text_of(shown)
    assert button_texts(shown) == ["Stop renewal"]
    assert (
        f"👑 City Club: member until {ends} (Stars subscription renews on {renews})"
        in await balance_of(ann)
    )

    # Telegram's charge was due a day ago and never came.
    async with sessions() as s:
        await s.execute(
            update(ClubMembership)
            .where(ClubMembership.member_id == member.id)
            .values(subscription_until=datetime.now(UTC) - DAY - timedelta(hours=1))
        )
        await s.commit()
    shown = await club_screen(ann)
    assert f"✅ You are a member until {ends}; it ends then." in text_of(shown)
    assert "Stop renewal" not in button_texts(shown)
    assert f"👑 City Club: member until {ends} (ends then)" in await balance_of(ann)
    again = await ann.pay(link)  # a new subscription is not refused as a second one
    assert again.ok, again.error_message
    await ann.wait_message("City Club extended")


async def test_a_till_month_after_a_subscription_lapsed_is_not_said_to_renew(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    """Bob's Stars subscription lapsed (its renewal never came) ten days ago; he buys a
    month at a till: /club and /balance say it ends then, and offer Stars again."""
    bob = harness.user("Bob")
    await join(bob)
    member = await member_of(sessions, bob)
    now = datetime.now(UTC)
    await pay(sessions, program, member.id, "stars", "s-1", now - CLUB_PERIOD - 10 * DAY)
    month = await pay(sessions, program, member.id, "till", "till:1", now)
    ends = local_day(month.ends_at, program)
    shown = await club_screen(bob)
    assert f"✅ You are a member until {ends}; it ends then." in text_of(shown)
    assert button_texts(shown) == ["Extend for 250 ⭐"]
    assert f"👑 City Club: member until {ends} (ends then)" in await balance_of(bob)


# --------------------------------------------------------------------------- /stats


async def test_stats_show_the_club_apart_in_stars_and_money(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    ann, bob, cy = harness.user("Ann"), harness.user("Bob"), harness.user("Cy")
    for user in (ann, bob, cy):
        await join(user)
    now = datetime.now(UTC)
    a, b, c = [(await member_of(sessions, u)).id for u in (ann, bob, cy)]
    await pay(sessions, program, a, "stars", "s-1", now - 3 * DAY)
    await pay(sessions, program, b, "till", "till:1", now - 40 * DAY)  # lapsed 10 days ago
    await pay(sessions, program, c, "card", "c-1", now - 2 * DAY)
    refunded = await pay(sessions, program, b, "till", "till:2", now - DAY)  # back in
    owner = harness.owner()
    await owner.send(f"/club_refund {(await member_of(sessions, bob)).card_number}")
    await owner.wait_message("Club payments")
    await owner.click(harness_button(owner, refunded.payment_id))
    await owner.wait_message("paid in cash")
    await owner.click("✅ Record as refunded")
    await owner.wait_message("recorded as refunded")

    await owner.send("/stats month")
    figures = text_of(await owner.wait_message("📊"))
    # Ann and Cy are in; Bob's till month lapsed, and his return was refunded.
    assert "👑 City Club: 2 members now (+3 joined, 2 lapsed)" in figures
    assert "⭐ Club in Stars: 250 ⭐ kept of 250 ⭐ paid, 0 ⭐ refunded" in figures
    assert (
        f"💳 Club in money: PLN{NBSP}29.00 kept of PLN{NBSP}58.00 paid (card PLN{NBSP}29.00, "
        f"at tills PLN{NBSP}29.00), PLN{NBSP}29.00 refunded"
    ) in figures


@NO_CLUB
async def test_stats_without_a_club_say_nothing_of_it(harness: BotHarness) -> None:
    owner = harness.owner()
    await owner.send("/stats")
    figures = text_of(await owner.wait_message("📊"))
    assert "Club" not in figures and "👑" not in figures


# --------------------------------------------------------------------------- campaigns


async def test_a_campaign_to_club_members_only(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    ann, bob, cy = harness.user("Ann"), harness.user("Bob"), harness.user("Cy")
    for user in (ann, bob, cy):
        await join(user)
    now = datetime.now(UTC)
    ids = {u.user_id: (await member_of(sessions, u)).id for u in (ann, bob, cy)}
    await pay(sessions, program, ids[ann.user_id], "stars", "s-1", now - DAY)
    await pay(sessions, program, ids[bob.user_id], "till", "till:1", now - 40 * DAY)  # lapsed
    async with sessions() as s:  # everyone accepts offers
        for member_id in ids.values():
            await set_marketing_consent(s, member_id, True)
    owner = harness.owner()
    await owner.send("/campaign")
    menu = await owner.wait_message("New campaign")
    assert "Members who accept offers in it: 3." in text_of(menu)
    await owner.click("👑 Club members only")
    await owner.wait_for(lambda: "club members" in text_of(owner.messages[-1]))
    shown = text_of(owner.messages[-1])
    assert "Audience: club members." in shown and "Members who accept offers in it: 1." in shown
    # The switch turns back: everyone again.
    await owner.click("✖ Club members only")
    await owner.wait_for(lambda: "Audience: everyone." in text_of(owner.messages[-1]))
    await owner.click("👑 Club members only")
    await owner.wait_for(lambda: "club members" in text_of(owner.messages[-1]))
    await owner.click("Next: write the message ▶")
    await owner.wait_message("Send the message")
    await owner.send("Club night on Friday")
    await owner.wait_message("link button")
    await owner.send("/skip")
    ask = text_of(await owner.wait_message(lambda m: "Campaign #" in text_of(m)))
    assert "to club members: 1 member. Send it?" in ask
    edits = len(harness.server.calls("editMessageReplyMarkup"))
    await owner.click("🚀 Send now")
    await owner.wait_message("being sent")
    # Started: the buttons are taken off the question.
    await owner.wait_for(lambda: len(harness.server.calls("editMessageReplyMarkup")) > edits)
    async with sessions() as s:
        queued = (await s.execute(select(Outbox.member_id))).scalars().all()
    assert queued == [ids[ann.user_id]]


@NO_CLUB
async def test_the_club_switch_is_not_offered_without_a_club(harness: BotHarness) -> None:
    owner = harness.owner()
    await owner.send("/campaign")
    menu = await owner.wait_message("New campaign")
    assert "Club" not in str(inline_buttons(menu))
    # A forged press is refused: the program has no club.
    forged = "seg:club:1"
    await owner.click(menu, forged, check=False)
    await owner.wait_message("no longer available")


# --------------------------------------------------------------------------- refunds


def harness_button(owner: UserClient, payment_id: int) -> str:
    """The text of the list's button for `payment_id`."""
    data = ClubRefundCb(action="ask", payment=payment_id).pack()
    for message in reversed(owner.messages):
        for button in inline_buttons(message):
            if button.get("callback_data") == data:
                return str(button["text"])
    raise LookupError(f"no button for payment {payment_id}")


async def test_the_owner_refunds_stars_through_telegram_once(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    ann = harness.user("Ann")
    await join(ann)
    member = await member_of(sessions, ann)
    now = datetime.now(UTC)
    first = await pay(sessions, program, member.id, "stars", "s-1", now - 20 * DAY)
    renewed = await pay(sessions, program, member.id, "stars", "s-2", now - DAY, recurring=True)
    for charge in ("s-1", "s-2"):
        harness.server.payments.add_known_charge(ann.user_id, charge)
    owner = harness.owner()
    await owner.send(f"/club_refund {format_card_number(member.card_number)}")
    listing = text_of(await owner.wait_message("Club payments"))
    card = format_card_number(member.card_number)
    assert listing.startswith(f"👑 Club payments of Ann (card {card}), newest first:")
    day = local_day(now - 20 * DAY, program)
    until = local_day(first.ends_at, program)
    assert f"No. {first.payment_id} · {day} · Telegram Stars · 250 ⭐ · until {until}" in listing
    await owner.click(f"↩️ No. {first.payment_id}: 250 ⭐")
    ask = text_of(await owner.wait_message("Telegram gives the Stars back"))
    # Its ten days still ahead go; the renewal's month stays, ten days earlier.
    shorter = renewed.ends_at - (first.ends_at - datetime.now(UTC))
    assert ask == (
        f"No. {first.payment_id}: 250 ⭐ paid on {day} by Ann.\n"
        "Telegram gives the Stars back to them.\n"
        "Their club membership loses the time this payment bought that is still ahead: it "
        f"ends on {local_day(shorter, program)} instead of "
        f"{local_day(renewed.ends_at, program)}, and they are told.\n"
        "Their Telegram Stars subscription, which this payment was of, is cancelled too, so "
        "Telegram does not charge it again."
    )
    confirm = owner.messages[-1]
    await owner.click("↩️ Refund 250 ⭐")
    done = text_of(await owner.wait_message("is refunded"))
    async with sessions() as s:
        now_member = await membership(s, member.id)
    assert now_member is not None
    assert abs(now_member.ends_at - shorter) < timedelta(minutes=1)
    assert done == (
        f"✅ No. {first.payment_id} is refunded: Telegram gives 250 ⭐ back.\n"
        f"Their club membership now ends on {local_day(now_member.ends_at, program)} (the time "
        "this payment bought that was still ahead is taken off), and they are told."
    )
    await owner.wait_message("subscription is cancelled")
    charges = harness.server.payments.charges
    assert charges["s-1"].refunded
    sub = charges["s-2"].subscription
    assert sub is not None and sub.is_canceled  # Telegram will not charge again
    [refund_call] = harness.server.calls("refundStarPayment")
    assert refund_call.params["user_id"] == ann.user_id
    told = text_of(await ann.wait_message("was refunded"))
    assert told == (
        "↩️ Your City Club payment of 250 ⭐ was refunded: Telegram gives the Stars back.\n"
        "The time it paid for that was still ahead is taken off: you are a member until "
        f"{local_day(now_member.ends_at, program)}."
    )
    async with sessions() as s:
        now_member = await membership(s, member.id)
    assert now_member is not None and now_member.active(datetime.now(UTC))
    assert not now_member.renews and now_member.subscription_charge_id is None

    # The same button again: nothing more happens, and Telegram is not asked again.
    await owner.click(
        confirm, ClubRefundCb(action="stars", payment=first.payment_id).pack(), check=False
    )
    again = text_of(await owner.wait_message("already refunded"))
    assert again.startswith(f"No. {first.payment_id} was already refunded on ")
    assert len(harness.server.calls("refundStarPayment")) == 1
    assert await count(sessions, AuditLog, AuditLog.action == "club_refund") == 1
    assert await count(sessions, Notice, Notice.kind == "club_refunded") == 1
    # The list shows it refunded, without its button.
    await owner.send(f"/club_refund {member.card_number}")
    listing = text_of(await owner.wait_message("Club payments"))
    assert f"refunded {local_day(datetime.now(UTC), program)}" in listing
    buttons = [b["text"] for b in inline_buttons(owner.messages[-1])]
    assert f"↩️ No. {first.payment_id}: 250 ⭐" not in buttons


async def test_a_refund_telegram_refuses_records_nothing(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    bob = harness.user("Bob")
    await join(bob)
    member = await member_of(sessions, bob)
    paid = await pay(sessions, program, member.id, "stars", "s-9", datetime.now(UTC) - DAY)
    owner = harness.owner()
    # Telegram does not know this charge.
    await owner.send(f"/club_refund {member.card_number}")
    await owner.wait_message("Club payments")
    await owner.click(f"↩️ No. {paid.payment_id}: 250 ⭐")
    await owner.wait_message("Telegram gives the Stars back")
    await owner.click("↩️ Refund 250 ⭐")
    refused = text_of(await owner.wait_message("refused"))
    assert refused == (
        "Telegram refused the refund: Bad Request: CHARGE_NOT_FOUND. Nothing was recorded."
    )
    async with sessions() as s:
        assert await s.scalar(select(ClubPayment.refunded_at)) is None
        assert (await membership(s, member.id)).active(datetime.now(UTC))  # type: ignore[union-attr]
    assert await count(sessions, AuditLog, AuditLog.action == "club_refund") == 0

    # Refunded in Telegram already (say, through Telegram's own support): recorded so now.
    harness.server.payments.add_known_charge(bob.user_id, "s-9")
    harness.server.payments.charges["s-9"].refunded = True
    await owner.click("↩️ Refund 250 ⭐")
    said = text_of(await owner.wait_message("refunded already"))
    assert said.startswith(
        f"Telegram says No. {paid.payment_id} was refunded already: it is recorded as "
        "refunded now."
    )
    async with sessions() as s:
        assert await s.scalar(select(ClubPayment.refunded_at)) is not None
    assert await count(sessions, AuditLog, AuditLog.action == "club_refund") == 1


async def test_card_and_till_payments_are_given_back_outside_and_recorded(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    cy = harness.user("Cy")
    await join(cy)
    member = await member_of(sessions, cy)
    now = datetime.now(UTC)
    by_card = await pay(sessions, program, member.id, "card", "c-1", now - 2 * DAY)
    at_till = await pay(sessions, program, member.id, "till", "till:1", now - DAY)
    owner = harness.owner()
    await owner.send(f"/club_refund {member.card_number}")
    listing = text_of(await owner.wait_message("Club payments"))
    assert f"till of Bean There Coffee · PLN{NBSP}29.00" in listing
    assert f"card · PLN{NBSP}29.00" in listing

    await owner.click(f"↩️ No. {by_card.payment_id}: PLN{NBSP}29.00")
    ask = text_of(await owner.wait_message("cannot refund a card payment"))
    assert "payment provider's dashboard (its charge: pv-7)" in ask
    await owner.click("✅ Record as refunded")
    done = text_of(await owner.wait_message("recorded as refunded"))
    assert done.startswith(
        f"✅ No. {by_card.payment_id} is recorded as refunded (PLN{NBSP}29.00)."
    )
    told = text_of(await cy.wait_message("was refunded"))
    assert told.startswith(f"↩️ Your City Club payment of PLN{NBSP}29.00 was refunded.")
    assert not harness.server.calls("refundStarPayment")

    await owner.click(
        owner.messages[-2],
        ClubRefundCb(action="record", payment=by_card.payment_id).pack(),
        check=False,
    )
    await owner.wait_message("already refunded")

    await owner.click(f"↩️ No. {at_till.payment_id}: PLN{NBSP}29.00")
    ask = text_of(await owner.wait_message("paid in cash"))
    assert "It was paid in cash at Bean There Coffee: give the money back there" in ask
    # A forged Stars button for a till payment: Telegram is never asked.
    await owner.click(
        owner.messages[-1],
        ClubRefundCb(action="stars", payment=at_till.payment_id).pack(),
        check=False,
    )
    await owner.wait_message("does not fit")
    ask_message = owner.messages[-2]
    await owner.click("✖ Cancel")
    await owner.wait_for(
        lambda: (
            "Nothing was refunded."
            in text_of(harness.server.message(owner.user_id, ask_message["message_id"]) or {})
        )
    )
    async with sessions() as s:
        refunded = (
            (
                await s.execute(
                    select(ClubPayment.charge_id).where(ClubPayment.refunded_at.is_not(None))
                )
            )
            .scalars()
            .all()
        )
    assert refunded == ["c-1"]
    assert not harness.server.calls("refundStarPayment")


async def test_only_owners_refund(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    ann, eve = harness.user("Ann"), harness.user("Eve")
    await join(ann)
    await join(eve)
    member = await member_of(sessions, ann)
    paid = await pay(sessions, program, member.id, "card", "c-1", datetime.now(UTC))
    await eve.send(f"/club_refund {member.card_number}")
    reply = text_of(await eve.wait_message(lambda m: True))
    assert "Club payments" not in reply
    eve.mark_all_seen()
    await eve.click(
        {"chat": {"id": eve.user_id}, "message_id": 1},
        ClubRefundCb(action="record", payment=paid.payment_id).pack(),
        check=False,
    )
    await eve.wait_callback_answer()
    async with sessions() as s:
        assert await s.scalar(select(ClubPayment.refunded_at)) is None
    owner = harness.owner()
    await owner.send("/club_refund 1234")
    assert "Usage: /club_refund CARD-NUMBER" in text_of(await owner.wait_message("Usage"))


@WELCOME
async def test_the_owner_is_told_how_many_welcome_points_a_refund_takes_back(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    """Ann's Stars month brought the club's 500 welcome points; she gave 200 of her points
    off by the owner meanwhile (/adjust): refunding it takes back the 350 her wallet holds,
    and the owner
    and Ann are told exactly that."""
    ann = harness.user("Ann")
    await join(ann)
    member = await member_of(sessions, ann)
    paid = await pay(sessions, program, member.id, "stars", "s-1", datetime.now(UTC) - DAY)
    assert paid.welcome_points == 500
    harness.server.payments.add_known_charge(ann.user_id, "s-1")
    async with sessions() as s:
        await adjust(s, program, member_id=member.id, points=-200, reason="spent", key="spent")
    owner = harness.owner()
    await owner.send(f"/club_refund {member.card_number}")
    await owner.wait_message("Club payments")
    await owner.click(f"↩️ No. {paid.payment_id}: 250 ⭐")
    ask = text_of(await owner.wait_message("Telegram gives the Stars back"))
    assert "Their club membership ends now, and they are told." in ask
    assert (
        "Of the welcome gift paid with it (500 points), only what their wallet holds is taken "
        "back: 350 points now (points spent stay spent)."
    ) in ask
    await owner.click("↩️ Refund 250 ⭐")
    done = text_of(await owner.wait_message("is refunded"))
    assert done.endswith(
        "Their club membership has ended, and they are told.\n"
        "Welcome gift paid with it: 500 points; taken back from their wallet: 350 points."
    )
    told = text_of(await ann.wait_message("was refunded"))
    assert told.endswith("The club's welcome gift paid with it was taken back: −350 points.")
    async with sessions() as s:
        after = await find_by_telegram(s, ann.user_id)
    assert after is not None and after.balance == 0


# --------------------------------------------------------------------------- bought nothing


async def test_a_payment_delivered_again_after_the_account_was_deleted_is_not_refunded(
    harness: BotHarness, sessions: Sessions
) -> None:
    """Ann pays, Telegram's delivery is recorded but its answer is lost; she deletes her
    account; Telegram delivers the payment again. It bought her membership: it is neither
    refunded nor reported as a payment that bought nothing."""
    server = harness.server
    ann = harness.user("Ann")
    await join(ann)
    await club_screen(ann)
    outcome = await ann.pay(ann.invoice_link("Join for 250 ⭐"))
    assert outcome.ok and outcome.message is not None and outcome.charge is not None
    await ann.wait_message("Welcome to City Club")
    await ann.send("/privacy")
    await ann.wait_message("Your data")
    await ann.click("🗑 Delete my account")
    await ann.wait_message("Delete your account?")
    await ann.click("Yes, delete everything")
    await ann.wait_message("forfeited")
    before = len(ann.messages)
    handled = REGISTRY.get_sample_value("loyalty_updates_total", {"type": "message"}) or 0.0

    ann.redeliver(outcome.message)
    await ann.wait_for(
        lambda: (
            (REGISTRY.get_sample_value("loyalty_updates_total", {"type": "message"}) or 0.0)
            > handled
        )
    )
    assert not server.calls("refundStarPayment")
    assert not outcome.charge.refunded
    assert len(ann.messages) == before  # nothing said
    async with sessions() as s:
        assert await s.scalar(select(ClubPayment.refunded_at)) is None
        assert await s.scalar(select(func.count()).select_from(ClubUnclaimed)) == 0
    assert await count(sessions, AuditLog, AuditLog.action == "club_payment_unclaimed") == 0
