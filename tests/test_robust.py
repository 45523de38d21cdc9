"""What a prober sends, end to end through the fake Bot API: forged buttons, arguments out
of range, NUL characters, floods, guessed card numbers, hostile photos. Each gets a clear
answer and changes nothing; nobody else is kept waiting."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import struct
import time
import zlib
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal

import pytest
from PIL import Image
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.views.qr import render_qr
from db.ledger.models import AuditLog, RedemptionRequest, Transaction
from db.rules.cards import luhn_digit
from db.rules.program import Program, parse_program
from db.usecases.members import find_by_telegram
from db.usecases.purchases import Sale, record_sale
from tests.botharness import OWNER_ID, BotHarness, running_bot
from tests.conftest import TEST_PROGRAM
from tests.fakegram import UserClient, text_of
from tests.till import card_photo, hire, join

Sessions = async_sessionmaker[AsyncSession]
SOMETHING_WRONG = "Something went wrong"
GOLD = "Gold: " + "золото" * 9  # 60 characters, 114 bytes


@pytest.fixture
def program() -> Program:
    """The test program, with a partner whose name is full of HTML's special characters and
    a tier whose name has a colon and is longer than callback data may be."""
    partners = [dict(p) for p in TEST_PROGRAM["partners"]]
    partners[1]["name"] = "Tom & <Jerry>"
    tiers = [dict(t) for t in TEST_PROGRAM["tiers"]]
    tiers[2]["name"] = GOLD
    return parse_program({**TEST_PROGRAM, "partners": partners, "tiers": tiers})


@pytest.fixture(autouse=True)
def no_unhandled_exceptions(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """The errors router logs every unhandled exception ("update … failed")."""
    with caplog.at_level(logging.ERROR):
        yield
    records = caplog.get_records("setup") + caplog.get_records("call")
    assert not [r.getMessage() for r in records if r.levelno >= logging.ERROR]


@pytest.fixture
async def roomy(
    engine: AsyncEngine, sessions: Sessions, program: Program
) -> AsyncIterator[BotHarness]:
    """A bot whose flood control lets a fast test script through."""
    async with running_bot(
        engine, sessions, program, admin_ids=[OWNER_ID], flood_rate=1000.0, flood_burst=1000
    ) as harness:
        yield harness


async def member_card(sessions: Sessions, user: UserClient) -> str:
    async with sessions() as s:
        member = await find_by_telegram(s, user.user_id)
    assert member is not None
    return member.card_number


async def count(sessions: Sessions, model: type, *where: object) -> int:
    async with sessions() as s:
        return int(await s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def no_errors(*users: UserClient) -> None:
    for user in users:
        assert not any(SOMETHING_WRONG in text_of(m) for m in user.messages)
    answers = users[0].server.callback_answers.values()
    assert not any(SOMETHING_WRONG in str(a.get("text")) for a in answers)


# --------------------------------------------------------------------------- /history


async def test_history_paging_with_html_in_a_partner_name_and_a_double_tap(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    ann = harness.user("Ann")
    await join(ann)
    async with sessions() as s:
        member = await find_by_telegram(s, ann.user_id)
        assert member is not None
        for i in range(12):
            await record_sale(
                s,
                program,
                Sale(member_id=member.id, partner="books", amount=Decimal(10), key=f"h{i}"),
            )
    await ann.send("/history")
    page = await ann.wait_message("Transactions 1–10 of 13")
    assert "Tom & <Jerry>" in text_of(page)  # as Telegram shows it: plain text
    older = next(b for row in page["reply_markup"]["inline_keyboard"] for b in row)
    for _tap in range(2):  # the second tap finds the page already shown
        query = await ann.click(page, older["callback_data"], check=False)
        answer = await ann.wait_callback_answer(query)
        assert "text" not in answer, answer
        await ann.wait_for(lambda: "Transactions 11–13 of 13" in text_of(ann.messages[-1]))
        await asyncio.sleep(0.2)  # the edit after the answer
    no_errors(ann)


# --------------------------------------------------------------------------- forged input


async def test_forged_buttons_and_arguments_get_clear_answers(
    roomy: BotHarness, sessions: Sessions
) -> None:
    harness = roomy
    ann, carl, mark, owner = (
        harness.user("Ann"),
        harness.user("Carl"),
        harness.user("Mark"),
        harness.owner(),
    )
    await join(ann)
    await hire(harness, carl, "coffee", "cashier")
    await hire(harness, mark, "", "marketer")

    async def pressed(user: UserClient, data: str) -> str:
        query = await user.click(user.messages[-1], data, check=False)
        return str((await user.wait_callback_answer(query)).get("text"))

    # Numbers too large for any row, junk: the button is simply not ours.
    assert "no longer active" in await pressed(ann, "hist:99999999999999999999")
    assert "no longer active" in await pressed(ann, "\x01" * 64)
    assert "no longer active" in await pressed(mark, "camp:now:" + "9" * 30)

    # "Max" of a sale dialog pressed before any amount was entered.
    await carl.send(await member_card(sessions, ann))
    await carl.wait_message("Points can pay up to")
    panel = carl.messages[-1]
    dialog = panel["reply_markup"]["inline_keyboard"][0][0]["callback_data"].split(":")[2]
    assert "Enter the purchase amount first" in await pressed(carl, f"till:max:{dialog}")

    # A campaign filter the menu never offered.
    await mark.send("/campaign")
    await mark.wait_message("New campaign")
    await pressed(mark, "seg:since:99999999")
    await mark.wait_message("That choice is no longer available")
    await mark.wait_message("New campaign")

    await owner.send("/stats 9999-12")
    await owner.wait_message("I do not understand that period")
    await owner.send("/staff_revoke ²")
    await owner.wait_message("Usage: /staff_revoke")
    await owner.send("/adjust 1234 +99999999999999999999 x")
    await owner.wait_message("Usage: /adjust")

    # NUL can be in no text the database keeps.
    await carl.click(panel, f"till:earn:{dialog}")
    await carl.wait_message("Enter the purchase amount")
    await carl.send("12.50 #A\x001")
    await carl.wait_message("a character I cannot accept")
    nul = harness.user("Nu\x00l")
    await join(nul)
    async with sessions() as s:
        joined = await find_by_telegram(s, nul.user_id)
    assert joined is not None and joined.first_name == "Nul"

    assert await count(sessions, Transaction, Transaction.kind.in_(("earn", "redeem"))) == 0
    assert await count(sessions, RedemptionRequest) == 0
    no_errors(ann, carl, mark, owner)


async def test_campaign_audience_by_a_tier_named_with_a_colon_and_long(
    harness: BotHarness,
) -> None:
    mark = harness.user("Mark")
    await hire(harness, mark, "", "marketer")
    await mark.send("/campaign")
    await mark.wait_message("New campaign")
    await mark.click("Tier")
    await mark.wait_for(lambda: GOLD in str(mark.messages[-1].get("reply_markup")))
    await mark.click(GOLD)
    await mark.wait_for(lambda: f"tier {GOLD}" in text_of(mark.messages[-1]))
    no_errors(mark)


# --------------------------------------------------------------------------- flood control


async def test_a_flooding_user_does_not_delay_others_and_is_told_once(
    harness: BotHarness,
) -> None:
    flooder, ann = harness.user("Flo"), harness.user("Ann")
    await join(flooder)
    await join(ann)
    started = time.monotonic()  # Ann's answer on a quiet bot, to compare with
    await ann.send("/balance")
    await ann.wait_message("Tier")
    quiet = time.monotonic() - started
    for _ in range(300):
        await flooder.send("/balance")
    started = time.monotonic()
    await ann.send("/balance")
    await ann.wait_message("Tier")
    # Not queued behind the flood: about as fast as on a quiet bot (300 updates answered
    # in turn would take seconds), with room for a loaded machine.
    assert time.monotonic() - started < 1.0 + 5 * quiet
    await flooder.wait_message("too fast")
    await asyncio.sleep(0.5)
    texts = [text_of(m) for m in flooder.messages]
    assert sum("too fast" in t for t in texts) == 1
    assert sum("Tier" in t for t in texts) <= 21


# --------------------------------------------------------------------------- card numbers


def _number(n: int) -> str:
    payload = f"{n:011d}"
    return payload + luhn_digit(payload)


async def test_guessed_card_numbers_are_audited_and_limited(
    roomy: BotHarness, sessions: Sessions
) -> None:
    from db.usecases.till import LOOKUP_FAILURES

    harness = roomy
    ann, carl = harness.user("Ann"), harness.user("Carl")
    await join(ann)
    await hire(harness, carl, "coffee", "cashier")
    real = await member_card(sessions, ann)
    guesses = [n for n in (_number(i) for i in range(1, 100)) if n != real]
    for guess in guesses[:LOOKUP_FAILURES]:
        await carl.send(guess)
        await carl.wait_message("No such member")
    await carl.send(guesses[LOOKUP_FAILURES])
    await carl.wait_message("Too many card numbers")
    await carl.send(real)  # even a right number waits: the cashier may be guessing
    await carl.wait_message("Too many card numbers")
    failed = AuditLog.action == "lookup_failed"
    assert await count(sessions, AuditLog, failed) == LOOKUP_FAILURES
    # The QR code still works: it cannot be guessed.
    await carl.send_photo(await card_photo(ann))
    await carl.wait_message("Points can pay up to")
    no_errors(carl)


# --------------------------------------------------------------------------- card photos


def _beside(*pngs: bytes) -> bytes:
    images = [Image.open(io.BytesIO(png)).convert("RGB") for png in pngs]
    canvas = Image.new(
        "RGB", (sum(i.width for i in images) + 40 * len(images), max(i.height for i in images))
    )
    canvas.paste("white", (0, 0, canvas.width, canvas.height))
    x = 0
    for image in images:
        canvas.paste(image, (x, 0))
        x += image.width + 40
    out = io.BytesIO()
    canvas.save(out, "PNG")
    return out.getvalue()


def _huge_png_header(width: int, height: int) -> bytes:
    """A PNG that says it is width×height; decoding it would need width×height×3 bytes."""

    def chunk(tag: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(tag + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = zlib.compress((b"\x00" + b"\xff" * width * 3) * 4)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows)


async def test_card_photos_among_other_codes_broken_or_huge(
    roomy: BotHarness, sessions: Sessions
) -> None:
    harness = roomy
    ann, carl = harness.user("Ann"), harness.user("Carl")
    await join(ann)
    await hire(harness, carl, "coffee", "cashier")

    # A menu's QR code (its link even has a start parameter beginning like a card's) first,
    # the member's card second.
    menu = render_qr("https://example.org/menu?start=cafe")
    await carl.send_photo(_beside(menu, await card_photo(ann)))
    panel = text_of(await carl.wait_message("Points can pay up to"))
    assert "Ann" in panel
    await carl.send("/cancel")
    await carl.wait_message("Cancelled")

    await carl.send_photo(render_qr("https://example.org/menu?start=cafe"))
    await carl.wait_message("could not read a member card")
    await carl.send_photo(os.urandom(3000))
    await carl.wait_message("could not read a member card")
    started = time.monotonic()
    await carl.send_photo(_huge_png_header(12_000, 12_000))
    await carl.wait_message("too large to read")
    assert time.monotonic() - started < 1.0
    no_errors(carl)
