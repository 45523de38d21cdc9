"""Each role knows what it can do, and any command leaves any dialog: /help per role, the
command menus per chat, the staff welcome, answers to staff that fit what they did, a
message for every domain error, the member's menu keyboard, and commands inside dialogs.
End to end through the fake Bot API."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiogram.utils.i18n import gettext as _
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

import db
from bot import roles
from bot.handlers.everyone.errors import MESSAGES
from bot.views import keyboards
from db.ledger.models import Campaign, RedemptionRequest, Transaction
from db.rules.errors import DomainError
from db.rules.program import Program
from tests.botharness import OWNER_ID, BotHarness, running_bot
from tests.fakegram import UserClient, text_of
from tests.till import EARN, REDEEM, card_link_payload, hire, join, start_sale

Sessions = async_sessionmaker[AsyncSession]
LANGUAGES = ("", "en", "ru", "uk", "pl")


@pytest.fixture
async def harness(
    engine: AsyncEngine, sessions: Sessions, program: Program
) -> AsyncIterator[BotHarness]:
    """A bot whose flood control lets these long scripts through."""
    async with running_bot(
        engine, sessions, program, admin_ids=[OWNER_ID], flood_rate=1000.0, flood_burst=1000
    ) as running:
        yield running


def chat_scope(user: UserClient | int) -> dict[str, Any]:
    return {"type": "chat", "chat_id": user if isinstance(user, int) else user.user_id}


def in_language(harness: BotHarness, language: str, text: Any) -> str:
    """`text` (a msgid or a lazy translation) as it reads in `language`."""
    i18n = harness.dp["i18n_core"]
    with i18n.context(), i18n.use_locale(language):
        return _(text) if isinstance(text, str) else str(text)


async def menu_of(harness: BotHarness, user: UserClient | int, language: str = "") -> list[str]:
    """The commands of a chat's own menu, once the bot has set them."""
    menu = await harness.server.wait_for(
        lambda: harness.server.commands(language, chat_scope(user)) or None
    )
    return [c["command"] for c in menu]


async def count(sessions: Sessions, model: Any) -> int:
    async with sessions() as s:
        return int(await s.scalar(select(func.count()).select_from(model)) or 0)


async def test_help_answers_each_role_with_its_commands(harness: BotHarness) -> None:
    ann, carl, mia, owner = (
        harness.user("Ann"),
        harness.user("Carl"),
        harness.user("Mia"),
        harness.owner(),
    )
    await join(ann)
    await join(carl)
    await hire(harness, carl, "coffee", "cashier")
    boss = harness.user("Bob")
    await hire(harness, boss, "coffee", "manager")
    await hire(harness, mia, "", "marketer")

    await ann.send("/help")
    member_help = text_of(await ann.wait_message("What I can do"))
    assert "/card:" in member_help and "/privacy:" in member_help and "/shift" not in member_help

    # A cashier who is also a member sees both parts, each command once.
    await carl.send("/help")
    cashier_help = text_of(await carl.wait_message("What I can do"))
    assert "As a cashier of Bean There Coffee:" in cashier_help
    assert "/shift:" in cashier_help and "/cancel:" in cashier_help
    assert "As a member:" in cashier_help and "/card:" in cashier_help
    assert "/refund" not in cashier_help and "not a member" not in cashier_help
    assert cashier_help.index("As a cashier") < cashier_help.index("As a member")

    await boss.send("/help")
    manager_help = text_of(await boss.wait_message("What I can do"))
    assert "As a manager of Bean There Coffee:" in manager_help
    for line in ("/refund NUMBER", "/today:", "/week:", "/stats [period]: your partner"):
        assert line in manager_help
    assert "not a member" not in manager_help and "/start" in manager_help

    await mia.send("/help")
    marketer_help = text_of(await mia.wait_message("What I can do"))
    assert "As a marketer:" in marketer_help
    assert "/campaign:" in marketer_help and "/settlement" in marketer_help
    assert "/shift" not in marketer_help and "not a member" not in marketer_help

    # The owner is not a member: told their commands, not "You are not a member yet".
    await owner.send("/help")
    owner_help = text_of(await owner.wait_message("What I can do"))
    assert "As an owner of the program:" in owner_help
    for command in ("/staff_invite", "/staff_list", "/staff_revoke", "/adjust", "/audit"):
        assert command in owner_help
    assert "not a member yet" not in owner_help

    # Each sees it in their language (the member lines are translated).
    olena = harness.user("Olena", language_code="uk")
    await join_in(harness, olena, "uk")
    await owner.send("/staff_invite coffee cashier")
    link = text_of(await owner.wait_message("one-time invite")).split()[-1]
    await olena.send("/start " + link.split("start=")[1])
    await olena.wait_message("/shift")
    await olena.send("/help")
    card_line = in_language(harness, "uk", "/card: your member card to show at the till")
    assert card_line != "/card: your member card to show at the till"
    assert card_line in text_of(await olena.wait_message("/shift"))


