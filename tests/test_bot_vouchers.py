"""The rewards catalogue and vouchers end to end, through the fake Bot API: /rewards, taking a
reward after its confirmation, the voucher's QR code, claiming it at the till (photo, camera
link, typed code), /vouchers, expiry. The ledger's invariants are checked after each test."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.callbacks import VoucherCb
from bot.views.qr import decode_qr
from bot.workers.jobs import expire_vouchers
from db.ledger.models import Transaction, TxKind, Voucher, VoucherSource
from db.queries.settlement import settlement
from db.rules.program import Program, parse_program
from db.usecases.adjust import adjust
from db.usecases.members import find_by_telegram
from db.usecases.vouchers import issue_voucher
from tests.botharness import BOT_USERNAME, BotHarness
from tests.conftest import TEST_PROGRAM
from tests.fakegram import UserClient, inline_buttons, text_of
from tests.till import hire, join

Sessions = async_sessionmaker[AsyncSession]

REWARDS: list[dict[str, Any]] = [
    {
        "slug": "free-coffee",
        "title": {"en": "A coffee of your choice", "pl": "Kawa do wyboru"},
        "partner": "coffee",
        "points": 300,
        "valid_days": 30,
        "per_member": 2,
    },
    {"slug": "cake", "title": "A slice of cake", "partner": "bakery", "points": 900, "stock": 5},
    {"slug": "sticker", "title": "A sticker", "partner": "coffee", "points": 0},
]
COFFEE_BUTTON = "🎁 A coffee of your choice · 300 points"


@pytest.fixture
def program() -> Program:
    return parse_program({**TEST_PROGRAM, "rewards": REWARDS})


async def give(sessions: Sessions, program: Program, user: UserClient, points: int) -> None:
    async with sessions() as s:
        member = await find_by_telegram(s, user.user_id)
        assert member is not None
        await adjust(
            s, program, member_id=member.id, points=points, reason="gift", key=f"g{user.user_id}"
        )


async def wallet(sessions: Sessions, user: UserClient) -> tuple[int, int]:
    async with sessions() as s:
        member = await find_by_telegram(s, user.user_id)
    assert member is not None
    return member.balance, member.held


async def vouchers(sessions: Sessions) -> list[tuple[str, str]]:
    async with sessions() as s:
        rows = await s.execute(select(Voucher.code, Voucher.status).order_by(Voucher.id))
        return [(code, status) for code, status in rows]


async def take_coffee(member: UserClient) -> dict:
    """/rewards → the coffee → Confirm; the voucher's photo message."""
    await member.send("/rewards")
    await member.wait_message("Rewards")
    await member.click(COFFEE_BUTTON)
    ask = await member.wait_message("Take A coffee of your choice for 300 points?")
    await member.click("✅ Confirm")
    voucher = await member.wait_message(lambda m: "photo" in m)
    assert "✅ Taken: A coffee of your choice" in current_text(member, ask)
    return voucher


def current_text(user: UserClient, message: dict) -> str:
    """A message as it reads now (edits applied)."""
    return text_of(user.server.message(user.user_id, message["message_id"]) or message)


def photo_bytes(member: UserClient, message: dict) -> bytes:
    return member.server.file(message["photo"][-1]["file_id"]).data


def payload(member: UserClient, message: dict) -> str:
    (link,) = decode_qr(photo_bytes(member, message))
    return str(link).removeprefix(f"https://t.me/{BOT_USERNAME}?start=")


