"""Paying for the club when things fail, end to end through the fake Bot API: the database
dropping the connection while a payment Telegram has taken is recorded (retried; failing
still, the payer and the owners are told, and the owner refunds it by its charge id), while a
payment that bought nothing is given back, and while a Stars subscription's renewal is
switched; a double press; the grace day after a Stars membership's end.

The database fails for real: a trigger ends the writing connection (pg_terminate_backend),
as a server restart or a network cut does, so SQLAlchemy and asyncpg see what they would see
then."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

import bot.retry
from db.ledger.models import AuditLog, ClubMembership, ClubPayment
from db.queries.club import membership
from db.queries.identity import SenderBatch
from db.rules.program import CLUB_PERIOD, Program
from db.usecases.members import find_by_telegram
from db.usecases.privacy import delete_member
from tests.botharness import OWNER_ID, BotHarness, running_bot
from tests.fakegram import inline_buttons, text_of
from tests.test_bot_club import (
    EXTEND,
    PROVIDER_TOKEN,
    charge_id,
    club_program,
    count,
    open_club,
    pay_stars,
)
from tests.test_bot_member import join, member_of

Sessions = async_sessionmaker[AsyncSession]
UNRECORDED = (
    "Your payment of 250 ⭐ arrived; it could not be recorded yet. The owners have been told "
    "and will set it right; nothing more to do."
)


@pytest.fixture
def program() -> Program:
    return club_program()


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """The database's passing failures retried without the production pauses."""
    monkeypatch.setattr(bot.retry, "DB_BASE_DELAY", 0.01)


@asynccontextmanager
async def connection_drops(
    sessions: Sessions, table: str, *, when: str = "true", times: int = 1_000_000
) -> AsyncIterator[None]:
    """While inside: whoever writes a row of `table` for which `when` holds (SQL on NEW)
    loses their database connection, the first `times` times."""
    async with sessions() as s:
        await s.execute(text("CREATE SEQUENCE test_drops"))
        await s.execute(
            text(
                f"""
                CREATE FUNCTION test_drop() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    IF ({when}) AND nextval('test_drops') <= {times} THEN
                        PERFORM pg_terminate_backend(pg_backend_pid());
                    END IF;
                    RETURN NEW;
                END $$
                """
            )
        )
        await s.execute(
            text(
                f"CREATE TRIGGER test_drop BEFORE INSERT OR UPDATE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION test_drop()"
            )
        )
        await s.commit()
    try:
        yield
    finally:
        async with sessions() as s:
            await s.execute(text(f"DROP TRIGGER test_drop ON {table}"))
            await s.execute(text("DROP FUNCTION test_drop()"))
            await s.execute(text("DROP SEQUENCE test_drops"))
            await s.commit()


async def drops_left(sessions: Sessions) -> int:
    async with sessions() as s:
        return int(await s.scalar(text("SELECT last_value FROM test_drops")) or 0)


async def test_a_payment_whose_connection_drops_is_recorded_on_a_retry(
    harness: BotHarness, sessions: Sessions
) -> None:
    ann = harness.user("Ann")
    await join(ann)
    async with connection_drops(sessions, "club_payments", times=2):
        outcome = await pay_stars(ann)  # welcomed: recorded on the third try
        assert await drops_left(sessions) == 3  # two dropped, the third let through
    assert await count(sessions, ClubPayment.charge_id == charge_id(outcome)) == 1
    assert not [m for m in ann.messages if "could not be recorded" in text_of(m)]