async def join_in(harness: BotHarness, user: UserClient, language: str) -> None:
    await user.send("/start")
    await user.wait_message()
    await user.click(in_language(harness, language, "✅ I accept the rules, join"))
    no_thanks = in_language(harness, language, "No, thanks")
    await user.wait_message(lambda m: no_thanks in str(m.get("reply_markup")))


async def test_command_menus_per_chat_for_staff_and_owners(harness: BotHarness) -> None:
    server = harness.server
    # Owners get theirs at start-up, with the member commands after their own.
    names = await menu_of(harness, OWNER_ID)
    assert names[:5] == ["staff_invite", "staff_list", "staff_revoke", "adjust", "audit"]
    assert "card" in names and names[-1] == "help"

    carl, boss = harness.user("Carl"), harness.user("Bob")
    await hire(harness, carl, "coffee", "cashier")
    await hire(harness, boss, "coffee", "manager")
    await menu_of(harness, carl, "pl")
    await menu_of(harness, boss, "pl")  # the last one set
    for language in LANGUAGES:
        menu = server.commands(language, chat_scope(carl))
        names = [c["command"] for c in menu]
        assert names[:2] == ["shift", "cancel"] and "card" in names and "refund" not in names
        card = next(c["description"] for c in menu if c["command"] == "card")
        assert card == in_language(harness, language or "en", "Your member card")
        assert "refund" in [c["command"] for c in server.commands(language, chat_scope(boss))]

    owner = harness.owner()
    await owner.send("/staff_list")
    listing = text_of(await owner.wait_message("Staff"))
    carl_id = next(line for line in listing.split("\n") if "Carl" in line).split(":")[0]
    await owner.send(f"/staff_revoke {carl_id}")
    await owner.wait_message("Revoked")
    await server.wait_for(lambda: not server.commands("pl", chat_scope(carl)))
    for language in LANGUAGES:
        assert server.commands(language, chat_scope(carl)) == []
        assert server.commands(language, chat_scope(boss)) != []


async def test_staff_welcome_lists_the_role_and_the_owner_is_told(harness: BotHarness) -> None:
    owner, carl = harness.owner(), harness.user("Carl")
    await owner.send("/staff_invite coffee cashier")
    link = text_of(await owner.wait_message("one-time invite")).split()[-1]
    await carl.send("/start " + link.split("start=")[1])
    welcome = text_of(await carl.wait_message("You are now"))
    assert "cashier · Bean There Coffee" in welcome
    assert "/shift:" in welcome and "/cancel:" in welcome and "scan their card" in welcome
    told = text_of(await owner.wait_message("staff invite was used"))
    assert "Carl is now cashier · Bean There Coffee" in told

    mia = harness.user("Mia")
    await owner.send("/staff_invite marketer")
    link = text_of(await owner.wait_message("one-time invite")).split()[-1]
    await mia.send("/start " + link.split("start=")[1])
    welcome = text_of(await mia.wait_message("You are now"))
    assert "/campaign:" in welcome and "/stats" in welcome and "/shift" not in welcome
    assert "Mia is now marketer." in text_of(await owner.wait_message("Mia"))

    # The same link again: a message that says why, not "try again".
    eve = harness.user("Eve")
    await eve.send("/start " + link.split("start=")[1])
    refused = text_of(await eve.wait_message("invite cannot be used"))
    assert "new one" in refused and "try again" not in refused


