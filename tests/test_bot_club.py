"""Paying for the club in Telegram, end to end: the real dispatcher over HTTP against the fake
Bot API, which takes the payments as Telegram does (pre-checkout within 10 s, then
successful_payment; Stars subscriptions renewed and cancelled; refunds). The ledger's
invariants are checked after each test (the `sessions` fixture)."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from aiogram.types import LabeledPrice
from prometheus_client import REGISTRY
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from db.ledger.models import AuditLog, ClubPayment, Member, Notice
from db.queries.club import membership
from db.rules import club as rules
from db.rules.program import Program, parse_program
from tests.botharness import OWNER_ID, BotHarness, running_bot
from tests.conftest import TEST_PROGRAM, make_program
from tests.fakegram import PaymentOutcome, UserClient, inline_buttons, text_of
from tests.test_bot_member import join, member_of

Sessions = async_sessionmaker[AsyncSession]
CLUB = {
    "name": "City Club",
    "text": "More points and money off at every partner.",
    "perks": ["Free delivery from Chapter One"],
    "stars_per_month": 250,
    "price": "29.00",
    "multiplier": "1.5",
    "discount_percent": "5",
    "welcome_points": 500,
}
CLUB_BOOKS = {
    "slug": "club-books",
    "title": "Club members: 100 points on books",
    "partners": ["books"],
    "who": {"club": True},
    "effect": {"bonus_points": 100},
    "funded_by": "program",
}
JOIN = "Join for 250 ⭐"
EXTEND = "Extend for 250 ⭐"
PROVIDER_TOKEN = "284685063:TEST:club"
NOT_A_MEMBER = (
    "Only members of the program can join its club, and this Telegram account is not one: send "
    "/start to join the program first. Nothing was charged."
)


def club_program(**club: Any) -> Program:
    data = copy.deepcopy(TEST_PROGRAM)
    data["club"] = {**CLUB, **club}
    data["promotions"] = [CLUB_BOOKS]
    return parse_program(data)


@pytest.fixture
def program() -> Program:
    return club_program()


@pytest.fixture
async def card_harness(
    engine: AsyncEngine, sessions: Sessions, program: Program
) -> AsyncIterator[BotHarness]:
    """The bot with a payment provider connected (PAYMENT_PROVIDER_TOKEN)."""
    async with running_bot(
        engine,
        sessions,
        program,
        admin_ids=[OWNER_ID],
        payment_provider_token=PROVIDER_TOKEN,
    ) as running:
        running.server.payments.provider_tokens = {PROVIDER_TOKEN}
        yield running


def buttons(message: dict[str, Any]) -> list[str]:
    return [button["text"] for button in inline_buttons(message)]


async def open_club(user: UserClient) -> dict[str, Any]:
    user.mark_all_seen()
    await user.send("/club")
    return await user.wait_message("City Club")


async def pay_stars(user: UserClient) -> PaymentOutcome:
    """/club, then pay its Stars subscription; the club's news has arrived."""
    await open_club(user)
    outcome = await user.pay(user.invoice_link(JOIN))
    assert outcome.ok, outcome.error_message
    await user.wait_message("Welcome to City Club")
    return outcome


def charge_id(outcome: PaymentOutcome) -> str:
    assert outcome.charge is not None
    return outcome.charge.telegram_payment_charge_id


async def count(sessions: Sessions, *where: Any) -> int:
    async with sessions() as s:
        return int(await s.scalar(select(func.count()).where(*where)) or 0)


def handled(kind: str) -> float:
    return REGISTRY.get_sample_value("loyalty_updates_total", {"type": kind}) or 0.0


