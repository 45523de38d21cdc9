"""Gifts and donations end to end: the real dispatcher over HTTP against the fake Bot API.
The ledger's invariants are checked after each test (the `sessions` fixture)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.callbacks import GiftCb
from bot.workers.jobs import return_gifts
from db.ledger.models import Gift, Transaction
from db.rules.program import Program
from db.usecases.donations import donate
from db.usecases.members import MemberInfo, find_by_telegram, get_member
from db.usecases.purchases import Sale, record_sale
from tests.botharness import BOT_USERNAME, OWNER_ID, BotHarness, running_bot
from tests.fakegram import UserClient, inline_buttons, text_of
from tests.test_bot_member import join
from tests.test_gifts import gifts_program
from tests.till import card_photo, hire

Sessions = async_sessionmaker[AsyncSession]
LINK = f"https://t.me/{BOT_USERNAME}?start="


@pytest.fixture
def program() -> Program:
    return gifts_program(per_day=1000)


async def member_of(sessions: Sessions, user: UserClient) -> MemberInfo:
    async with sessions() as s:
        member = await find_by_telegram(s, user.user_id)
    assert member is not None
    return member


async def fund(sessions: Sessions, program: Program, user: UserClient) -> None:
    """+1000 points (a 200.00 sale at the café, posted without a notice)."""
    member = await member_of(sessions, user)
    async with sessions() as s:
        await record_sale(
            s,
            program,
            Sale(
                member_id=member.id,
                partner="coffee",
                amount=Decimal("200"),
                key=f"fund-{member.id}",
            ),
        )


async def wallet(sessions: Sessions, user: UserClient) -> tuple[int, int]:
    member = await member_of(sessions, user)
    async with sessions() as s:
        full = await get_member(s, member.id)  # with its held points
    return full.balance, full.held


async def count(sessions: Sessions, *where: Any) -> int:
    async with sessions() as s:
        return int(await s.scalar(select(func.count()).where(*where)) or 0)


async def shown(user: UserClient, message: dict[str, Any], needle: str) -> str:
    """The message once an edit put `needle` in it."""
    server = user.server
    await user.wait_for(
        lambda: needle in text_of(server.message(user.user_id, message["message_id"]))
    )
    return text_of(server.message(user.user_id, message["message_id"]) or {})


async def make_gift(user: UserClient, points: int) -> str:
    """/gift POINTS, confirmed: the gift link's start parameter."""
    await user.send(f"/gift {points}")
    ask = await user.wait_message("to a friend?")
    await user.click("✅ Confirm")
    ready = await shown(user, ask, "is ready")
    link = next(word for word in ready.split() if word.startswith(LINK))
    return link.removeprefix(LINK)