async def test_staff_are_told_what_happened_not_to_join(
    harness: BotHarness, sessions: Sessions
) -> None:
    carl, ann, owner = harness.user("Carl"), harness.user("Ann"), harness.owner()
    await hire(harness, carl, "coffee", "cashier")  # staff, not a member
    await join(ann)

    await carl.send("12.50")
    await carl.wait_message("No sale is open")
    await carl.send("/start " + await card_link_payload(ann))
    await carl.wait_message("Points can pay up to")
    await carl.send("12.50")
    await carl.wait_message("Tap “🧾 Sale: earn points”")
    await carl.click(EARN)
    await carl.wait_message("Enter the purchase amount")
    await carl.send("12.50")
    await carl.wait_message("✅")
    await carl.send("12.50")  # the sale is closed: the amount is not a new sale
    await carl.wait_message("This sale is closed. Scan the card again.")
    assert await count(sessions, Transaction) == 2  # the welcome gift and the one sale

    await carl.send("/refund 1 all broken")
    await carl.wait_message("/refund is for: manager. Ask your manager.")
    await carl.send("/card")
    await carl.wait_message("/card is for members")
    assert not [m for m in carl.messages if "not a member yet" in text_of(m)]

    await owner.send("hello")
    await owner.wait_message("I did not understand that")
    await owner.send("/balance")
    await owner.wait_message("/balance is for members")
    await owner.send("/staff_revoke 999999")
    await owner.wait_message("No active staff member has ID 999999")
    assert not [m for m in owner.messages if "not a member yet" in text_of(m)]


def test_every_domain_error_has_a_message() -> None:
    for module in pkgutil.walk_packages(db.__path__, "db."):
        if not module.name.startswith("db.migrations"):
            importlib.import_module(module.name)
    errors, todo = [], list(DomainError.__subclasses__())
    while todo:
        error = todo.pop()
        errors.append(error)
        todo += error.__subclasses__()
    assert {"invalid_invite", "not_staff", "request_closed"} <= {e.code for e in errors}
    missing = sorted(e.code for e in errors if e.code not in MESSAGES)
    assert missing == []


async def test_the_member_keyboard_has_every_member_command(harness: BotHarness) -> None:
    ann = harness.user("Ann")
    await join(ann)
    keyboard = ann.reply_keyboard
    assert keyboard is not None
    labels = [button["text"] for row in keyboard["keyboard"] for button in row]
    assert labels == [
        in_language(harness, "en", keyboards.BUTTONS[cmd.name])
        for cmd in roles.COMMANDS[roles.MEMBER]
        if cmd.name != "paysupport"  # answered, as Telegram requires; not offered
    ]
    assert "🌐 Language" in labels and "🔒 Privacy" in labels
    await ann.press("🌐 Language")
    await ann.wait_message("Choose your language")
    await ann.press("🔒 Privacy")
    screen = await ann.wait_message(lambda m: "📦 Export my data" in str(m.get("reply_markup")))
    assert "offers" in text_of(screen).lower()


