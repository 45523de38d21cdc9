"""The member's side of the bot, end to end: real dispatcher, real HTTP, fake Telegram."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from aiogram.utils.i18n import gettext as _
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.i18n import build_i18n
from bot.views import formatting as fmt
from bot.views import keyboards, texts
from bot.views.notices import RENDERERS
from bot.views.qr import decode_qr
from db.ledger.models import Member
from db.rules.cards import normalize_card_number
from db.rules.program import Program, parse_program
from db.rules.tokens import card_token, read_card_token, referral_token
from db.usecases.members import MemberInfo, find_by_telegram
from db.usecases.outbox import owe, owed_for_purchase
from db.usecases.purchases import Sale, record_sale
from tests.botharness import BOT_USERNAME, OWNER_ID, BotHarness, running_bot
from tests.conftest import TEST_PROGRAM, make_program
from tests.fakegram import UserClient, inline_buttons, text_of

Sessions = async_sessionmaker[AsyncSession]


async def join(user: UserClient, start: str = "/start") -> None:
    await user.send(start)
    await user.wait_message("one card for")
    await user.click("✅ I accept the rules, join")
    await user.wait_message("You are in")
    await user.wait_message("offers")


async def member_of(sessions: Sessions, user: UserClient) -> MemberInfo:
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


async def test_referral_link_binds_inviter_once_and_rewards_both(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    ann, bob = harness.user("Ann"), harness.user("Bob")
    await join(ann)
    await ann.send("/invite")
    invite = text_of(await ann.wait_message("Your link"))
    link = invite.split("Your link: ")[1].split()[0]
    assert "Friends invited: 0. Rewarded: 0." in invite

    await join(bob, "/start " + link.split("start=")[1])
    promise = next(text_of(m) for m in bob.messages if "invited you" in text_of(m))
    assert promise == (
        "Ann invited you! Make a first purchase of PLN\u00a020.00 or more: you get 100 points "
        "and Ann gets 200 points."
    )
    bob_member = await member_of(sessions, bob)
    ann_member = await member_of(sessions, ann)
    assert bob_member.referred_by_id == ann_member.id

    # Ann opening Bob's link changes nothing: she is a member already.
    await ann.send("/start " + referral_token(harness.secret, bob_member.id))
    await ann.wait_message("already a member")
    assert (await member_of(sessions, ann)).referred_by_id is None

    async with sessions() as s:
        sale = await record_sale(
            s,
            program,
            Sale(member_id=bob_member.id, partner="coffee", amount=Decimal("25.00"), key="sale"),
        )
        await owe(s, *owed_for_purchase(sale))
        await s.commit()
    harness.dp["outbox"].kick()
    note = text_of(await bob.wait_message("Balance:"))
    assert "+125 points" in note and "Balance: 275 points." in note
    assert "+100 points: Ann's invitation paid off." in note
    told = text_of(await ann.wait_message("whom you invited"))
    assert told == (
        "🎁 +200 points: Bob, whom you invited, made their first purchase of PLN\u00a020.00 "
        "or more!"
    )
    await ann.send("/invite")
    assert "Friends invited: 1. Rewarded: 1." in text_of(await ann.wait_message("Your link"))
    await bob.send("/history")
    bobs = text_of(await bob.wait_message("Transactions"))
    assert "reward for joining by a friend's invitation: +100 points" in bobs
    assert "inviting" not in bobs
    await ann.send("/history")
    assert "reward for inviting a friend: +200 points" in text_of(
        await ann.wait_message("Transactions")
    )


@pytest.mark.parametrize("minimum", ["0", "20.00"])
def test_referral_texts_name_the_qualifying_amount_only_when_there_is_one(minimum: str) -> None:
    """The reward comes with the friend's first purchase of the qualifying amount: every
    text says so, and says "first purchase" alone (no "0.00 or more") when any qualifies."""
    program = make_program(referral={"qualifying_purchase": minimum})
    i18n = build_i18n()
    with i18n.context(), i18n.use_locale("en"):
        said = [
            texts.invite_terms(program),
            texts.invitation(program, "Ann"),
            texts.invitation(program, None),
            RENDERERS["referral_inviter"](program, {"points": 200, "member_name": "Bob"}).text,
            RENDERERS["referral_inviter"](program, {"points": 200}).text,
            RENDERERS["referral_reversed"](program, {"points": 200}).text,
        ]
    for text in said:
        assert "first purchase" in text, text
        if minimum == "0":
            assert "or more" not in text and "0.00" not in text, text
        else:
            assert "first purchase of PLN\u00a020.00 or more" in text, text


def test_the_rules_and_a_new_tier_tell_earning_and_discounts_as_they_are() -> None:
    """The join rules give the earning a member starts at and how high tiers take it, and
    each tier's discount with the spend that reaches it; reaching a tier names its discount."""
    tiers = [
        {"name": "Bronze", "min_spend": "0", "multiplier": "1.0"},
        {"name": "Silver", "min_spend": "1000.00", "multiplier": "1.25"},
        {"name": "Gold", "min_spend": "3000.00", "multiplier": "1.5", "discount_percent": "5"},
    ]
    program = parse_program({**TEST_PROGRAM, "tiers": tiers})
    flat = parse_program({**TEST_PROGRAM, "tiers": [{**t, "multiplier": "1"} for t in tiers]})
    pure = parse_program(
        {
            **TEST_PROGRAM,
            "tiers": tiers,
            "partners": [{**p, "earn_percent": "0"} for p in TEST_PROGRAM["partners"]],
        }
    )
    i18n = build_i18n()
    with i18n.context(), i18n.use_locale("en"):
        rules, flat_rules = texts.rules_summary(program), texts.rules_summary(flat)
        sale = {"partner": "coffee", "amount": "20.00", "paid": "20.00", "points_redeemed": 0}
        sale |= {"points_earned": 100, "balance": 150}
        silver, gold = (
            RENDERERS["purchase"](program, {**sale, "tier_reached": tier}).text
            for tier in ("Silver", "Gold")
        )
        pure_gold = RENDERERS["purchase"](pure, {**sale, "tier_reached": "Gold"}).text
    assert (
        "• Earn points on every purchase: 2%–5% of what you pay, up to 7.5% at higher tiers."
        in rules
    )
    assert "• Earn points on every purchase: 2%–5% of what you pay.\n" in flat_rules
    assert (
        "Member discounts at every partner, by tier (reached by what you spend in 12 months): "
        "Bronze 0%, Silver 0% from PLN\u00a01,000.00, Gold 5% from PLN\u00a03,000.00." in rules
    )
    assert "🏅 You reached Silver: from now on your points × 1.25.\n" in silver
    assert (
        "🏅 You reached Gold: from now on your points × 1.5, and 5% off at every partner.\n"
        in gold
    )
    assert "🏅 You reached Gold: from now on 5% off at every partner.\n" in pure_gold