async def test_club_paid_with_stars_renewed_and_its_renewal_stopped(
    harness: BotHarness, sessions: Sessions
) -> None:
    server = harness.server
    ann = harness.user("Ann")
    await join(ann)

    shown = await open_club(ann)
    text = text_of(shown)
    for line in (
        "More points and money off at every partner.",
        "×1.5 points on top of your tier",
        "5% off at every partner on top of your tier's",
        "500 points when you first join",
        "Club members: 100 points on books: 100 points more on the purchase, Chapter One Books",
        "Free delivery from Chapter One",
        "250 ⭐ a month: a Telegram Stars subscription, renewed every 30 days",
        "Or at any partner's till: PLN\u00a029.00 a month.",
        "You are not a member yet.",
    ):
        assert line in text, line
    assert "by card" not in text  # no payment provider connected
    assert buttons(shown) == [JOIN]
    link = ann.invoice_link(JOIN)
    invoice = server.payments.invoice(link)
    member = await member_of(sessions, ann)
    assert invoice.currency == "XTR" and invoice.total_amount == 250
    assert invoice.subscription_period == 2592000 and not invoice.provider_token
    assert invoice.payload == rules.payload("stars", member.id)

    outcome = await ann.pay(link)
    assert outcome.ok
    news = text_of(await ann.wait_message("Welcome to City Club"))
    first = outcome.charge.successful_payment if outcome.charge else {}
    until = datetime.fromtimestamp(first["subscription_expiration_date"], UTC)
    day = f"{until.day} {until:%b %Y}"
    assert f"You paid 250 ⭐: you are a member until {day}." in news
    assert "Your Telegram Stars subscription renews it then" in news
    assert "+500 points: the club's welcome gift." in news
    await ann.send("/balance")
    balance = text_of(await ann.wait_message("points"))
    assert "550 points" in balance
    assert f"👑 City Club: member until {day} (renews)" in balance
    await ann.send("/history")
    history = text_of(await ann.wait_message("Transactions"))
    assert "City Club: welcome gift: +500 points" in history, history
    twice = await ann.pay(link)  # the same invoice again: a second subscription
    assert not twice.ok and "already renews your membership" in (twice.error_message or "")

    renewal = ann.renew(charge_id(outcome))  # Telegram charges the next month
    assert renewal is not None
    again = text_of(await ann.wait_message("City Club extended"))
    next_until = datetime.fromtimestamp(
        renewal.successful_payment["subscription_expiration_date"], UTC
    )
    assert f"you are a member until {next_until.day} {next_until:%b %Y}" in again
    assert "welcome gift" not in again
    async with sessions() as s:
        found = await membership(s, member.id)
        recurring = await s.scalar(
            select(ClubPayment.recurring).where(
                ClubPayment.charge_id == renewal.telegram_payment_charge_id
            )
        )
    # To Telegram's date, or the moment later that the first month began here.
    assert found is not None and found.renews
    assert next_until <= found.ends_at < next_until + timedelta(seconds=5)
    assert found.subscription_charge_id == renewal.telegram_payment_charge_id
    assert recurring is True

    shown = await open_club(ann)
    assert "renews it then" in text_of(shown) and "500 points when" not in text_of(shown)
    assert buttons(shown) == ["Stop renewal"]  # no second subscription offered
    stop = next(b["callback_data"] for b in inline_buttons(shown) if b["text"] == "Stop renewal")
    await ann.click(shown, stop)
    assert "Renewal is stopped" in (await ann.wait_callback_answer())["text"]
    subscription = server.payments.subscription_of(renewal.telegram_payment_charge_id)
    assert subscription.is_canceled
    await ann.wait_for(
        lambda: "Resume renewal" in buttons(server.message(ann.user_id, shown["message_id"]) or {})
    )
    edited = server.message(ann.user_id, shown["message_id"]) or {}
    assert buttons(edited) == [EXTEND, "Resume renewal"]
    assert "it ends then" in text_of(edited)

    await ann.click(shown, stop, check=False)  # pressed again: nothing more
    assert "already stopped" in (await ann.wait_callback_answer())["text"]
    assert len(server.calls("editUserStarSubscription")) == 1
    async with sessions() as s:
        stopped = await membership(s, member.id)
    assert stopped is not None and not stopped.renews
    assert ann.renew(renewal.telegram_payment_charge_id) is None  # Telegram charges no more

    resume = next(
        b["callback_data"] for b in inline_buttons(edited) if b["text"] == "Resume renewal"
    )
    server.fail_next(
        "editUserStarSubscription", code=400, description="Bad Request: SUBSCRIPTION_NOT_FOUND"
    )
    await ann.click(edited, resume)
    refused = await ann.wait_callback_answer()
    assert "nothing was changed" in refused["text"] and refused.get("show_alert")
    async with sessions() as s:
        still = await membership(s, member.id)
    assert still is not None and not still.renews and subscription.is_canceled
    await ann.click(edited, resume, check=False)
    assert "Renewal is on again" in (await ann.wait_callback_answer())["text"]
    assert not subscription.is_canceled
    assert await count(sessions, AuditLog.action == "club_renewal_off") == 1
    assert await count(sessions, AuditLog.action == "club_renewal_on") == 1


async def test_a_redelivered_payment_changes_nothing(
    harness: BotHarness, sessions: Sessions
) -> None:
    ann = harness.user("Ann")
    await join(ann)
    outcome = await pay_stars(ann)
    assert outcome.message is not None
    before = handled("message")
    ann.redeliver(outcome.message)
    await ann.wait_for(lambda: handled("message") > before)
    await ann.send("/balance")
    assert "550 points" in text_of(await ann.wait_message("points"))
    assert await count(sessions, ClubPayment.id.is_not(None)) == 1
    assert await count(sessions, Notice.kind == "club_paid") == 1
    assert await count(sessions, AuditLog.action == "club_payment") == 1
    assert [m for m in ann.messages if "Welcome to City Club" in text_of(m)].__len__() == 1