async def test_any_command_leaves_the_campaign_wizard(
    harness: BotHarness, sessions: Sessions
) -> None:
    mia, ann = harness.user("Mia"), harness.user("Ann")
    await hire(harness, mia, "", "marketer")
    await join(ann)  # someone to send to: an empty audience cannot be sent
    await ann.click("Yes, send me offers")
    await ann.wait_message("Show your card at the till")

    await mia.send("/campaign")
    await mia.wait_message("New campaign")
    await mia.click("Next: write the message ▶")
    await mia.wait_message("Send the message")
    await mia.send("/cancel")  # not the campaign's text
    await mia.wait_message("campaign draft is dropped")
    await mia.send("Hello everyone")
    await mia.wait_message("I did not understand that")
    assert await count(sessions, Campaign) == 0

    await mia.send("/campaign")
    await mia.wait_message("New campaign")
    await mia.click("Next: write the message ▶")
    await mia.wait_message("Send the message")
    await mia.send("/help")  # leaves, and does what it says
    await mia.wait_message("As a marketer:")
    await mia.send("Hello everyone")
    await mia.wait_message("I did not understand that")

    await mia.send("/campaign")
    await mia.wait_message("New campaign")
    await mia.click("Next: write the message ▶")
    await mia.wait_message("Send the message")
    await mia.send("Later news")
    await mia.wait_message("link button")
    await mia.send("/campaigns")  # the button step: leaves, and lists
    await mia.wait_message("No campaigns are scheduled or sent yet.")
    await mia.send("/skip")
    await mia.wait_message("I do not know that command")
    assert await count(sessions, Campaign) == 0

    await mia.send("/campaign")
    await mia.wait_message("New campaign")
    await mia.click("Next: write the message ▶")
    await mia.wait_message("Send the message")
    await mia.send("Later news")
    await mia.wait_message("link button")
    await mia.send("/skip")  # the step's own answer still works
    await mia.wait_message("Send it?")
    await mia.click("🕒 Schedule")
    await mia.wait_message("When?")
    await mia.send("/cancel")
    await mia.wait_message("Not scheduled: campaign #")
    await mia.send("2099-01-01 10:00")
    await mia.wait_message("I did not understand that")
    async with sessions() as s:
        assert await s.scalar(select(func.count()).where(Campaign.scheduled_at.is_not(None))) == 0


async def test_any_command_leaves_the_till_prompts(
    harness: BotHarness, sessions: Sessions
) -> None:
    carl, ann = harness.user("Carl"), harness.user("Ann")
    await join(carl)
    await hire(harness, carl, "coffee", "cashier")
    await join(ann)

    await start_sale(carl, ann, EARN, by_link=True)
    await carl.send("/shift")  # leaves the amount prompt, and shows the shift
    await carl.wait_message("No operations yet today.")
    await carl.send("12.50")
    await carl.wait_message("No sale is open")

    await start_sale(carl, ann, EARN, by_link=True)
    await carl.press("💰 Balance")  # a menu button is a command too, not an amount
    await carl.wait_message("🏅 Tier")
    assert not [m for m in carl.messages if "is not an amount" in text_of(m)]

    await start_sale(carl, ann, REDEEM, by_link=True)
    await carl.send("10")
    await carl.wait_message("How many points?")
    await carl.send("/help")  # leaves the points prompt
    await carl.wait_message("As a cashier of")
    await carl.send("20")
    await carl.wait_message("No sale is open")
    await start_sale(carl, ann, EARN, by_link=True)
    await carl.send("/cancel")
    await carl.wait_message("Cancelled. Nothing was posted.")

    assert await count(sessions, RedemptionRequest) == 0
    async with sessions() as s:
        sales = await s.scalar(select(func.count()).where(Transaction.kind == "earn"))
    assert sales == 0


def test_help_never_shows_an_empty_section() -> None:
    """An owner who is also a marketer: every marketer command is an owner's too, so the
    marketer's heading would stand alone; it is left out."""
    from bot.i18n import build_i18n
    from bot.roles import MARKETER, OWNER, help_text

    i18n = build_i18n()
    with i18n.context(), i18n.use_locale("en"):
        text = help_text([OWNER, MARKETER])
    assert "As an owner" in text and "As a marketer" not in text
    assert text.count("/campaign:") == 1
