"""The member's side of the bot, end to end: real dispatcher, real HTTP, fake Telegram."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.qr import decode_qr
from db.cards import normalize_card_number
from db.members import find_by_telegram
from db.tokens import read_card_token
from tests.botharness import BOT_USERNAME, BotHarness
from tests.fakegram import UserClient, text_of

Sessions = async_sessionmaker[AsyncSession]


async def join(user: UserClient, start: str = "/start") -> None:
    await user.send(start)
    await user.wait_message()
    await user.click("✅ I accept the rules, join")
    await user.wait_message("You are in")
    await user.wait_message("offers")


async def member_of(sessions: Sessions, user: UserClient):  # type: ignore[no-untyped-def]
    async with sessions() as s:
        return await find_by_telegram(s, user.user_id)


async def test_join_card_and_balance(harness: BotHarness, sessions: Sessions) -> None:
    ann = harness.user("Ann")
    await ann.send("/start")
    rules = await ann.wait_message()
    assert "Test Bonus" in text_of(rules) and "365 days" in text_of(rules)
    await ann.click("✅ I accept the rules, join")
    welcome = await ann.wait_message("You are in")
    assert "50 points" in text_of(welcome)
    await ann.wait_message("offers")
    await ann.click("Yes, send me offers")
    await ann.wait_message("Show your card at the till")
    assert any("You will get offers" in text_of(m) for m in ann.messages)
    member = await member_of(sessions, ann)
    assert member is not None and member.marketing_consent and member.balance == 50

    await ann.send("/start")
    assert "Welcome back" in text_of(await ann.wait_message("Welcome back"))

    await ann.send("/card")
    photo = await ann.wait_message(lambda m: "photo" in m)
    image = harness.server.file(photo["photo"][-1]["file_id"]).data
    (link,) = decode_qr(image)
    prefix = f"https://t.me/{BOT_USERNAME}?start="
    assert link.startswith(prefix)
    token = read_card_token(harness.secret, link.removeprefix(prefix))
    assert token.member_id == member.id
    number = "".join(ch for ch in text_of(photo).split("Card number: ")[1][:14] if ch.isdigit())
    assert normalize_card_number(number) == member.card_number

    await ann.send("/balance")
    balance = text_of(await ann.wait_message("Tier"))
    assert "50 points" in balance and "Bronze" in balance and "Silver" in balance
