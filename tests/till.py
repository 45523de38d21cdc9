"""Conversation steps shared by the till's end-to-end tests."""

from __future__ import annotations

from tests.botharness import BOT_USERNAME, BotHarness
from tests.fakegram import UserClient, text_of


async def join(user: UserClient) -> None:
    await user.send("/start")
    await user.wait_message("one card for")
    await user.click("✅ I accept the rules, join")
    await user.wait_message("offers")


async def hire(harness: BotHarness, person: UserClient, partner: str, role: str) -> None:
    owner = harness.owner()
    await owner.send(f"/staff_invite {partner} {role}")
    link = text_of(await owner.wait_message("one-time invite")).split()[-1]
    await person.send("/start " + link.split("start=")[1])
    await person.wait_message("You are now")


async def card_photo(member: UserClient) -> bytes:
    """The QR card photo the bot sent the member, as bytes (what a cashier photographs)."""
    await member.send("/card")
    photo = await member.wait_message(lambda m: "photo" in m)
    server = member.server
    return server.file(photo["photo"][-1]["file_id"]).data


async def card_link_payload(member: UserClient) -> str:
    from bot.views.qr import decode_qr

    (link,) = decode_qr(await card_photo(member))
    return link.removeprefix(f"https://t.me/{BOT_USERNAME}?start=")