async def test_take_a_reward_and_claim_it_at_the_till(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    """Rewards → confirmation → voucher QR → cashier photographs it → Claim → both told;
    balances and the partner's settlement position exact."""
    carl, ann = harness.user("Carl"), harness.user("Ann")
    await hire(harness, carl, "coffee", "cashier")
    await join(ann)
    await give(sessions, program, ann, 450)  # 500 with the welcome gift

    await ann.send("/rewards")
    listing = text_of(await ann.wait_message("Rewards"))
    assert "You have 500 points to spend." in listing
    assert "Bean There Coffee" in listing and "Golden Crust Bakery" in listing
    assert "A slice of cake: 900 points · 5 of 5 left · you need 400 points more" in listing
    assert "sticker" not in listing  # 0 points: only given, never taken
    buttons = [b["text"] for b in inline_buttons(ann.messages[-1])]
    assert buttons == [COFFEE_BUTTON]  # the cake cannot be afforded: no button
    await ann.click(COFFEE_BUTTON)
    ask = await ann.wait_message("Take A coffee of your choice for 300 points?")
    assert "Where: Bean There Coffee" in text_of(ask) and "Valid until:" in text_of(ask)
    await ann.click("✅ Confirm")
    voucher = await ann.wait_message(lambda m: "photo" in m)
    assert "✅ Taken" in current_text(ann, ask)
    caption = text_of(voucher)
    [(code, status)] = await vouchers(sessions)
    assert status == "open" and f"{code[:4]}-{code[4:]}" in caption
    assert await wallet(sessions, ann) == (500, 300)

    await carl.send_photo(photo_bytes(ann, voucher))
    panel = text_of(await carl.wait_message("A coffee of your choice"))
    assert "Member: A." in panel and "Ann" not in panel
    await carl.click("✅ Claim")
    told = text_of(await carl.wait_message("claimed"))
    assert (
        told
        == f"✅ Voucher {code[:4]}-{code[4:]} claimed: hand A coffee of your choice over to A."
    )
    news = text_of(await ann.wait_message("was used at Bean There Coffee"))
    assert "300 of your points paid for it. Balance: 200 points." in news
    assert await wallet(sessions, ann) == (200, 0)
    assert await vouchers(sessions) == [(code, "claimed")]
    async with sessions() as s:
        now = datetime.now(UTC)
        report = await settlement(s, program, start=now - timedelta(hours=1), end=now)
    coffee = next(p for p in report.partners if p.slug == "coffee")
    assert coffee.points_redeemed == 300

    # The member's history and the cashier's shift say what it was.
    await ann.send("/history")
    assert "voucher used: A coffee of your choice (−300 points)" in text_of(
        await ann.wait_message("Transactions")
    )
    await carl.send("/shift")
    shift = text_of(await carl.wait_message("Your shift today"))
    assert " · Ann · voucher: A coffee of your choice · −300\n" in shift, shift


async def test_a_double_tap_takes_one_voucher_and_a_claim_posts_once(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    carl, ann = harness.user("Carl"), harness.user("Ann")
    await hire(harness, carl, "coffee", "cashier")
    await join(ann)
    await give(sessions, program, ann, 950)

    await ann.send("/rewards")
    await ann.wait_message("Rewards")
    await ann.click(COFFEE_BUTTON)
    ask = await ann.wait_message("Take A coffee")
    (confirm,) = [b["callback_data"] for b in inline_buttons(ask) if b["text"] == "✅ Confirm"]
    first = await ann.click(ask, confirm)
    second = await ann.click(ask, confirm, check=False)
    await ann.wait_callback_answer(first)
    await ann.wait_callback_answer(second)
    voucher = await ann.wait_message(lambda m: "photo" in m)
    [(code, _status)] = await vouchers(sessions)
    assert await wallet(sessions, ann) == (1000, 300)

    await carl.send("/start " + payload(ann, voucher))  # the camera opens the link
    panel = await carl.wait_message("A coffee of your choice")
    claim = VoucherCb(action="claim", code=code).pack()
    one = await carl.click(panel, claim)
    two = await carl.click(panel, claim, check=False)
    answers = [await carl.wait_callback_answer(one), await carl.wait_callback_answer(two)]
    # The cashier's double tap is their claim again, said to be done: not a refusal.
    assert not any("Already claimed on" in (a.get("text") or "") for a in answers)
    replay = text_of(await carl.wait_message("this second tap changed nothing"))
    assert "✅ Voucher" in replay and "claimed: hand A coffee of your choice over to A." in replay
    await carl.wait_message(
        lambda m: "over to A." in text_of(m) and "second tap" not in text_of(m)
    )
    await ann.wait_message("was used at Bean There Coffee")
    async with sessions() as s:
        posted = await s.scalar(select(func.count()).where(Transaction.kind == TxKind.VOUCHER))
    assert posted == 1
    # Another cashier tapping it is told it was claimed.
    dan = harness.user("Dan")
    await hire(harness, dan, "coffee", "cashier")
    late = await dan.click(panel, claim, check=False)
    assert "Already claimed on" in (await dan.wait_callback_answer(late))["text"]
    assert sum("was used at" in text_of(m) for m in ann.messages) == 1
    assert await wallet(sessions, ann) == (700, 0)
    assert [m["message_id"] for m in ann.messages if "photo" in m] == [voucher["message_id"]]


async def test_typed_codes_wrong_partner_own_voucher_and_forgeries(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    carl, bea, ann = harness.user("Carl"), harness.user("Bea"), harness.user("Ann")
    await hire(harness, carl, "coffee", "cashier")
    await hire(harness, bea, "bakery", "manager")
    await join(ann)
    await give(sessions, program, ann, 950)
    voucher = await take_coffee(ann)
    [(code, _)] = await vouchers(sessions)

    # At the wrong partner, by photo, link or code: said so, and nothing changes.
    await bea.send_photo(photo_bytes(ann, voucher))
    await bea.wait_message("This voucher is for Bean There Coffee")
    await bea.send(f"/voucher {code.lower()}")
    await bea.wait_message("This voucher is for Bean There Coffee")
    # A forged Claim button (the code is known) is refused by the use case as well.
    forged = await bea.click(voucher, VoucherCb(action="claim", code=code).pack(), check=False)
    assert "This voucher is for" in (await bea.wait_callback_answer(forged))["text"]
    # Unknown and malformed codes; a tampered link.
    await carl.send("/voucher ZZZZ-ZZZZ")
    await carl.wait_message("No voucher has the code ZZZZ-ZZZZ")
    await carl.send("/voucher 12")
    await carl.wait_message("A voucher code is 8 letters and digits")
    tampered = payload(ann, voucher)
    tampered = tampered[:-3] + ("AAA" if not tampered.endswith("AAA") else "BBB")
    await carl.send("/start " + tampered)
    await carl.wait_message("This link is not valid")
    assert await wallet(sessions, ann) == (1000, 300)
    # The code alone, typed at the right till, opens it.
    await carl.send(f"{code[:4]}-{code[4:]}")
    await carl.wait_message("A coffee of your choice")
    await carl.click("✅ Claim")
    await carl.wait_message("claimed")
    await ann.wait_message("was used at")
    await carl.send(code)
    await carl.wait_message("Already claimed on")

    # Someone who is not staff opening the link is only told what it is.
    eve = harness.user("Eve")
    await eve.send("/start " + payload(ann, voucher))
    await eve.wait_message("This is a voucher")


async def test_a_claim_delivered_again_after_its_answer_is_said_done_not_refused(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    """Found by the chaos soak (seed 102): the instance that claimed the voucher died before
    Telegram saw its webhook answer, so the press came again to another; answering the press
    a second time fails (Telegram takes one answer per press, and only for a while), which
    made the cashier read "nothing was changed" about a claim that was done."""
    carl, ann = harness.user("Carl"), harness.user("Ann")
    await hire(harness, carl, "coffee", "cashier")
    await join(ann)
    await give(sessions, program, ann, 500)
    voucher = await take_coffee(ann)
    await carl.send("/start " + payload(ann, voucher))
    panel = await carl.wait_message("A coffee of your choice")
    [(code, _status)] = await vouchers(sessions)
    press = await carl.click(panel, VoucherCb(action="claim", code=code).pack())
    await carl.wait_callback_answer(press)
    await carl.wait_message(lambda m: "claimed: hand" in text_of(m))
    (update,) = [
        u
        for u in harness.server.pushed_updates
        if (u.get("callback_query") or {}).get("id") == press
    ]
    harness.server.redeliver(update)
    replay = text_of(await carl.wait_message("this second tap changed nothing"))
    assert "claimed: hand A coffee of your choice over to A." in replay
    assert not any("nothing was changed" in text_of(m) for m in carl.messages)
    assert await vouchers(sessions) == [(code, "claimed")]


async def test_a_funded_voucher_claimed_shows_its_title_in_history(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    """A voucher a partner funds moves none of the member's points: /history names it."""
    carl, ann = harness.user("Carl"), harness.user("Ann")
    await hire(harness, carl, "coffee", "cashier")
    await join(ann)
    async with sessions() as s:
        member = await find_by_telegram(s, ann.user_id)
        assert member is not None
        issued = await issue_voucher(
            s,
            program,
            member_id=member.id,
            reward="free-coffee",
            source=VoucherSource.PROMOTION,
            now=datetime.now(UTC),
            funder="bakery",
        )
        await s.commit()
    await carl.send(f"/voucher {issued.code}")
    await carl.wait_message("A coffee of your choice")
    await carl.click("✅ Claim")
    await carl.wait_message("claimed: hand")
    await ann.wait_message("was used at Bean There Coffee")
    await ann.send("/history")
    listing = text_of(await ann.wait_message("Transactions")).split("\n")
    used = [line for line in listing if "voucher used" in line]
    assert len(used) == 1 and used[0].endswith("· voucher used: A coffee of your choice"), used
    # The cashier's shift names it too, with no money or points it did not move.
    await carl.send("/shift")
    shift = text_of(await carl.wait_message("Your shift today")).split("\n")
    (line,) = [line for line in shift if "voucher" in line]
    assert line.endswith(" · Ann · voucher: A coffee of your choice"), line


async def test_vouchers_list_its_qr_and_expiry_gives_the_points_back(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    ann = harness.user("Ann")
    await join(ann)
    await ann.send("/vouchers")
    await ann.wait_message("You have no open vouchers")
    await give(sessions, program, ann, 950)
    await take_coffee(ann)
    await ann.send("/rewards")
    listing = text_of(await ann.wait_message("Rewards"))
    assert "You have 700 points to spend." in listing
    assert "(300 points more are held by your open vouchers and requests.)" in listing
    await ann.send("/vouchers")
    mine = text_of(await ann.wait_message("Your vouchers"))
    [(code, _)] = await vouchers(sessions)
    assert "A coffee of your choice" in mine and f"{code[:4]}-{code[4:]}" in mine
    await ann.click("📱 QR: A coffee of your choice")
    shown = await ann.wait_message(lambda m: "photo" in m)
    assert "Valid until" in text_of(shown)

    expired = await expire_vouchers(harness.runtime, now=datetime.now(UTC) + timedelta(days=31))
    assert expired == 1
    news = text_of(await ann.wait_message("expired unused"))
    assert "Its 300 points are yours to spend again." in news
    assert await wallet(sessions, ann) == (1000, 0)
    await ann.send("/vouchers")
    await ann.wait_message("You have no open vouchers")
    # Its QR button no longer shows anything.
    again = await ann.click(shown, VoucherCb(action="qr", code=code).pack(), check=False)
    assert "no longer open" in (await ann.wait_callback_answer(again))["text"]


async def test_the_member_reads_the_catalogue_in_their_language(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    ola = harness.user("Ola", language_code="pl")
    await ola.send("/start")
    await ola.wait_message("Test Bonus")
    await ola.click("✅ Akceptuję regulamin, dołączam")
    await ola.wait_message("Witamy")
    await give(sessions, program, ola, 950)
    await ola.send("/rewards")
    listing = text_of(await ola.wait_message("Kawa do wyboru"))
    assert "A coffee of your choice" not in listing


async def test_points_held_elsewhere_and_an_expired_voucher_are_said_plainly(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    carl, ann = harness.user("Carl"), harness.user("Ann")
    await hire(harness, carl, "coffee", "cashier")
    await join(ann)
    await give(sessions, program, ann, 450)  # 500
    # Two confirmations open at once; the first taken leaves 200 free for the second.
    await ann.send("/rewards")
    listing = await ann.wait_message("Rewards")
    (take,) = [b["callback_data"] for b in inline_buttons(listing) if b["text"] == COFFEE_BUTTON]
    await ann.click(listing, take)
    first = await ann.wait_message("Take A coffee")
    await ann.click(listing, take)
    second = await ann.wait_message("Take A coffee")
    assert first["message_id"] != second["message_id"]
    confirm = "✅ Confirm"
    (one,) = [b["callback_data"] for b in inline_buttons(first) if b["text"] == confirm]
    (two,) = [b["callback_data"] for b in inline_buttons(second) if b["text"] == confirm]
    assert one != two
    await ann.click(first, one)
    await ann.wait_message(lambda m: "photo" in m)
    refused = await ann.click(second, two)
    text = (await ann.wait_callback_answer(refused))["text"]
    assert text == (
        "Not enough points: this reward costs 300 points and you have 200 points to spend. "
        "Nothing was taken."
    )
    assert await wallet(sessions, ann) == (500, 300)
    assert len(await vouchers(sessions)) == 1

    # A voucher past its time, typed at the till: refused with the moment it expired.
    [(code, _)] = await vouchers(sessions)
    async with sessions() as s:
        await s.execute(
            update(Voucher)
            .where(Voucher.code == code)
            .values(expires_at=datetime(2026, 1, 5, 14, 30, tzinfo=UTC))
        )
        await s.commit()
    await carl.send(f"/voucher {code}")
    await carl.wait_message("This voucher expired on 5 Jan 2026 at 14:30: it cannot be claimed.")
    await expire_vouchers(harness.runtime)
    await ann.wait_message("expired unused")
    assert await wallet(sessions, ann) == (500, 0)