async def test_pre_checkout_refuses_a_deleted_member_and_a_stale_price(
    harness: BotHarness, sessions: Sessions
) -> None:
    server = harness.server
    ann, bob = harness.user("Ann"), harness.user("Bob")
    await join(ann)
    await join(bob)
    await open_club(ann)
    link = ann.invoice_link(JOIN)

    bob_member = await member_of(sessions, bob)
    stale = await harness.bot.create_invoice_link(  # made when a month cost 200 Stars
        title="City Club",
        description="30 days",
        payload=rules.payload("stars", bob_member.id),
        currency="XTR",
        prices=[LabeledPrice(label="30 days", amount=200)],
        subscription_period=2592000,
    )
    refused = await bob.pay(stale)
    assert not refused.ok and refused.answered
    assert refused.error_message == "The price has changed: open /club again. Nothing was charged."
    not_his = await bob.pay(link)  # Ann's invoice
    assert not not_his.ok and "another account" in (not_his.error_message or "")
    never = await harness.user("Cy").pay(link)  # someone who never joined, forwarded it
    assert not never.ok and never.error_message == NOT_A_MEMBER
    assert "no longer" not in NOT_A_MEMBER

    await ann.send("/privacy")
    await ann.wait_message("Your data")
    await ann.click("🗑 Delete my account")
    await ann.wait_message("Delete your account?")
    await ann.click("Yes, delete everything")
    await ann.wait_message("forfeited")
    gone = await ann.pay(link)
    assert not gone.ok and gone.answered
    assert gone.error_message == NOT_A_MEMBER
    assert not server.payments.charges
    assert await count(sessions, ClubPayment.id.is_not(None)) == 0


async def test_a_card_payment_with_a_payment_provider(
    card_harness: BotHarness, sessions: Sessions
) -> None:
    server = card_harness.server
    ann = card_harness.user("Ann")
    await join(ann)
    shown = await open_club(ann)
    assert "PLN\u00a029.00 for 30 days by card" in text_of(shown)
    assert buttons(shown) == [JOIN, "💳 Pay PLN\u00a029.00 by card"]
    await ann.click("💳 Pay PLN\u00a029.00 by card")
    invoice_message = await ann.wait_message(lambda m: "invoice" in m)
    invoice = server.payments.invoice(invoice_message)
    member = await member_of(sessions, ann)
    assert invoice.currency == "PLN" and invoice.prices == [{"label": "30 days", "amount": 2900}]
    assert invoice.provider_token == PROVIDER_TOKEN and invoice.subscription_period is None
    assert invoice.payload == rules.payload("card", member.id)

    outcome = await ann.pay(invoice_message)
    assert outcome.ok
    news = text_of(await ann.wait_message("Welcome to City Club"))
    assert "You paid PLN\u00a029.00" in news and "It ends then: /club to extend it." in news
    async with sessions() as s:
        paid = (await s.execute(select(ClubPayment))).scalar_one()
        found = await membership(s, member.id)
    assert paid.method == "card" and paid.currency == "PLN" and paid.amount == Decimal("29.00")
    assert paid.provider_charge_id == outcome.charge.provider_payment_charge_id  # type: ignore[union-attr]
    assert found is not None and not found.renews and found.subscription_charge_id is None
    await ann.send("/balance")
    assert "(ends then)" in text_of(await ann.wait_message("points"))
    shown = await open_club(ann)
    assert buttons(shown) == [EXTEND, "💳 Pay PLN\u00a029.00 by card"]  # no renewal to stop


async def test_paysupport_lists_payments_and_tells_the_owner(
    harness: BotHarness, sessions: Sessions
) -> None:
    ann = harness.user("Ann")
    owner = harness.owner()
    await join(ann)
    outcome = await pay_stars(ann)
    member = await member_of(sessions, ann)

    await ann.send("/paysupport")
    shown = text_of(await ann.wait_message("Help with a payment"))
    assert "250 ⭐, Telegram Stars, until" in shown
    assert "the program's owner" in shown
    await ann.send("I was charged twice <please>")
    await ann.wait_message("Sent to the program's owner: they will answer you here.")
    told = text_of(await owner.wait_message("Help with a payment asked by"))
    assert "I was charged twice <please>" in told
    assert member.card_number[-4:] in told.replace(" ", "")
    assert charge_id(outcome) in told
    assert await count(sessions, AuditLog.action == "club_support") == 1

    bob = harness.user("Bob")  # not a member: still answered
    await bob.send("/paysupport Where is my refund?")
    await bob.wait_message("Sent to the program's owner")
    told = text_of(await owner.wait_message("Where is my refund?"))
    assert "(not a member)" in told and "They have no club payments." in told