async def test_a_payment_the_database_cannot_take_is_told_and_refunded_by_charge(
    harness: BotHarness, sessions: Sessions
) -> None:
    server = harness.server
    ann, owner = harness.user("Ann"), harness.owner()
    await join(ann)
    await open_club(ann)
    async with connection_drops(sessions, "club_payments"):
        outcome = await ann.pay(ann.invoice_link("Join for 250 ⭐"))
        assert outcome.ok  # Telegram took the Stars
        said = text_of(await ann.wait_message("could not be recorded"))
    charge = charge_id(outcome)
    assert said == UNRECORDED
    told = text_of(await owner.wait_message("could not be recorded"))
    assert "250 ⭐ from Ann" in told and f"Telegram id {ann.user_id}" in told
    assert f"Telegram charge {charge}" in told
    command = f"/club_refund {ann.user_id} {charge} 250"
    assert told.endswith(f"To refund the Stars, send:\n{command}")
    assert await count(sessions, ClubPayment.id.is_not(None)) == 0
    assert not [m for m in ann.messages if "Welcome" in text_of(m)]

    await owner.send(f"/club_refund {ann.user_id} {charge}")  # the Stars left out
    assert "Usage: /club_refund TELEGRAM-ID CHARGE-ID STARS" in text_of(
        await owner.wait_message("Usage")
    )
    await owner.send(command)
    done = text_of(await owner.wait_message("Refunded"))
    assert done == (
        f"✅ Refunded: Telegram gives 250 ⭐ back to Telegram id {ann.user_id} (charge "
        f"{charge}). Recorded.\nThey were told."
    )
    assert server.payments.charges[charge].refunded
    news = text_of(await ann.wait_message("was refunded"))
    assert news.startswith("↩️ Your payment of 250 ⭐, which could not be recorded, was refunded")
    async with sessions() as s:
        details = await s.scalar(
            select(AuditLog.details).where(AuditLog.action == "club_payment_unclaimed")
        )
    assert details is not None
    assert (details["charge_id"], details["reason"], details["refunded"]) == (
        charge,
        "unrecorded",
        "True",
    )
    await owner.send(command)  # again: Telegram says it is refunded, nothing more
    again = text_of(await owner.wait_message("refunded already"))
    assert again == (
        f"Telegram says charge {charge} was refunded already (250 ⭐ to Telegram id "
        f"{ann.user_id}): nothing more to do."
    )
    assert await count(sessions, AuditLog.action == "club_payment_unclaimed") == 1
    assert len([m for m in ann.messages if "was refunded" in text_of(m)]) == 1

    # A charge recorded as a club payment is refunded from its member's list, not here.
    paid = await pay_stars(ann)
    await owner.send(f"/club_refund {ann.user_id} {charge_id(paid)} 250")
    assert "is recorded as club payment No." in text_of(await owner.wait_message("recorded"))
    assert not server.payments.charges[charge_id(paid)].refunded


async def test_a_payment_failing_before_its_handler_is_told_not_dropped(
    harness: BotHarness, sessions: Sessions
) -> None:
    """The payer cannot even be looked up (the database failing under the identity
    middleware): the same truth, not "nothing was changed"."""
    server = harness.server
    ann, owner = harness.user("Ann"), harness.owner()
    await join(ann)
    await open_club(ann)
    server.delay("answerPreCheckoutQuery", 1.0)
    paying = asyncio.create_task(ann.pay(ann.invoice_link("Join for 250 ⭐")))
    await ann.wait_for(lambda: server.calls("answerPreCheckoutQuery"))  # answered: ok
    async with sessions() as s:  # now every read of the sender fails
        await s.execute(text("ALTER TABLE club_memberships RENAME TO club_memberships_away"))
        await s.commit()
    try:
        outcome = await paying
        said = text_of(await ann.wait_message("could not be recorded"))
    finally:
        async with sessions() as s:
            await s.execute(text("ALTER TABLE club_memberships_away RENAME TO club_memberships"))
            await s.commit()
    assert outcome.ok
    assert said == UNRECORDED
    told = text_of(await owner.wait_message("could not be recorded"))
    assert f"/club_refund {ann.user_id} {charge_id(outcome)} 250" in told
    assert not [m for m in ann.messages if "nothing was changed" in text_of(m)]