async def test_export_then_delete(harness: BotHarness, sessions: Sessions) -> None:
    ann = harness.user("Ann")
    await join(ann)
    member = await member_of(sessions, ann)
    await ann.send("/privacy")
    await ann.wait_message("Your data")
    await ann.click("📦 Export my data")
    document = await ann.wait_message(lambda m: "document" in m)
    data = json.loads(harness.server.file(document["document"]["file_id"]).data)
    assert data["member"]["card_number"] == member.card_number
    assert data["member"]["telegram_id"] == ann.user_id
    assert data["balance"] == 50 and data["transactions"][0]["kind"] == "welcome"

    await ann.click("🗑 Delete my account")
    await ann.wait_message("Delete your account?")
    await ann.click("Yes, delete everything")
    await ann.wait_message("forfeited")
    assert await member_of(sessions, ann) is None
    async with sessions() as s:
        row = await s.get(Member, member.id)
        assert row is not None and row.telegram_id is None and row.first_name == ""
        assert row.card_number != member.card_number
    await ann.send("/balance")
    await ann.wait_message("not a member yet")


async def test_offers_switch_says_what_it_did(harness: BotHarness, sessions: Sessions) -> None:
    ann = harness.user("Ann")
    await join(ann)
    await ann.click("Yes, send me offers")
    await asyncio.sleep(0.2)
    await ann.send("/privacy")
    overview = await ann.wait_message("Your data")
    assert "Offers and news: on." in text_of(overview)
    button = next(b for b in inline_buttons(overview) if b["text"] == "🔕 Stop offers")
    await asyncio.gather(  # a double tap
        ann.click(overview, button["callback_data"], check=False),
        ann.click(overview, button["callback_data"], check=False),
    )
    await harness.server.wait_for(
        lambda: (
            "Offers and news: off."
            in text_of(harness.server.message(ann.user_id, overview["message_id"]))
        )
    )
    shown = harness.server.message(ann.user_id, overview["message_id"])
    assert [b["text"] for b in inline_buttons(shown)][1] == "🔔 Send me offers"
    assert (await member_of(sessions, ann)).marketing_consent is False  # type: ignore[union-attr]