async def test_deleting_the_account_cancels_the_subscription(
    harness: BotHarness, sessions: Sessions
) -> None:
    server = harness.server
    owner = harness.owner()
    ann, bob, cy = harness.user("Ann"), harness.user("Bob"), harness.user("Cy")
    for user in (ann, bob, cy):
        await join(user)
    ann_paid, bob_paid, cy_paid = [await pay_stars(user) for user in (ann, bob, cy)]

    async def delete(user: UserClient) -> None:
        await user.send("/privacy")
        await user.wait_message("Your data")
        await user.click("🗑 Delete my account")
        asked = text_of(await user.wait_message("Delete your account?"))
        assert "Your club membership, paid until" in asked
        assert "its Telegram Stars subscription is cancelled" in asked
        await user.click("Yes, delete everything")
        await user.wait_message("forfeited")

    await delete(ann)
    assert server.payments.subscription_of(charge_id(ann_paid)).is_canceled
    assert ann.renew(charge_id(ann_paid)) is None

    # Telegram refuses the cancellation: the account is deleted all the same, and the
    # renewal that then comes buys nothing and is refunded at once.
    for user, paid in ((bob, bob_paid), (cy, cy_paid)):
        server.fail_next(
            "editUserStarSubscription", code=400, description="Bad Request: USER_ID_INVALID"
        )
        await delete(user)
        assert await member_of(sessions, user) is None
        assert not server.payments.subscription_of(charge_id(paid)).is_canceled
    renewal = bob.renew(charge_id(bob_paid))
    assert renewal is not None
    await bob.wait_message("It was refunded to you.")
    assert renewal.refunded
    before = handled("message")
    bob.redeliver(renewal.message)  # again: refunded, said and audited once
    await bob.wait_for(lambda: handled("message") > before)
    assert len(server.calls("refundStarPayment")) == 1
    assert len([m for m in bob.messages if "refunded to you" in text_of(m)]) == 1

    # And when Telegram refuses the refund too, the owners are told to refund it.
    server.fail_next("refundStarPayment", code=400, description="Bad Request: USER_ID_INVALID")
    renewal = cy.renew(charge_id(cy_paid))
    assert renewal is not None
    said = text_of(await cy.wait_message("could not be refunded automatically"))
    assert "no longer a member" in said and "/paysupport" in said
    told = text_of(await owner.wait_message("paid 250 ⭐ for the club"))
    assert f"Telegram id {cy.user_id}" in told and renewal.telegram_payment_charge_id in told
    assert not renewal.refunded
    assert await count(sessions, AuditLog.action == "club_payment_unclaimed") == 2
    assert await count(sessions, ClubPayment.id.is_not(None)) == 3  # only the first three


async def test_a_club_sold_only_at_tills_and_no_club(
    engine: AsyncEngine, sessions: Sessions
) -> None:
    tills_only = club_program(
        name={"en": "City Club", "pl": "Klub Miejski"},
        perks=[{"en": "Bread kept for you", "pl": "Chleb odłożony dla ciebie"}],
        stars_per_month=0,
    )
    async with running_bot(engine, sessions, tills_only, admin_ids=[OWNER_ID]) as running:
        ann, ola = running.user("Ann"), running.user("Ola")
        await join(ann)
        await join(ola)
        shown = await open_club(ann)
        assert "• Ask at any partner's till: PLN\u00a029.00 a month." in text_of(shown)
        assert "Stars" not in text_of(shown) and not inline_buttons(shown)
        assert not running.server.calls("createInvoiceLink")
        member = await member_of(sessions, ann)
        link = await running.bot.create_invoice_link(  # a link from when Stars were sold
            title="City Club",
            description="30 days",
            payload=rules.payload("stars", member.id),
            currency="XTR",
            prices=[LabeledPrice(label="30 days", amount=250)],
            subscription_period=2592000,
        )
        refused = await ann.pay(link)
        assert not refused.ok and "not sold this way" in (refused.error_message or "")

        async with sessions() as s:  # Ola reads the program's texts in Polish
            await s.execute(
                update(Member).where(Member.telegram_id == ola.user_id).values(language="pl")
            )
            await s.commit()
        await ola.send("/club")
        polish = text_of(await ola.wait_message("Klub Miejski"))
        assert "Chleb odłożony dla ciebie" in polish and "Bread" not in polish
    async with running_bot(engine, sessions, make_program(), admin_ids=[OWNER_ID]) as running:
        running._next_user = 2000  # not Ann or Ola, who are members already
        bob = running.user("Bob")
        await join(bob)
        await bob.send("/club")
        await bob.wait_message("This program has no club.")