async def test_a_payment_whose_payer_look_up_meets_a_passing_failure_is_recorded(
    harness: BotHarness, sessions: Sessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The payer's look-up loses its connection once (killed, as when PostgreSQL restarts):
    Telegram sends the payment once, so the look-up is tried again and the month recorded,
    not given to the owners to refund (found by the chaos soak, seed 103)."""
    calls: list[int] = []
    real = SenderBatch.identify

    async def identify(self: SenderBatch, user_id: int) -> Any:
        calls.append(user_id)
        if len(calls) == 2:  # the pre-checkout query's look-up, then the payment's
            lost = ConnectionResetError("terminating connection due to administrator command")
            raise OperationalError("SELECT", {}, lost, connection_invalidated=True)
        return await real(self, user_id)

    ann = harness.user("Ann")
    await join(ann)
    await open_club(ann)
    monkeypatch.setattr(SenderBatch, "identify", identify)
    outcome = await ann.pay(ann.invoice_link("Join for 250 ⭐"))
    assert outcome.ok
    await ann.wait_message("Welcome to City Club")
    assert calls == [ann.user_id] * 3  # the payment's look-up was tried again
    assert await count(sessions, ClubPayment.charge_id == charge_id(outcome)) == 1
    assert not [m for m in ann.messages if "could not be recorded" in text_of(m)]


async def test_stars_given_back_say_so_when_the_record_of_it_fails(
    harness: BotHarness, sessions: Sessions
) -> None:
    bob = harness.user("Bob")
    await join(bob)
    paid = await pay_stars(bob)
    async with sessions() as s:  # deleted, its subscription not cancelled (Telegram refused)
        member = await find_by_telegram(s, bob.user_id)
        assert member is not None
        await delete_member(s, member)
    drop = "NEW.action = 'club_payment_unclaimed'"
    async with connection_drops(sessions, "audit_log", when=drop):
        renewal = bob.renew(charge_id(paid))  # bought nothing: refunded, and the record fails
        assert renewal is not None
        said = text_of(await bob.wait_message("bought nothing"))
    assert said.endswith("It was refunded to you.")
    assert renewal.refunded
    assert not [m for m in bob.messages if "nothing was changed" in text_of(m)]


@pytest.fixture
async def card_harness(
    engine: AsyncEngine, sessions: Sessions, program: Program
) -> AsyncIterator[BotHarness]:
    async with running_bot(
        engine, sessions, program, admin_ids=[OWNER_ID], payment_provider_token=PROVIDER_TOKEN
    ) as running:
        running.server.payments.provider_tokens = {PROVIDER_TOKEN}
        yield running


async def pay_card_and_leave(harness: BotHarness, sessions: Sessions, name: str) -> Any:
    """A member pays by card and deletes their account between Telegram's pre-checkout
    and the payment's arrival."""
    server = harness.server
    user = harness.user(name)
    await join(user)
    await open_club(user)
    await user.click("💳 Pay PLN\u00a029.00 by card")
    invoice = await user.wait_message(lambda m: "invoice" in m)
    server.delay("answerPreCheckoutQuery", 1.0)
    paying = asyncio.create_task(user.pay(invoice))
    await user.wait_for(lambda: server.calls("answerPreCheckoutQuery"))
    async with sessions() as s:
        member = await find_by_telegram(s, user.user_id)
        assert member is not None
        await delete_member(s, member)
    outcome = await paying
    assert outcome.ok
    return user, outcome


async def test_a_card_payment_from_a_deleted_account_reaches_the_owners(
    card_harness: BotHarness, sessions: Sessions
) -> None:
    owner = card_harness.owner()
    ann, paid = await pay_card_and_leave(card_harness, sessions, "Ann")
    said = text_of(await ann.wait_message("bought nothing"))
    assert "The program's owner has been told and will refund it." in said
    told = text_of(await owner.wait_message("paid PLN"))
    assert paid.charge.provider_payment_charge_id in told
    assert "refund it in your payment provider's dashboard" in told

    # The database failing as it is recorded: the owners are told straight away all the same.
    drop = "NEW.action = 'club_payment_unclaimed'"
    async with connection_drops(sessions, "audit_log", when=drop):
        bob, paid = await pay_card_and_leave(card_harness, sessions, "Bob")
        said = text_of(await bob.wait_message("bought nothing"))
        told = text_of(await owner.wait_message(f"Telegram id {bob.user_id}"))
    assert "The program's owner has been told and will refund it." in said
    assert "paid PLN\u00a029.00 for the club" in told
    assert paid.charge.provider_payment_charge_id in told
    assert await count(sessions, ClubPayment.id.is_not(None)) == 0


async def stop_button(shown: dict[str, Any]) -> str:
    return next(b["callback_data"] for b in inline_buttons(shown) if b["text"] == "Stop renewal")


async def test_stop_renewal_noted_late_is_said_so(harness: BotHarness, sessions: Sessions) -> None:
    server = harness.server
    ann = harness.user("Ann")
    await join(ann)
    paid = await pay_stars(ann)
    shown = await open_club(ann)
    stop = await stop_button(shown)
    async with connection_drops(sessions, "club_memberships"):
        await ann.click(shown, stop)
        answer = await ann.wait_callback_answer()
    assert answer.get("show_alert")
    assert answer["text"].startswith(
        "Telegram has stopped the renewal; the bot could not note it yet"
    )
    assert server.payments.subscription_of(charge_id(paid)).is_canceled
    member = await member_of(sessions, ann)
    async with sessions() as s:
        found = await membership(s, member.id)
    assert found is not None and found.renews  # not noted
    await ann.click(shown, stop)  # later, as it says: Telegram agrees again, and it is noted
    assert "Renewal is stopped" in (await ann.wait_callback_answer())["text"]
    async with sessions() as s:
        found = await membership(s, member.id)
    assert found is not None and not found.renews


async def test_a_double_press_asks_telegram_once(harness: BotHarness, sessions: Sessions) -> None:
    server = harness.server
    ann = harness.user("Ann")
    await join(ann)
    await pay_stars(ann)
    shown = await open_club(ann)
    stop = await stop_button(shown)
    server.delay("editUserStarSubscription", 0.5)  # the first press still waits on Telegram
    first = await ann.click(shown, stop)
    second = await ann.click(shown, stop)
    answers = [(await ann.wait_callback_answer(q))["text"] for q in (first, second)]
    assert len(server.calls("editUserStarSubscription")) == 1
    assert sorted(answers) == [
        "Renewal is already stopped. Nothing was changed.",
        "Renewal is stopped: your membership ends at the end of the time paid for.",
    ]

    def screen_buttons() -> list[str]:
        return [
            b["text"]
            for b in inline_buttons(server.message(ann.user_id, shown["message_id"]) or {})
        ]

    await ann.wait_for(lambda: screen_buttons() == [EXTEND, "Resume renewal"])


async def test_the_grace_day_says_the_renewal_is_on_its_way(
    harness: BotHarness, sessions: Sessions
) -> None:
    ann = harness.user("Ann")
    await join(ann)
    await pay_stars(ann)
    shown = await open_club(ann)
    stop = await stop_button(shown)
    member = await member_of(sessions, ann)
    ended = datetime.now(UTC) - timedelta(hours=1)
    async with sessions() as s:  # the month ended an hour ago; Telegram's renewal not here yet
        await s.execute(
            update(ClubMembership)
            .where(ClubMembership.member_id == member.id)
            .values(ends_at=ended, subscription_until=ended)
        )
        await s.execute(  # and the payment's period with it, as if paid a month before
            update(ClubPayment)
            .where(ClubPayment.member_id == member.id)
            .values(period_from=ended - CLUB_PERIOD, period_until=ended)
        )
        await s.commit()
    pending = "its payment can take up to a day to reach us"
    assert pending in text_of(await open_club(ann))
    await ann.click(shown, stop)  # the button from before
    answer = await ann.wait_callback_answer()
    assert pending in answer["text"]
    assert "no Telegram Stars subscription" not in answer["text"]
    assert not harness.server.calls("editUserStarSubscription")


async def test_stars_telegram_would_not_give_back_are_refunded_by_the_owner_later(
    harness: BotHarness, sessions: Sessions
) -> None:
    server = harness.server
    cy, owner = harness.user("Cy"), harness.owner()
    await join(cy)
    paid = await pay_stars(cy)
    async with sessions() as s:  # deleted, its subscription not cancelled
        member = await find_by_telegram(s, cy.user_id)
        assert member is not None
        await delete_member(s, member)
    server.fail_next("refundStarPayment", code=400, description="Bad Request: USER_ID_INVALID")
    renewal = cy.renew(charge_id(paid))
    assert renewal is not None
    await cy.wait_message("could not be refunded automatically")
    told = text_of(await owner.wait_message("paid 250 ⭐ for the club"))
    command = f"/club_refund {cy.user_id} {renewal.telegram_payment_charge_id} 250"
    assert told.endswith(f"To refund the Stars, send:\n{command}")
    await owner.send(command)
    done = text_of(await owner.wait_message("Refunded"))
    # On record as left to the owners, not refunded: now recorded as refunded.
    assert f"(charge {renewal.telegram_payment_charge_id}). Recorded." in done
    assert done.endswith("They were told.")
    assert renewal.refunded
    await cy.wait_message("was refunded")
