"""Conversation steps shared by the till's end-to-end tests."""

from __future__ import annotations

from typing import Any

from tests.botharness import BOT_USERNAME, BotHarness
from tests.fakegram import UserClient, text_of

EARN, REDEEM = "🧾 Sale: earn points", "💳 Sale: use points"  # the panel's two sales


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


async def open_panel(
    cashier: UserClient, member: UserClient | bytes, *, by_link: bool = False
) -> dict[str, Any]:
    """The cashier opens the member's panel: photographs their QR card (`member` may be the
    photo itself, taken earlier) or, `by_link`, opens the card's deep link as the camera
    does. Returns the panel."""
    if by_link:
        assert isinstance(member, UserClient)
        await cashier.send("/start " + await card_link_payload(member))
    else:
        photo = member if isinstance(member, bytes) else await card_photo(member)
        await cashier.send_photo(photo)
    return await cashier.wait_message("Points can pay up to")


async def start_sale(
    cashier: UserClient, member: UserClient | bytes, button: str = EARN, *, by_link: bool = False
) -> dict[str, Any]:
    """Open the member's panel and start a sale (EARN or REDEEM): returns the amount prompt."""
    await open_panel(cashier, member, by_link=by_link)
    await cashier.click(button)
    return await cashier.wait_message("Enter the purchase amount")
