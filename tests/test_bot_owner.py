"""The owner's tools read like a shop's records: people and partners by name, card numbers
as /card shows them. End to end through the fake Bot API."""

from __future__ import annotations

from html import escape

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.rules.cards import format_card_number
from db.usecases.members import find_by_telegram
from tests.botharness import BotHarness
from tests.fakegram import UserClient, text_of
from tests.till import hire, join

Sessions = async_sessionmaker[AsyncSession]


async def card_of(sessions: Sessions, user: UserClient) -> str:
    async with sessions() as s:
        member = await find_by_telegram(s, user.user_id)
    assert member is not None
    return member.card_number


async def test_staff_list_and_revoke_name_people_and_partners(harness: BotHarness) -> None:
    owner = harness.owner()
    carl, mia = harness.user("Carl <b>"), harness.user("Mia")
    await hire(harness, carl, "coffee", "cashier")
    await hire(harness, mia, "books", "manager")
    await owner.send("/staff_list")
    listing = text_of(await owner.wait_message("Staff"))
    lines = listing.split("\n")
    assert lines[1].endswith(": Mia · manager · Chapter One Books"), lines
    assert lines[2].endswith(": Carl <b> · cashier · Bean There Coffee"), lines
    assert "tg " not in listing and "coffee" not in listing
    carl_id = lines[2].split(":")[0]
    await owner.send(f"/staff_revoke {carl_id}")
    revoked = text_of(await owner.wait_message("Revoked"))
    assert "Carl <b> · cashier · Bean There Coffee" in revoked


async def test_an_invite_names_the_partner(harness: BotHarness) -> None:
    owner = harness.owner()
    await owner.send("/staff_invite coffee cashier")
    invite = text_of(await owner.wait_message("one-time invite"))
    assert invite.startswith("A one-time invite for a cashier (Bean There Coffee), valid 24 h")
    await owner.send("/staff_invite marketer")
    invite = text_of(await owner.wait_message("for a marketer"))
    assert invite.startswith("A one-time invite for a marketer, valid 24 hours.")


async def test_adjust_takes_the_card_number_as_card_shows_it(
    harness: BotHarness, sessions: Sessions
) -> None:
    owner, ann = harness.owner(), harness.user("Ann & Co")
    await join(ann)
    number = await card_of(sessions, ann)
    grouped = format_card_number(number)
    assert " " in grouped
    await owner.send(f"/adjust {grouped} +25 birthday gift")
    done = text_of(await owner.wait_message("Done"))
    assert done == f"Done: +25 for Ann & Co (card {grouped}). Balance: 75 points."
    assert "birthday gift" in text_of(await ann.wait_message("birthday"))
    await owner.send(f"/adjust {number} -10 typo")
    assert "Balance: 65 points" in text_of(await owner.wait_message("Done"))
    for bad in (
        f"/adjust {grouped[:-1]} +5 short",  # eleven digits
        f"/adjust {grouped} 1 +5 thirteen digits",
        f"/adjust {grouped} 5 unsigned points",
        f"/adjust {grouped} +5",  # no reason
        "/adjust",
    ):
        await owner.send(bad)
        assert "/adjust 4507 1667 1208 +50 reason" in text_of(await owner.wait_message("Usage"))
    async with sessions() as s:
        member = await find_by_telegram(s, ann.user_id)
    assert member is not None and member.balance == 65


async def test_audit_names_actors_members_and_partners(
    harness: BotHarness, sessions: Sessions
) -> None:
    owner, carl, ann = harness.owner(), harness.user("Carl"), harness.user("Ann")
    await hire(harness, carl, "coffee", "cashier")
    await join(ann)
    number = await card_of(sessions, ann)
    await owner.send(f"/adjust {number} +25 birthday")
    await owner.wait_message("Done")
    await carl.send(number)
    await carl.wait_message("Points can pay up to")
    await owner.send("/audit")
    log = text_of(await owner.wait_message("staff actions")).split("\n")
    lookup, adjust, join_line, invite = log[1:5]
    assert " · Carl · lookup · Bean There Coffee · member: Ann (" in lookup, lookup
    assert format_card_number(number) in lookup
    assert " · owner · adjust · member: Ann (" in adjust and "reason=birthday" in adjust
    assert " · Carl · staff_join · Bean There Coffee" in join_line, join_line
    assert " · owner · staff_invite · Bean There Coffee" in invite, invite
    assert "tg " not in "\n".join(log) and escape("coffee ") not in "\n".join(log)
