"""Tests of the fake Bot API server, driving a real aiogram Bot and Dispatcher against it.

These pin down the contract the project's end-to-end tests rely on: aiogram must parse every
answer, map every injected fault to the right exception, and long polling must deliver pushed
updates promptly.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiogram import Bot, Dispatcher, F, Router
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramConflictError,
    TelegramForbiddenError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.types import (
    BotCommand,
    BotCommandScopeAllPrivateChats,
    BotCommandScopeChat,
    BufferedInputFile,
    CallbackQuery,
    ChatMemberUpdated,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputMediaPhoto,
    KeyboardButton,
    LabeledPrice,
    MenuButtonCommands,
    Message,
    PreCheckoutQuery,
    ReplyKeyboardMarkup,
    SuccessfulPayment,
)

from tests.fakegram import ApiError, FakeTelegramServer, RecordedRequest, UserClient, make_png

TOKEN = "42:TEST"
USER_ID = 1001
CARD_PNG = make_png(3, 2, (10, 20, 30))


# --------------------------------------------------------------------------- the bot under test


@dataclass
class Harness:
    """A running bot, its fake Telegram and one user talking to it."""

    server: FakeTelegramServer
    bot: Bot
    user: UserClient
    member_statuses: list[str] = field(default_factory=list)


def build_router(member_statuses: list[str]) -> Router:
    """A tiny bot covering the update kinds and sending styles the project uses."""
    router = Router()

    @router.message(CommandStart(deep_link=True))
    async def start_with_payload(message: Message, command: CommandObject) -> None:
        await message.answer(f"payload:{command.args}")

    @router.message(CommandStart())
    async def start(message: Message) -> None:
        button = InlineKeyboardButton(text="Press me", callback_data="press")
        markup = InlineKeyboardMarkup(inline_keyboard=[[button]])
        await message.answer("Welcome!", reply_markup=markup)

    @router.message(Command("photo"))
    async def send_card(message: Message) -> None:
        await message.answer_photo(BufferedInputFile(CARD_PNG, "card.png"), caption="Your card")

    @router.message(F.photo)
    async def receive_photo(message: Message, bot: Bot) -> None:
        assert message.photo is not None
        downloaded = await bot.download(message.photo[-1])
        assert downloaded is not None
        data = downloaded.read()
        await message.answer(f"got {len(data)} bytes {hashlib.sha256(data).hexdigest()}")

    @router.callback_query(F.data == "press")
    async def pressed(callback: CallbackQuery) -> None:
        await callback.answer("Pressed!")
        assert isinstance(callback.message, Message)
        await callback.message.edit_text("Pressed")

    @router.my_chat_member()
    async def membership(update: ChatMemberUpdated) -> None:
        member_statuses.append(update.new_chat_member.status)

    @router.message(F.text)
    async def echo(message: Message) -> None:
        await message.answer(message.text or "")

    return router


# --------------------------------------------------------------------------- fixtures


class LocalAiohttpSession(AiohttpSession):
    """aiogram's own session, minus the 250 ms pause ``close()`` leaves for TLS shutdown.

    The fake speaks plain HTTP on localhost, and that pause per test would make up most of
    this file's run time.
    """

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()


def make_bot(server: FakeTelegramServer, token: str = TOKEN) -> Bot:
    api = TelegramAPIServer.from_base(server.base_url)
    return Bot(token=token, session=LocalAiohttpSession(api=api))


@pytest_asyncio.fixture
async def server() -> AsyncIterator[FakeTelegramServer]:
    async with FakeTelegramServer() as fake:
        yield fake


@pytest_asyncio.fixture
async def bot(server: FakeTelegramServer) -> AsyncIterator[Bot]:
    bot = make_bot(server)
    yield bot
    await bot.session.close()


@pytest_asyncio.fixture
async def harness(server: FakeTelegramServer, bot: Bot) -> AsyncIterator[Harness]:
    """Run ``dp.start_polling`` for the duration of a test and stop it cleanly."""
    statuses: list[str] = []
    dispatcher = Dispatcher()
    dispatcher.include_router(build_router(statuses))
    polling = asyncio.create_task(
        dispatcher.start_polling(
            bot, polling_timeout=1, handle_signals=False, close_bot_session=False
        )
    )
    await server.wait_for(lambda: server.calls("getUpdates"), what="the first getUpdates")
    yield Harness(server, bot, UserClient(server, USER_ID, "Ann", username="ann"), statuses)
    await dispatcher.stop_polling()
    await asyncio.wait_for(polling, timeout=5)


# --------------------------------------------------------------------------- through polling


@pytest.mark.asyncio
async def test_echo_reply_is_recorded_per_chat(harness: Harness) -> None:
    await harness.user.send("hello there")

    reply = await harness.user.wait_message()

    assert reply["text"] == "hello there"
    assert reply["from"]["id"] == 42 and reply["from"]["is_bot"]
    assert reply["chat"]["id"] == USER_ID
    request = harness.server.calls("sendMessage")[-1]
    assert request.chat_id == USER_ID and request.params["text"] == "hello there"
    assert [m["text"] for m in harness.server.history(USER_ID)] == ["hello there"] * 2


@pytest.mark.asyncio
async def test_start_payload_reaches_deep_link_filter(harness: Harness) -> None:
    await harness.user.send("/start promo42")
    assert (await harness.user.wait_message())["text"] == "payload:promo42"

    await harness.user.send("/start")
    welcome = await harness.user.wait_message()
    assert welcome["text"] == "Welcome!"
    assert welcome["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "press"


@pytest.mark.asyncio
async def test_button_click_is_answered_and_edit_applied(harness: Harness) -> None:
    user = harness.user
    await user.send("/start")
    welcome = await user.wait_message("Welcome")

    query_id = await user.click("Press me")

    answer = await user.wait_callback_answer(query_id)
    assert answer["text"] == "Pressed!"
    edited = await user.wait_for(
        lambda: harness.server.message(USER_ID, welcome["message_id"])["text"] == "Pressed"
    )
    assert edited
    current = user.messages[-1]
    assert current["message_id"] == welcome["message_id"]
    assert "reply_markup" not in current  # edit_text without markup drops the keyboard
    assert "edit_date" in current


@pytest.mark.asyncio
async def test_bot_photo_is_stored_and_downloadable(harness: Harness) -> None:
    await harness.user.send("/photo")

    message = await harness.user.wait_message(lambda m: "photo" in m)

    assert message["caption"] == "Your card"
    largest = message["photo"][-1]
    assert (largest["width"], largest["height"]) == (3, 2)
    upload = next(iter(harness.server.calls("sendPhoto")[-1].files.values()))
    assert upload.filename == "card.png" and upload.data == CARD_PNG
    file = await harness.bot.get_file(largest["file_id"])
    assert file.file_path and file.file_path.startswith("photos/")
    downloaded = await harness.bot.download(largest["file_id"])
    assert downloaded is not None and downloaded.read() == CARD_PNG


@pytest.mark.asyncio
async def test_user_photo_downloads_with_same_bytes(harness: Harness) -> None:
    photo = make_png(5, 4)

    await harness.user.send_photo(photo)

    reply = await harness.user.wait_message("got")
    assert reply["text"] == f"got {len(photo)} bytes {hashlib.sha256(photo).hexdigest()}"
    file_id = harness.server.history(USER_ID)[0]["photo"][-1]["file_id"]
    stored = harness.server.file(file_id)
    assert stored is not None and stored.data == photo
    assert harness.server.calls("getFile")[-1].params["file_id"] == file_id
    assert harness.server.downloads == [stored.file_path]


@pytest.mark.asyncio
async def test_block_and_unblock_reach_bot_and_toggle_403(harness: Harness) -> None:
    await harness.user.block()
    await harness.user.wait_for(lambda: harness.member_statuses == ["kicked"])

    with pytest.raises(TelegramForbiddenError, match="bot was blocked by the user"):
        await harness.bot.send_message(USER_ID, "still there?")

    await harness.user.unblock()
    await harness.user.wait_for(lambda: harness.member_statuses == ["kicked", "member"])
    sent = await harness.bot.send_message(USER_ID, "welcome back")
    assert sent.text == "welcome back"


# --------------------------------------------------------------------------- direct Bot calls


@pytest.mark.asyncio
async def test_injected_429_raises_retry_after(server: FakeTelegramServer, bot: Bot) -> None:
    server.fail_next("sendMessage", code=429, retry_after=7)

    with pytest.raises(TelegramRetryAfter) as caught:
        await bot.send_message(USER_ID, "hi")

    assert caught.value.retry_after == 7
    assert "retry after 7" in caught.value.message
    assert (await bot.send_message(USER_ID, "hi")).text == "hi"
    assert [r.status for r in server.calls("sendMessage")] == [429, 200]


@pytest.mark.asyncio
async def test_rate_limit_token_bucket(server: FakeTelegramServer, bot: Bot) -> None:
    server.rate_limit(per_second=2, burst=2)
    await bot.send_message(USER_ID, "one")
    await bot.send_message(USER_ID, "two")
    await bot.send_chat_action(USER_ID, "typing")  # not a send; never limited

    with pytest.raises(TelegramRetryAfter) as caught:
        await bot.send_message(USER_ID, "three")

    assert caught.value.retry_after >= 1
    assert server.rate_limited_count == 1
    server.rate_limit(None)
    await bot.send_message(USER_ID, "three")
    assert [m["text"] for m in server.chat(USER_ID)] == ["one", "two", "three"]


@pytest.mark.asyncio
async def test_server_errors_and_delays(server: FakeTelegramServer, bot: Bot) -> None:
    server.fail_next("sendMessage", code=502)
    with pytest.raises(TelegramServerError):
        await bot.send_message(USER_ID, "hi")

    server.delay("getMe", 0.3, count=1)
    started = time.monotonic()
    me = await bot.get_me()
    assert time.monotonic() - started >= 0.3
    assert me.id == 42 and me.username == server.bot_username


@pytest.mark.asyncio
async def test_a_fault_hook_answers_calls_and_observers_see_every_answer(
    server: FakeTelegramServer, bot: Bot
) -> None:
    """What a soak installs (benchmarks/chaos): a hook that may answer a call with an error
    before it is handled, and observers of every call once answered."""
    seen: list[tuple[str, int]] = []
    server.observers.append(lambda record: seen.append((record.method, record.status)))

    async def refuse_the_second(record: RecordedRequest) -> ApiError | None:
        if record.is_method("sendMessage") and len(server.calls("sendMessage")) == 2:
            return ApiError(503, "Service Unavailable")
        return None

    server.fault = refuse_the_second
    await bot.send_message(USER_ID, "one")
    with pytest.raises(TelegramServerError):
        await bot.send_message(USER_ID, "two")
    await bot.send_message(USER_ID, "three")
    assert seen == [("sendMessage", 200), ("sendMessage", 503), ("sendMessage", 200)]
    assert [m["text"] for m in server.chat(USER_ID)] == ["one", "three"]
    assert all(r.at <= time.time() for r in server.requests)


@pytest.mark.asyncio
async def test_blocked_chat_raises_forbidden(server: FakeTelegramServer, bot: Bot) -> None:
    server.block(USER_ID)
    with pytest.raises(TelegramForbiddenError):
        await bot.send_message(USER_ID, "hi")
    server.unblock(USER_ID)
    await bot.send_message(USER_ID, "hi")


@pytest.mark.asyncio
async def test_long_poll_returns_update_pushed_while_waiting(
    server: FakeTelegramServer, bot: Bot
) -> None:
    user = UserClient(server, USER_ID)
    started = time.monotonic()
    poll = asyncio.create_task(bot.get_updates(timeout=5))
    await server.wait_for(lambda: server.calls("getUpdates"))
    await asyncio.sleep(0.2)
    assert not poll.done()

    await user.send("ping")
    updates = await asyncio.wait_for(poll, timeout=2)

    assert 0.2 <= time.monotonic() - started < 1.0
    assert [u.message.text for u in updates if u.message] == ["ping"]
    again = await bot.get_updates(timeout=0)  # not confirmed yet
    assert [u.update_id for u in again] == [updates[0].update_id]
    started = time.monotonic()
    assert await bot.get_updates(offset=updates[0].update_id + 1, timeout=1) == []
    assert 0.9 <= time.monotonic() - started < 2.0
    assert await bot.get_updates(timeout=0) == []  # confirmed by the offset


@pytest.mark.asyncio
async def test_allowed_updates_filter(server: FakeTelegramServer, bot: Bot) -> None:
    user = UserClient(server, USER_ID)
    await user.send("dropped")
    await user.block()

    updates = await bot.get_updates(timeout=0, allowed_updates=["my_chat_member"])

    assert [u.my_chat_member is not None for u in updates] == [True]
    assert [u["message"]["text"] for u in server.dropped_updates] == ["dropped"]


@pytest.mark.asyncio
async def test_commands_and_menu_button_stored(server: FakeTelegramServer, bot: Bot) -> None:
    await bot.set_my_commands([BotCommand(command="start", description="Start")])
    await bot.set_my_commands(
        [BotCommand(command="start", description="Начать")], language_code="ru"
    )
    await bot.set_my_commands(
        [BotCommand(command="balance", description="Balance")],
        scope=BotCommandScopeAllPrivateChats(),
    )
    await bot.set_chat_menu_button(chat_id=USER_ID, menu_button=MenuButtonCommands())

    ru = await bot.get_my_commands(language_code="ru")
    assert [(c.command, c.description) for c in ru] == [("start", "Начать")]
    assert server.commands()[0]["description"] == "Start"
    assert server.commands(scope={"type": "all_private_chats"})[0]["command"] == "balance"
    assert server.menu_button(USER_ID) == {"type": "commands"}
    await bot.delete_my_commands(language_code="ru")
    assert await bot.get_my_commands(language_code="ru") == []
    with pytest.raises(TelegramBadRequest, match="BOT_COMMAND_INVALID"):
        await bot.set_my_commands([BotCommand(command="Bad Command", description="x")])


@pytest.mark.asyncio
async def test_chat_scoped_commands_per_chat_and_language() -> None:
    async with FakeTelegramServer(strict_chats=True) as server:
        scoped = make_bot(server)
        try:
            UserClient(server, USER_ID)  # the user has a chat with the bot
            chat = BotCommandScopeChat(chat_id=USER_ID)
            await scoped.set_my_commands(
                [BotCommand(command="shift", description="Смена")], scope=chat, language_code="ru"
            )
            await scoped.set_my_commands([BotCommand(command="shift", description="Shift")], chat)
            stored = server.commands("ru", {"type": "chat", "chat_id": USER_ID})
            assert stored == [{"command": "shift", "description": "Смена"}]
            assert server.commands("ru") == []  # other scopes are untouched
            got = await scoped.get_my_commands(scope=chat)
            assert [c.description for c in got] == ["Shift"]
            await scoped.delete_my_commands(scope=chat, language_code="ru")
            assert server.commands("ru", {"type": "chat", "chat_id": USER_ID}) == []
            assert server.commands("", {"type": "chat", "chat_id": USER_ID}) != []
            # Telegram refuses a chat it does not know.
            with pytest.raises(TelegramBadRequest, match="chat not found"):
                await scoped.set_my_commands(
                    [BotCommand(command="shift", description="Shift")],
                    BotCommandScopeChat(chat_id=USER_ID + 1),
                )
        finally:
            await scoped.session.close()


@pytest.mark.asyncio
async def test_unknown_method_is_404_and_recorded(server: FakeTelegramServer, bot: Bot) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{server.base_url}/bot{TOKEN}/frobnicate", data={"x": "1"}) as response,
    ):
        assert response.status == 404
        assert await response.json() == {
            "ok": False,
            "error_code": 404,
            "description": "Not Found",
        }
    with pytest.raises(TelegramNotFound):
        await bot.send_dice(USER_ID)
    assert [r.method for r in server.unknown_requests] == ["frobnicate", "sendDice"]
    assert server.unknown_requests[0].params == {"x": 1}


@pytest.mark.asyncio
async def test_html_is_rendered_and_bad_markup_refused(
    server: FakeTelegramServer, bot: Bot
) -> None:
    sent = await bot.send_message(USER_ID, "<b>Hi</b> &lt;3 <i>Ann</i>", parse_mode="HTML")

    assert sent.text == "Hi <3 Ann"
    assert [(e.type, e.offset, e.length) for e in sent.entities or []] == [
        ("bold", 0, 2),
        ("italic", 6, 3),
    ]
    with pytest.raises(TelegramBadRequest, match="can't parse entities"):
        await bot.send_message(USER_ID, "Tom <3 & Jerry", parse_mode="HTML")
    with pytest.raises(TelegramBadRequest, match="reserved"):
        await bot.send_message(USER_ID, "Balance: 10.5", parse_mode="MarkdownV2")


@pytest.mark.asyncio
async def test_edit_rules(server: FakeTelegramServer, bot: Bot) -> None:
    sent = await bot.send_message(USER_ID, "v1")

    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_text(text="v1", chat_id=USER_ID, message_id=sent.message_id)
    button = InlineKeyboardButton(text="Go", callback_data="go")
    markup = InlineKeyboardMarkup(inline_keyboard=[[button]])
    await bot.edit_message_reply_markup(
        chat_id=USER_ID, message_id=sent.message_id, reply_markup=markup
    )
    edited = await bot.edit_message_text(text="v2", chat_id=USER_ID, message_id=sent.message_id)

    assert isinstance(edited, Message) and edited.text == "v2"
    assert server.chat(USER_ID)[0]["text"] == "v2"
    with pytest.raises(TelegramBadRequest, match="no caption"):
        await bot.edit_message_caption(chat_id=USER_ID, message_id=sent.message_id, caption="x")
    with pytest.raises(TelegramBadRequest, match="BUTTON_DATA_INVALID"):
        too_long = InlineKeyboardButton(text="x", callback_data="x" * 65)
        await bot.send_message(
            USER_ID, "x", reply_markup=InlineKeyboardMarkup(inline_keyboard=[[too_long]])
        )


@pytest.mark.asyncio
async def test_documents_albums_and_deletion(server: FakeTelegramServer, bot: Bot) -> None:
    document = await bot.send_document(USER_ID, BufferedInputFile(b"a,b\n1,2\n", "report.csv"))
    assert document.document is not None
    assert document.document.file_name == "report.csv"
    assert document.document.mime_type == "text/csv"
    downloaded = await bot.download(document.document.file_id)
    assert downloaded is not None and downloaded.read() == b"a,b\n1,2\n"

    album = await bot.send_media_group(
        USER_ID,
        [
            InputMediaPhoto(media=BufferedInputFile(CARD_PNG, "a.png"), caption="first"),
            InputMediaPhoto(media=document_photo_id(server)),
        ],
    )
    assert len({m.media_group_id for m in album}) == 1
    assert album[0].caption == "first"

    assert await bot.delete_message(USER_ID, document.message_id)
    assert document.message_id not in [m["message_id"] for m in server.chat(USER_ID)]
    assert len(server.chat(USER_ID, include_deleted=True)) == 3
    with pytest.raises(TelegramBadRequest, match="message to delete not found"):
        await bot.delete_message(USER_ID, document.message_id)


def document_photo_id(server: FakeTelegramServer) -> str:
    """A photo file_id the server already knows, to send by reference."""
    return str(server.upload_photo(CARD_PNG)[-1]["file_id"])


@pytest.mark.asyncio
async def test_reply_keyboard_is_tracked_per_chat(server: FakeTelegramServer, bot: Bot) -> None:
    user = UserClient(server, USER_ID)
    keyboard = ReplyKeyboardMarkup(keyboard=[[KeyboardButton(text="Balance")]])

    sent = await bot.send_message(USER_ID, "Menu", reply_markup=keyboard)

    assert sent.reply_markup is None  # Message.reply_markup only carries inline keyboards
    assert user.reply_keyboard is not None
    pressed = await user.press("Balance")
    assert pressed["text"] == "Balance"


@pytest.mark.asyncio
async def test_webhook_conflicts_with_polling(server: FakeTelegramServer, bot: Bot) -> None:
    await bot.set_webhook("https://example.com/hook")
    assert (await bot.get_webhook_info()).url == "https://example.com/hook"
    with pytest.raises(TelegramConflictError):
        await bot.get_updates(timeout=0)
    await bot.delete_webhook()
    assert await bot.get_updates(timeout=0) == []


@pytest.mark.asyncio
async def test_servers_are_independent_and_check_tokens() -> None:
    async with (
        FakeTelegramServer() as first,
        FakeTelegramServer(token="7:SECRET") as second,
    ):
        assert first.base_url != second.base_url
        bots = [make_bot(first), make_bot(second, "7:SECRET"), make_bot(second, "8:WRONG")]
        try:
            await bots[0].send_message(USER_ID, "to first")
            await bots[1].send_message(USER_ID, "to second")
            with pytest.raises(TelegramUnauthorizedError):
                await bots[2].get_me()
        finally:
            await asyncio.gather(*(b.session.close() for b in bots))
        assert [m["text"] for m in first.chat(USER_ID)] == ["to first"]
        assert [m["text"] for m in second.chat(USER_ID)] == ["to second"]
        assert second.chat(USER_ID)[0]["from"]["id"] == 7


# --------------------------------------------------------------------------- payments


@dataclass
class Shop:
    """A bot that sells: it answers pre-checkout queries (refusing the payload "refuse",
    answering late after ``delay`` seconds) and keeps the successful payments it is sent."""

    server: FakeTelegramServer
    bot: Bot
    user: UserClient
    paid: list[SuccessfulPayment] = field(default_factory=list)
    delay: float = 0.0


@pytest_asyncio.fixture
async def shop(server: FakeTelegramServer, bot: Bot) -> AsyncIterator[Shop]:
    running = Shop(server, bot, UserClient(server, USER_ID, "Ann"))
    router = Router()

    @router.pre_checkout_query()
    async def pre_checkout(query: PreCheckoutQuery) -> None:
        await asyncio.sleep(running.delay)
        if query.invoice_payload == "refuse":
            await query.answer(ok=False, error_message="Sold out")
        else:
            await query.answer(ok=True)

    @router.message(F.successful_payment)
    async def paid(message: Message) -> None:
        assert message.successful_payment is not None
        running.paid.append(message.successful_payment)

    dispatcher = Dispatcher()
    dispatcher.include_router(router)
    polling = asyncio.create_task(
        dispatcher.start_polling(
            bot,
            polling_timeout=1,
            handle_signals=False,
            close_bot_session=False,
            allowed_updates=dispatcher.resolve_used_update_types(),
        )
    )
    await server.wait_for(lambda: server.calls("getUpdates"), what="the first getUpdates")
    yield running
    await dispatcher.stop_polling()
    await asyncio.wait_for(polling, timeout=5)


def stars_link(bot: Bot, payload: str = "club:stars:1", **more: object) -> Any:
    params: dict[str, Any] = {
        "title": "City Club",
        "description": "30 days of membership",
        "payload": payload,
        "currency": "XTR",
        "prices": [LabeledPrice(label="30 days", amount=250)],
        "subscription_period": 2592000,
    }
    params.update(more)
    return bot.create_invoice_link(**params)


@pytest.mark.asyncio
async def test_invoices_follow_telegrams_rules(server: FakeTelegramServer, bot: Bot) -> None:
    link = await stars_link(bot)
    assert link.startswith("https://t.me/$")
    assert server.payments.invoice(link).subscription_period == 2592000
    assert (await stars_link(bot, provider_token="")).startswith("https://t.me/$")
    two = [LabeledPrice(label="a", amount=200), LabeledPrice(label="b", amount=50)]
    refused = {
        "STARS_INVOICE_INVALID": [{"provider_token": "284685063:TEST"}, {"prices": two}],
        "SUBSCRIPTION_PERIOD_INVALID": [
            {"subscription_period": 86400},
            {"currency": "PLN", "provider_token": "284685063:TEST"},
        ],
        "CURRENCY_TOTAL_AMOUNT_INVALID": [{"prices": [LabeledPrice(label="x", amount=0)]}],
        "INVOICE_TITLE_INVALID": [{"title": "x" * 33}],
        "PAYMENT_PROVIDER_INVALID": [{"currency": "PLN", "subscription_period": None}],
    }
    for error, cases in refused.items():
        for case in cases:
            with pytest.raises(TelegramBadRequest, match=error):
                await stars_link(bot, **case)
    with pytest.raises(TelegramBadRequest, match="STARS_INVOICE_INVALID"):
        await bot.send_invoice(USER_ID, "Club", "A month", "p", "XTR", two, provider_token="")


@pytest.mark.asyncio
async def test_a_stars_subscription_paid_renewed_cancelled_refunded(shop: Shop) -> None:
    server, bot, user = shop.server, shop.bot, shop.user
    started = int(time.time())
    outcome = await user.pay(await stars_link(bot))

    assert outcome.ok and outcome.charge is not None and outcome.message is not None
    first = outcome.charge.successful_payment
    assert first["currency"] == "XTR" and first["total_amount"] == 250
    assert first["invoice_payload"] == "club:stars:1"
    assert first["is_recurring"] and first["is_first_recurring"]
    assert started + 2592000 <= first["subscription_expiration_date"] <= time.time() + 2592000
    await server.wait_for(lambda: shop.paid)  # aiogram parsed it
    parsed = shop.paid[0]
    assert parsed.telegram_payment_charge_id == first["telegram_payment_charge_id"]
    assert parsed.subscription_expiration_date is not None
    assert outcome.message["from"]["id"] == USER_ID and outcome.message["chat"]["id"] == USER_ID

    renewal = user.renew(first["telegram_payment_charge_id"])
    assert renewal is not None
    again = renewal.successful_payment
    assert again["telegram_payment_charge_id"] != first["telegram_payment_charge_id"]
    assert again["is_recurring"] and "is_first_recurring" not in again
    expected = first["subscription_expiration_date"] + 2592000
    assert again["subscription_expiration_date"] == expected
    await server.wait_for(lambda: len(shop.paid) == 2)

    charge = again["telegram_payment_charge_id"]
    assert await bot.edit_user_star_subscription(USER_ID, charge, is_canceled=True)
    assert server.payments.subscription_of(charge).is_canceled
    assert user.renew(charge) is None
    assert await bot.edit_user_star_subscription(USER_ID, charge, is_canceled=False)
    assert user.renew(charge) is not None
    user.cancel_subscription(charge)  # in Telegram's settings
    assert user.renew(charge) is None
    with pytest.raises(TelegramBadRequest, match="SUBSCRIPTION_CANCELED_BY_USER"):
        await bot.edit_user_star_subscription(USER_ID, charge, is_canceled=False)
    assert await bot.edit_user_star_subscription(USER_ID, charge, is_canceled=True)
    with pytest.raises(TelegramBadRequest, match="SUBSCRIPTION_CANCELED_BY_USER"):
        await bot.edit_user_star_subscription(USER_ID, charge, is_canceled=False)
    assert user.renew(charge) is None  # still cancelled: only the user can renew it now

    assert await bot.refund_star_payment(USER_ID, charge)
    with pytest.raises(TelegramBadRequest, match="CHARGE_ALREADY_REFUNDED"):
        await bot.refund_star_payment(USER_ID, charge)
    with pytest.raises(TelegramBadRequest, match="CHARGE_NOT_FOUND"):
        await bot.refund_star_payment(USER_ID, "stxNOSUCHCHARGE")
    with pytest.raises(TelegramBadRequest, match="CHARGE_NOT_FOUND"):
        await bot.refund_star_payment(USER_ID + 1, first["telegram_payment_charge_id"])
    with pytest.raises(TelegramBadRequest, match="CHARGE_NOT_FOUND"):
        await bot.edit_user_star_subscription(USER_ID, "stxNOSUCHCHARGE", is_canceled=True)
    assert [c.telegram_payment_charge_id for c in server.payments.refunded()] == [charge]

    user.redeliver(outcome.message)  # the same successful_payment again
    await server.wait_for(lambda: len(shop.paid) == 4)
    assert shop.paid[-1].telegram_payment_charge_id == first["telegram_payment_charge_id"]


@pytest.mark.asyncio
async def test_a_refused_or_late_pre_checkout_takes_nothing(shop: Shop) -> None:
    server, user = shop.server, shop.user
    refused = await user.pay(await stars_link(shop.bot, payload="refuse"))
    assert not refused.ok and refused.error_message == "Sold out" and refused.answered

    server.payments.pre_checkout_timeout = 0.3
    shop.delay = 0.6
    late = await user.pay(await stars_link(shop.bot))
    assert not late.ok and not late.answered and late.charge is None
    answer = await server.wait_request("answerPreCheckoutQuery", lambda r: r.params.get("ok"))
    assert answer.status == 400  # Telegram gave up on it
    assert server.payments.late_answers and not server.payments.charges
    assert not shop.paid and len(server.payments.failed) == 2


@pytest.mark.asyncio
async def test_a_card_invoice_message_paid(shop: Shop) -> None:
    server, bot, user = shop.server, shop.bot, shop.user
    with pytest.raises(TelegramBadRequest, match="PAYMENT_PROVIDER_INVALID"):
        await bot.send_invoice(
            USER_ID,
            "City Club",
            "30 days",
            "club:card:1",
            "PLN",
            [LabeledPrice(label="x", amount=2900)],
        )
    server.payments.provider_tokens = {"284685063:TEST"}
    with pytest.raises(TelegramBadRequest, match="PAYMENT_PROVIDER_INVALID"):
        await bot.send_invoice(
            USER_ID,
            "City Club",
            "30 days",
            "club:card:1",
            "PLN",
            [LabeledPrice(label="x", amount=2900)],
            provider_token="1:WRONG",
        )
    sent = await bot.send_invoice(
        USER_ID,
        "City Club",
        "30 days",
        "club:card:1",
        "PLN",
        [LabeledPrice(label="30 days", amount=2900)],
        provider_token="284685063:TEST",
    )
    assert sent.invoice is not None and sent.invoice.total_amount == 2900
    message = server.chat(USER_ID)[-1]
    outcome = await user.pay(message)

    assert outcome.ok and outcome.charge is not None
    paid = outcome.charge.successful_payment
    assert paid["currency"] == "PLN" and paid["total_amount"] == 2900
    assert paid["provider_payment_charge_id"].startswith("prov_")
    assert "subscription_expiration_date" not in paid and "is_recurring" not in paid
    await server.wait_for(lambda: shop.paid)
    with pytest.raises(TelegramBadRequest, match="CHARGE_NOT_FOUND"):  # not Stars
        await bot.refund_star_payment(USER_ID, paid["telegram_payment_charge_id"])
    with pytest.raises(TelegramBadRequest, match="SUBSCRIPTION_NOT_FOUND"):
        await bot.edit_user_star_subscription(
            USER_ID, paid["telegram_payment_charge_id"], is_canceled=True
        )