async def test_a_gift_link_accepted_by_a_friend(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    ann, bob = harness.user("Ann"), harness.user("Bob")
    await join(ann)
    await join(bob)
    await fund(sessions, program, ann)  # 1050

    await ann.send("/gift")
    prompt = text_of(await ann.wait_message("How many points"))
    assert "up to 1,000 points" in prompt  # the day's allowance, below the 1,050 she has
    await ann.send("abc")
    await ann.wait_message("Send a whole number of points, like 200.")
    await ann.send("1001")
    await ann.wait_message("at most 1,000 points a day, and 1,000 points are left today")
    await ann.send("300")
    ask = await ann.wait_message("Give 300 points (worth PLN\u00a03.00) to a friend?")
    data = next(b["callback_data"] for b in inline_buttons(ask) if b["text"] == "✅ Confirm")
    first = await ann.click(ask, data)
    await ann.wait_callback_answer(first)
    second = await ann.click(ask, data, check=False)  # a double tap: one gift
    await ann.wait_callback_answer(second)
    ready = await shown(ann, ask, "is ready")
    assert await count(sessions, Gift.status == "open") == 1
    assert await wallet(sessions, ann) == (1050, 300)
    link = next(word for word in ready.split() if word.startswith(LINK))
    payload = link.removeprefix(LINK)
    assert len(payload) == 17 and payload.startswith("g")
    share = inline_buttons(harness.server.message(ann.user_id, ask["message_id"]) or {})[0]
    assert share["url"].startswith("https://t.me/share/url?url=" + quote(link, safe=""))

    await bob.send("/start " + payload)
    offer = await bob.wait_message("Accept 300 points from Ann?")
    await bob.click("✅ Accept")
    await shown(bob, offer, "Accepted: 300 points are yours.")
    news = text_of(await bob.wait_message("a gift from Ann"))
    assert news == "🎁 +300 points: a gift from Ann.\nBalance: 350 points."
    assert text_of(await ann.wait_message("accepted your gift")) == (
        "🎀 Bob accepted your gift of 300 points."
    )
    assert await wallet(sessions, ann) == (750, 0)
    assert await wallet(sessions, bob) == (350, 0)

    # The link is spent: Bob again, and Ann herself, are told so; nothing moves.
    await bob.send("/start " + payload)
    await bob.wait_message("You have already accepted this gift.")
    await ann.send("/start " + payload)
    await ann.wait_message("This is your own gift of 300 points")
    await bob.send("/history")
    assert "a gift from a friend: +300 points" in text_of(await bob.wait_message("Transactions"))
    await ann.send("/history")
    assert "your gift to a friend: −300 points" in text_of(await ann.wait_message("Transactions"))
    assert await count(sessions, Transaction.kind == "gift") == 1


async def test_the_giver_cannot_accept_their_own_gift(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    ann = harness.user("Ann")
    await join(ann)
    await fund(sessions, program, ann)
    payload = await make_gift(ann, 100)
    await ann.send("/start " + payload)
    own = await ann.wait_message("This is your own gift")
    assert not inline_buttons(own)
    # A forged Accept button is refused by the use case itself.
    query = await ann.click(own, GiftCb(action="accept", code=payload[1:]).pack(), check=False)
    answer = await ann.wait_callback_answer(query)
    assert answer["text"].startswith("You cannot accept your own gift")
    assert await wallet(sessions, ann) == (1050, 100)
    assert await count(sessions, Gift.status == "open") == 1


async def test_joining_through_a_gift_link_then_accepting(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    ann, cleo = harness.user("Ann"), harness.user("Cleo")
    await join(ann)
    await fund(sessions, program, ann)
    payload = await make_gift(ann, 250)

    await cleo.send("/start " + payload)
    await cleo.wait_message("Ann gives you 250 points! Join Test Bonus below to accept them.")
    await cleo.wait_message("one card for")
    await cleo.click("✅ I accept the rules, join")
    await cleo.wait_message("You are in")
    await cleo.wait_message("offers")
    await cleo.wait_message("Accept 250 points from Ann?")  # carried through joining
    await cleo.click("✅ Accept")
    assert "Balance: 300 points." in text_of(await cleo.wait_message("a gift from Ann"))
    assert await wallet(sessions, cleo) == (50 + 250, 0)
    assert await wallet(sessions, ann) == (800, 0)


async def test_open_gifts_are_listed_and_taken_back(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    ann, bob = harness.user("Ann"), harness.user("Bob")
    await join(ann)
    await join(bob)
    await fund(sessions, program, ann)
    payload = await make_gift(ann, 200)
    await ann.send("/gift")
    listing = await ann.wait_message("Your gifts waiting for a friend")
    assert LINK + payload in text_of(listing)
    await ann.wait_message("How many points")  # the question still follows the list
    query = await ann.click(listing, inline_buttons(listing)[0]["callback_data"])
    answer = await ann.wait_callback_answer(query)
    assert answer["text"] == "↩️ 200 points are yours again: the link no longer works."
    await shown(ann, listing, "No gifts are waiting for a friend.")
    assert await wallet(sessions, ann) == (1050, 0)
    await bob.send("/start " + payload)
    await bob.wait_message("This gift is no longer available")
    await ann.send("/cancel")  # leaves the question: nothing was held
    await ann.wait_message("Cancelled.")
    assert await count(sessions, Gift.status == "open") == 0


async def test_an_unaccepted_gift_returns_to_its_giver(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    ann, bob = harness.user("Ann"), harness.user("Bob")
    await join(ann)
    await join(bob)
    await fund(sessions, program, ann)
    payload = await make_gift(ann, 100)
    assert await return_gifts(harness.runtime, now=datetime.now(UTC) + timedelta(days=6)) == 0
    week = datetime.now(UTC) + timedelta(days=7, seconds=1)
    assert await return_gifts(harness.runtime, now=week) == 1
    told = text_of(await ann.wait_message("Nobody accepted"))
    assert told == (
        "↩️ Nobody accepted your gift of 100 points within 7 days: the points are yours again."
    )
    assert await wallet(sessions, ann) == (1050, 0)
    await bob.send("/start " + payload)
    await bob.wait_message("This gift is no longer available")
    assert await return_gifts(harness.runtime, now=week) == 0


async def test_gifting_off_says_so(engine: AsyncEngine, sessions: Sessions) -> None:
    async with running_bot(engine, sessions, gifts_program(per_day=0)) as harness:
        ann = harness.user("Ann")
        await join(ann)
        await ann.send("/gift 10")
        await ann.wait_message("Gifting points to other members is off in this program.")
        assert await count(sessions, Gift.id.is_not(None)) == 0


async def test_donating_to_a_charity(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    ann = harness.user("Ann")
    await join(ann)
    await fund(sessions, program, ann)
    await ann.send("/donate")
    listing = text_of(await ann.wait_message("Give points to a good cause"))
    assert "Happy Paws Shelter (animal shelter)" in listing and "📍 1 Kennel Road" in listing
    await ann.click("🤍 Happy Paws Shelter")
    await ann.wait_message("How many points for Happy Paws Shelter?")
    await ann.send("5000")
    await ann.wait_message("You can give at most 1,050 points now")
    await ann.send("200")
    ask = await ann.wait_message("Give 200 points (worth PLN\u00a02.00) to Happy Paws Shelter?")
    data = next(b["callback_data"] for b in inline_buttons(ask) if b["text"] == "🤍 Donate")
    for _ in range(2):  # a double tap gives once
        await ann.wait_callback_answer(await ann.click(ask, data, check=False))
    await shown(ann, ask, "You gave 200 points to Happy Paws Shelter.")
    thanks = text_of(await ann.wait_message("Thank you!"))
    assert thanks == (
        "🤍 Thank you! You gave 200 points (worth PLN\u00a02.00) to Happy Paws Shelter.\n"
        "Balance: 850 points."
    )
    assert await count(sessions, Transaction.kind == "donation") == 1
    assert await wallet(sessions, ann) == (850, 0)
    await ann.send("/history")
    history = text_of(await ann.wait_message("Transactions"))
    assert "🤍 Donated 200 points to Happy Paws Shelter" in history
    await ann.send("/partners")
    partners = text_of(await ann.wait_message("Our partners"))
    assert "Happy Paws Shelter</b>" not in partners  # plain text as read
    assert "Happy Paws Shelter (animal shelter): a charity, give it points with /donate" in (
        partners
    )


async def test_a_charity_sells_nothing_and_sees_its_donations(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    carla, ann = harness.user("Carla"), harness.user("Ann")
    await hire(harness, carla, "shelter", "manager")
    await join(ann)
    await fund(sessions, program, ann)
    await carla.send_photo(await card_photo(ann))
    refused = text_of(await carla.wait_message("charity"))
    assert refused == (
        "This partner is a charity: it takes members' donated points (/donate), not sales. "
        "Nothing was posted."
    )
    assert await count(sessions, Transaction.partner_id.is_not(None)) == 1  # the funding sale

    member = await member_of(sessions, ann)
    async with sessions() as s:
        await donate(s, program, member_id=member.id, charity="shelter", points=300, key="d1")
    await carla.send("/today")
    today = text_of(await carla.wait_message("Today"))
    assert "🤍 Donations: 1 from 1 member, 300 points worth PLN\u00a03.00" in today
    owner = harness.owner()
    await owner.send("/stats")
    stats = text_of(await owner.wait_message("Donations"))
    assert "🤍 Donations: 1 from 1 member, 300 points worth PLN\u00a03.00" in stats


async def test_gift_and_donate_are_member_commands(
    engine: AsyncEngine, sessions: Sessions, program: Program
) -> None:
    async with running_bot(engine, sessions, program, admin_ids=[OWNER_ID]) as harness:
        ann = harness.user("Ann")
        await join(ann)
        await ann.send("/help")
        help_text = text_of(await ann.wait_message("What I can do"))
        assert "/gift [POINTS]: give points to a friend" in help_text
        assert "/donate: give points to one of the program's charities" in help_text
        await ann.press("🤍 Donate")
        await ann.wait_message("Give points to a good cause")
        await ann.press("🎀 Give points")
        await ann.wait_message("How many points")
