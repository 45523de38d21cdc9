"""Birthdays, personal offers and /offers through the real bot and the fake Bot API, on a
fixed clock: the birthday given, refused when mistyped, changed once a year and removed in
/privacy; the daily job's offers delivered by the campaign worker in the member's language
with the "stop offers" button (and not to a member who opted out after being queued);
/offers for a member in their birthday week who has not visited every partner."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.views import offers as views
from bot.workers.delivery import DeliveryWorker
from bot.workers.jobs import tell_offers
from db.ledger.models import Member, Outbox, PromotionUse
from db.rules.program import Program, parse_program
from db.usecases.members import find_by_telegram
from db.usecases.purchases import Sale, record_sale
from tests.botharness import BotHarness
from tests.fakegram import UserClient, inline_buttons, text_of
from tests.test_offers import NOW, OFFERS_PROGRAM

Sessions = async_sessionmaker[AsyncSession]

BOT_PROGRAM: dict[str, Any] = {
    **OFFERS_PROGRAM,
    "partners": [
        {
            **OFFERS_PROGRAM["partners"][0],
            "offers": [{"title": "Happy hour", "text": "Cakes at half price after 18:00"}],
        },
        *OFFERS_PROGRAM["partners"][1:],
    ],
}


@pytest.fixture
def program() -> Program:
    return parse_program(BOT_PROGRAM)


def fix_clock(harness: BotHarness, now: datetime) -> None:
    harness.dp["clock"].fixed = now  # the dispatcher's (bot.app.Clock)


async def join(user: UserClient, offers: bool = True) -> None:
    await user.send("/start")
    await user.wait_message("one card for")
    await user.click("✅ I accept the rules, join")
    await user.wait_message("offers")
    await user.click("Yes, send me offers" if offers else "No, thanks")
    await user.wait_message("/card")


async def member_of(sessions: Sessions, user: UserClient) -> int:
    async with sessions() as s:
        member = await find_by_telegram(s, user.user_id)
    assert member is not None
    return member.id


async def set_member(sessions: Sessions, user: UserClient, **values: Any) -> None:
    member = await member_of(sessions, user)
    async with sessions() as s, s.begin():
        await s.execute(update(Member).where(Member.id == member).values(**values))


async def birthday_of(sessions: Sessions, user: UserClient) -> date | None:
    member = await member_of(sessions, user)
    async with sessions() as s:
        return await s.scalar(select(Member.birthday).where(Member.id == member))


async def test_a_photo_while_the_birthday_is_asked_for_asks_again(
    harness: BotHarness, sessions: Sessions
) -> None:
    fix_clock(harness, NOW)
    ann = harness.user("Ann")
    await join(ann)
    await ann.send("/privacy")
    await ann.wait_message("Your data")
    await ann.click("🎂 Give my birthday")
    await ann.wait_message("Send your birthday")
    await ann.send_photo(b"not a birthday")
    assert "like 14.03" in text_of(await ann.wait_message("That is not a date"))
    await ann.send("14.03")  # still asked for: taken
    assert "14 March" in text_of(await ann.wait_message("Your birthday"))
    assert await birthday_of(sessions, ann) == date(2000, 3, 14)


async def test_birthday_given_refused_changed_once_a_year_and_removed(
    harness: BotHarness, sessions: Sessions
) -> None:
    fix_clock(harness, NOW)
    ann = harness.user("Ann")
    await join(ann)
    await ann.send("/privacy")
    overview = text_of(await ann.wait_message("Your data"))
    assert "we keep only its day and month, for the birthday promotions" in overview
    assert "Birthday: not given." in overview

    await ann.click("🎂 Give my birthday")
    assert "like 14.03" in text_of(await ann.wait_message("Send your birthday"))
    for typed, answer in [
        ("31.02", "There is no such day."),
        ("hello", "That is not a date."),
        ("01.01.2999", "That day has not come yet."),
        ("01.01.1800", "Please check the year"),
    ]:
        await ann.send(typed)
        await ann.wait_message(answer)
    assert await birthday_of(sessions, ann) is None  # nothing changed
    await ann.send("14.03.1990")
    saved = text_of(await ann.wait_message("Your birthday"))
    assert "🎂 Your birthday: 14 March." in saved
    assert "You may change it once a year: from 10 Mar 2028." in saved
    assert await birthday_of(sessions, ann) == date(2000, 3, 14)
    await ann.send("15.03")  # the dialog is over: not taken as a birthday
    assert await birthday_of(sessions, ann) == date(2000, 3, 14)

    await ann.send("/privacy")
    overview = text_of(await ann.wait_message("Your data"))
    assert "Birthday: 14 March. You may change it from 10 Mar 2028." in overview
    await ann.click("🎂 Change my birthday")
    assert "you may change it from 10 Mar 2028" in text_of(await ann.wait_message("once a year"))
    await ann.click("Remove it")
    assert (await ann.wait_callback_answer())["text"] == "Your birthday is removed."
    redrawn = await ann.wait_for(
        lambda: next(
            (m for m in ann.messages if "Birthday: not given. You can" in text_of(m)), None
        )
    )
    # The screen says before any tap when it can be given again (removing it did not
    # restart the year).
    assert "Birthday: not given. You can give it again from 10 Mar 2028." in text_of(redrawn)
    assert "🎂 Give my birthday" in [b["text"] for b in inline_buttons(redrawn)]
    assert await birthday_of(sessions, ann) is None
    await ann.send("/privacy")
    overview = text_of(await ann.wait_message("Your data"))
    assert "Birthday: not given. You can give it again from 10 Mar 2028." in overview
    # Given again within the year: a change, refused until the date said.
    await ann.click("🎂 Give my birthday")
    refused = text_of(await ann.wait_message("once a year"))
    assert "you can give it again from 10 Mar 2028" in refused
    assert "remove it at any time" not in refused

    fix_clock(harness, NOW + timedelta(days=366))
    await ann.click("🎂 Give my birthday")
    await ann.wait_message("Send your birthday")
    await ann.send("/cancel")
    await ann.wait_message("Cancelled.")
    assert await birthday_of(sessions, ann) is None
    await ann.click("🎂 Give my birthday")
    await ann.wait_message("Send your birthday")
    await ann.send("29.02")
    assert "29 February" in text_of(await ann.wait_message("Your birthday"))
    assert await birthday_of(sessions, ann) == date(2000, 2, 29)


async def test_personal_offers_go_out_once_in_the_members_language_with_stop_offers(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    ann, ola, carl, dan = (
        harness.user("Ann"),
        harness.user("Ola"),
        harness.user("Carl"),
        harness.user("Dan"),
    )
    for user in (ann, ola, carl):
        await join(user)
    await join(dan, offers=False)
    # They joined 100 days before the job runs and never bought: the win-back is theirs.
    for user in (ann, ola, carl, dan):
        await set_member(sessions, user, joined_at=NOW - timedelta(days=100))
    await set_member(sessions, ola, language="pl")  # as if she chose Polish in /language

    assert await tell_offers(harness.runtime, now=NOW) == 3
    await set_member(sessions, carl, marketing_consent=False)  # after being queued
    worker = DeliveryWorker(
        harness.bot,
        harness.runtime.engine,
        sessions,
        harness.dp["i18n_core"],
        rate=1000,
        program=program,
    )
    await worker.run_until_idle(now=lambda: NOW)

    message = await ann.wait_message("We have missed you")
    offer = text_of(message)
    assert "We missed you: 150 points" in offer
    assert "You get: 150 points more on the purchase" in offer
    assert "Where: at every partner" in offer and "When: every day" in offer
    assert [b["text"] for b in inline_buttons(message)] == ["🔕 Stop offers"]
    assert "Tęskniliśmy: 150 punktów" in text_of(await ola.wait_message("Tęskniliśmy"))
    assert not any("missed you" in text_of(m) for m in carl.messages + dan.messages)
    async with sessions() as s:
        statuses = sorted((await s.scalars(select(Outbox.status))).all())
    assert statuses == ["sent", "sent", "skipped"]

    # Told once: the next day's run tells nobody again.
    assert await tell_offers(harness.runtime, now=NOW + timedelta(days=1)) == 0
    await ann.click("🔕 Stop offers")
    assert "Offers are off" in (await ann.wait_callback_answer())["text"]
    async with sessions() as s:
        member = await find_by_telegram(s, ann.user_id)
    assert member is not None and not member.marketing_consent


async def test_offers_for_a_member_in_their_birthday_week(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    fix_clock(harness, NOW)
    ann = harness.user("Ann")
    await join(ann)
    await set_member(sessions, ann, joined_at=NOW - timedelta(days=100), birthday=date(2000, 3, 8))
    async with sessions() as s:
        await record_sale(
            s,
            program,
            Sale(
                member_id=await member_of(sessions, ann),
                partner="gym",
                amount=Decimal("20.00"),
                key="g",
                # before her birthday week: a sale in it would take the birthday bonus
                now=NOW - timedelta(days=5),
            ),
        )
    await ann.send("/help")
    assert "/offers: the promotions open to you" in text_of(await ann.wait_message("/offers"))
    await ann.press("🎉 Offers")
    screen = text_of(await ann.wait_message("Offers for you"))
    assert "200 points in your birthday week" in screen
    birthday = screen.split("200 points in your birthday week")[1].split("\n\n")[0]
    # Only the birthday week: the promotion has no days or hours of its own.
    assert "In your birthday week: 8 Mar 2027 – 14 Mar 2027" in birthday
    assert "When:" not in birthday, birthday
    assert "You can get it 1 more time." in birthday
    first_visit = screen.split("100 points for a first visit")[1].split("\n\n")[0]
    assert "Where: Golden Crust Bakery" in first_visit  # not the gym: she has been there
    assert "For a purchase of at least PLN\u00a010.00" in first_visit
    assert "Once at each of these partners." in first_visit
    weekend = screen.split("Double points at the bakery on weekend mornings")[1]
    assert "When: Sat, Sun, 07:00–11:00" in weekend
    assert "When: from 1 Jun 2027 to 31 Aug 2027" in screen.split("Summer bonus")[1]
    for absent in ("We missed you", "Gold spring", "Winter bonus"):
        assert absent not in screen
    assert "Partners' offers" in screen
    assert "Bean There Coffee: Happy hour: Cakes at half price after 18:00" in screen


async def test_no_offers_said_plainly(harness: BotHarness) -> None:
    bare = parse_program({k: v for k, v in BOT_PROGRAM.items() if k != "promotions"})
    i18n = harness.dp["i18n_core"]
    with i18n.context(), i18n.use_locale("en"):
        screen = views.screen(bare, [], NOW.date())
    assert "No promotions are open to you right now." in screen
    assert "Happy hour" in screen


async def test_a_birthday_used_this_year_shows_the_next_birthday_week(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    fix_clock(harness, NOW)
    ann = harness.user("Ann")
    await join(ann)
    await set_member(sessions, ann, joined_at=NOW - timedelta(days=100), birthday=date(2000, 3, 8))
    async with sessions() as s, s.begin():  # this birthday's bonus was given at a sale
        member = await member_of(sessions, ann)
        s.add(PromotionUse(promotion="birthday@2027", member_id=member, uses=1))
    await ann.press("🎉 Offers")
    screen = text_of(await ann.wait_message("Offers for you"))
    birthday = screen.split("200 points in your birthday week")[1].split("\n\n")[0]
    assert "In your birthday week, next: 8 Mar 2028 – 14 Mar 2028" in birthday, birthday
    assert "At most 1 time in your birthday week." in birthday
    assert "When:" not in birthday and "more time" not in birthday

    # The personal offer in the birthday week: the week, not "every day".
    i18n = harness.dp["i18n_core"]
    with i18n.context(), i18n.use_locale("en"):
        told = views.personal_offer(
            program,
            {"promotion": "birthday", "occasion": "birthday:2027", "until": "2027-03-14"},
            NOW.date(),
        )
    assert told is not None and "When:" not in told
    assert "In your birthday week: 8 Mar 2027 – 14 Mar 2027" in told