async def test_bad_input_gets_clear_answers_and_changes_nothing(
    harness: BotHarness, sessions: Sessions
) -> None:
    stranger = harness.user("Eve")
    await stranger.send("hello?")
    await stranger.wait_message("not a member yet")
    await stranger.send("/start cForgedTokenThatIsNotSignedAtAll0000000000")
    await stranger.wait_message("link is not valid")
    await stranger.wait_message("one card for")  # and is invited to join
    await stranger.send("/start rAAAAAAA")
    await stranger.wait_message("invitation link is not valid")
    await stranger.send("/start ../../etc")
    await stranger.wait_message("link is not valid")
    assert await member_of(sessions, stranger) is None

    ann = harness.user("Ann")
    await join(ann)
    member = await member_of(sessions, ann)
    expired = card_token(harness.secret, member.id, datetime.now(UTC) - timedelta(seconds=1))
    await ann.send("/start " + expired)
    await ann.wait_message("expired")
    foreign = card_token(b"another bot's secret", member.id, datetime.now(UTC) + timedelta(60))
    await ann.send("/start " + foreign)
    await ann.wait_message("not valid")
    await ann.send("/frobnicate")
    await ann.wait_message("do not know that command")
    await ann.send("what is my balance")
    await ann.wait_message("did not understand")
    async with sessions() as s:
        assert len((await s.execute(select(Member))).scalars().all()) == 1


async def test_blocked_member_is_not_messaged_until_unblocked(
    harness: BotHarness, sessions: Sessions
) -> None:
    ann = harness.user("Ann")
    await join(ann)
    member = await member_of(sessions, ann)
    await ann.block()
    reachable = True
    for _attempt in range(50):
        async with sessions() as s:
            reachable = await s.scalar(select(Member.reachable).where(Member.id == member.id))
        if not reachable:
            break
        await asyncio.sleep(0.05)
    assert reachable is False
    assert not await harness.notifier.to_member(member.id, lambda: "hello")
    await ann.unblock()
    for _attempt in range(50):
        if await harness.notifier.to_member(member.id, lambda: "welcome back"):
            break
        await asyncio.sleep(0.05)
    await ann.wait_message("welcome back")


async def test_history_pages_and_language_change(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    ann = harness.user("Ann")
    await join(ann)
    member = await member_of(sessions, ann)
    async with sessions() as s:
        for i in range(12):
            await record_sale(
                s,
                program,
                Sale(member_id=member.id, partner="books", amount=Decimal(10 + i), key=f"h{i}"),
            )
    await ann.send("/history")
    page = text_of(await ann.wait_message("Transactions"))
    assert "Transactions 1–10 of 13" in page and "Chapter One Books" in page
    await ann.click("Older ▶")
    await harness.server.wait_for(
        lambda: any("Transactions 11–13 of 13" in text_of(m) for m in ann.messages)
    )
    await ann.send("/language")
    await ann.wait_message("Choose your language")
    await ann.click("Polski")
    await ann.wait_message()
    async with sessions() as s:
        assert (await find_by_telegram(s, ann.user_id)).language == "pl"


async def test_commands_registered_per_language(harness: BotHarness) -> None:
    from bot.app import register_commands

    await register_commands(harness.bot, harness.dp["i18n_core"])
    for language in ("", "en", "ru", "uk", "pl"):
        names = [c["command"] for c in harness.server.commands(language)]
        assert names == [
            "card",
            "balance",
            "stamps",
            "history",
            "rewards",
            "vouchers",
            "invite",
            "gift",
            "donate",
            "partners",
            "offers",
            "club",
            "language",
            "privacy",
            "paysupport",
            "help",
        ]


@pytest.mark.parametrize("language", ["en", "ru", "uk", "pl"])
async def test_join_in_each_language(
    harness: BotHarness, sessions: Sessions, language: str
) -> None:
    i18n = harness.dp["i18n_core"]
    with i18n.context(), i18n.use_locale(language):
        accept = _("✅ I accept the rules, join")
        welcome = _("🎉 You are in, {name}!").format(name="Olena")
        gift = fmt.points(50)
        card_button = str(keyboards.CARD)
    if language != "en":
        assert accept != "✅ I accept the rules, join"  # really translated
    olena = harness.user("Olena", language_code=language)
    await olena.send("/start")
    await olena.wait_message()
    await olena.click(accept)
    text = text_of(await olena.wait_message(welcome))
    assert gift in text
    member = await member_of(sessions, olena)
    assert member.language == language
    keyboard = harness.server.reply_keyboard(olena.user_id)
    assert keyboard is not None and keyboard["keyboard"][0][0]["text"] == card_button
    await olena.press(card_button)  # the translated menu button works
    await olena.wait_message(lambda m: "photo" in m)


async def test_user_text_cannot_break_html_replies(harness: BotHarness) -> None:
    from tests.till import hire

    cashier, ann = harness.user("Carl"), harness.user("Ann <b>")
    await hire(harness, cashier, "coffee", "cashier")
    await join(ann)
    await cashier.send(
        "/start " + card_token(harness.secret, 1, datetime.now(UTC) + timedelta(60))
    )
    await cashier.wait_message("Points can pay up to")
    await cashier.click("🧾 Sale: earn points")
    await cashier.wait_message("Enter the purchase amount")
    await cashier.send("<b>12</i>")
    await cashier.wait_message("not an amount")
    assert all(r.status == 200 for r in harness.server.calls("sendMessage"))


async def test_members_read_the_program_in_their_language(
    engine: AsyncEngine, sessions: Sessions, demo_program: Program
) -> None:
    """The demo program's texts in Polish: the rules, partners, categories, offers, tiers and
    the partner's name in a sale's news; an English reader still gets English."""
    async with running_bot(engine, sessions, demo_program, admin_ids=[OWNER_ID]) as harness:
        ola, ann = harness.user("Ola", language_code="pl"), harness.user("Ann")
        await ola.send("/start")
        assert "Bonus Miejski" in text_of(await ola.wait_message("Bonus Miejski"))
        await ola.click("✅ Akceptuję regulamin, dołączam")
        await ola.wait_message("Witamy")
        await ola.send("/partners")
        listing = text_of(await ola.wait_message("kawiarnia"))
        assert "Kawa do każdej książki" in listing and "księgarnia" in listing
        await ola.send("/balance")
        assert "Brąz" in text_of(await ola.wait_message("Poziom"))
        await join(ann)
        await ann.send("/partners")
        assert "Coffee with any book" in text_of(await ann.wait_message("café"))
