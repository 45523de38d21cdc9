"""A scripted Telegram user for end-to-end tests against ``FakeTelegramServer``.

``UserClient`` produces updates the way the Telegram app would (text with ``bot_command``
entities, photos with downloadable file ids, button presses, blocking the bot) and reads
back what the bot sent to that user's private chat.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Callable
from typing import Any, TypeVar

from .payments import Charge, PaymentOutcome
from .server import JSON, FakeTelegramServer, utf16_len

_T = TypeVar("_T")
MessagePredicate = Callable[[JSON], Any] | str | None

_COMMAND_RE = re.compile(r"/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{3,32})?")


def text_of(message: JSON) -> str:
    """The text a user reads in a message: its text, else its caption, else ""."""
    return str(message.get("text") or message.get("caption") or "")


def inline_buttons(message: JSON) -> list[JSON]:
    """All inline keyboard buttons of a message, row by row, left to right."""
    rows = (message.get("reply_markup") or {}).get("inline_keyboard") or []
    return [button for row in rows for button in row]


def command_entities(text: str) -> list[JSON]:
    """The ``bot_command`` entity Telegram adds to a message starting with a command."""
    match = _COMMAND_RE.match(text)
    if match is None:
        return []
    return [{"type": "bot_command", "offset": 0, "length": utf16_len(match.group(0))}]


def make_png(
    width: int = 1, height: int = 1, rgb: tuple[int, int, int] = (255, 255, 255)
) -> bytes:
    """A valid solid-colour PNG, so photo tests need neither Pillow nor fixture files."""

    def chunk(tag: bytes, body: bytes) -> bytes:
        checksum = zlib.crc32(tag + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", checksum)

    row = b"\x00" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


def _as_predicate(predicate: MessagePredicate) -> Callable[[JSON], Any]:
    """Accept a callable on the message, a substring of its text, or None for "any"."""
    if predicate is None:
        return lambda message: True
    if isinstance(predicate, str):
        needle = predicate
        return lambda message: needle in text_of(message)
    return predicate


class UserClient:
    """One Telegram user in a private chat with the bot (chat id == user id)."""

    def __init__(
        self,
        server: FakeTelegramServer,
        user_id: int,
        first_name: str = "Test",
        *,
        last_name: str | None = None,
        username: str | None = None,
        language_code: str | None = "en",
    ) -> None:
        self.server = server
        self.user_id = user_id
        self.user: JSON = {"id": user_id, "is_bot": False, "first_name": first_name}
        self.chat: JSON = {"id": user_id, "type": "private", "first_name": first_name}
        for key, value in (("last_name", last_name), ("username", username)):
            if value is not None:
                self.user[key] = value
                self.chat[key] = value
        if language_code is not None:
            self.user["language_code"] = language_code
        self._seen: set[int] = set()
        self.last_callback_id: str | None = None
        server.register_chat(self.chat)

    # ----------------------------------------------------------------- what the user does

    async def send(self, text: str, *, reply_to: JSON | None = None) -> JSON:
        """Send a text message; a leading /command gets its ``bot_command`` entity."""
        content: JSON = {"text": text}
        entities = command_entities(text)
        if entities:
            content["entities"] = entities
        if reply_to is not None:
            content["reply_to_message"] = reply_to
        return self.server.add_user_message(self.chat, self.user, content)

    async def send_photo(self, data: bytes, caption: str | None = None) -> JSON:
        """Send a photo whose file_id downloads ``data`` via getFile and the file route."""
        content: JSON = {"photo": self.server.upload_photo(data)}
        if caption:
            content["caption"] = caption
        return self.server.add_user_message(self.chat, self.user, content)

    async def send_document(self, data: bytes, file_name: str, caption: str | None = None) -> JSON:
        """Send a file as a document, keeping its name."""
        content: JSON = {"document": self.server.upload_document(data, file_name)}
        if caption:
            content["caption"] = caption
        return self.server.add_user_message(self.chat, self.user, content)

    async def send_contact(self, phone_number: str) -> JSON:
        """Share the user's own contact, as the request_contact keyboard button does."""
        contact = {
            "phone_number": phone_number,
            "first_name": self.user["first_name"],
            "user_id": self.user_id,
        }
        return self.server.add_user_message(self.chat, self.user, {"contact": contact})

    async def click(
        self, target: JSON | str, callback_data: str | None = None, *, check: bool = True
    ) -> str:
        """Press an inline button and return the callback query id.

        ``click("Text")`` presses the button with that text on the newest message that has
        an inline keyboard; ``click(message, "data")`` presses the button with that
        callback_data on ``message`` (its current, possibly edited, version).  With
        ``check=False`` the data need not be on the keyboard any more, which models a user
        pressing a stale button.
        """
        if isinstance(target, str):
            message, data = self._button_by_text(target)
        else:
            message = self.server.message(target["chat"]["id"], target["message_id"]) or target
            if callback_data is None:
                raise ValueError("click(message, callback_data) needs the callback_data")
            if check and callback_data not in self._callback_data(message):
                raise LookupError(
                    f"no button with callback_data {callback_data!r} on message "
                    f"{message['message_id']}; buttons: {inline_buttons(message)}"
                )
            data = callback_data
        query = self.server.open_callback_query(self.user, message, data)
        query_id = str(query["id"])
        self.last_callback_id = query_id
        return query_id

    async def press(self, button_text: str) -> JSON:
        """Press a reply keyboard button: the app simply sends its text."""
        keyboard = self.reply_keyboard or {}
        texts = [button.get("text") for row in keyboard.get("keyboard", []) for button in row]
        if button_text not in texts:
            raise LookupError(f"no reply keyboard button {button_text!r}; buttons: {texts}")
        return await self.send(button_text)

    async def pay(self, invoice: str | JSON) -> PaymentOutcome:
        """Pay an invoice: a link from createInvoiceLink (``https://t.me/$…``, e.g. a URL
        button's) or an invoice message the bot sent. Telegram asks the bot first
        (pre_checkout_query, answered within 10 s); on its ok, the successful_payment
        message arrives. Returns how it ended."""
        return await self.server.pay(self.user, invoice)

    def invoice_link(self, text: str) -> str:
        """The URL of the inline button with this text on the newest message that has it."""
        for message in reversed(self.messages):
            for button in inline_buttons(message):
                if button.get("text") == text and "url" in button:
                    return str(button["url"])
        raise LookupError(f"no URL button {text!r} in chat {self.user_id}")

    def renew(self, charge_id: str) -> Charge | None:
        """Let Telegram charge the subscription ``charge_id`` paid for its next period (a
        recurring successful_payment with a new charge id); None if it was cancelled."""
        return self.server.renew_subscription(charge_id)

    def cancel_subscription(self, charge_id: str) -> None:
        """Cancel the subscription in Telegram's own settings (the bot is not told)."""
        self.server.payments.cancel(charge_id)

    def redeliver(self, message: JSON) -> JSON:
        """Have Telegram deliver the update that carried ``message`` again."""
        return self.server.redeliver(self.server.update_with(message))

    async def block(self) -> JSON:
        """Block the bot: sends now fail with 403 and the bot gets ``my_chat_member``."""
        self.server.block(self.user_id)
        return self._push_member_change("member", "kicked")

    async def unblock(self) -> JSON:
        """Unblock the bot (the app then usually sends /start, which tests do explicitly)."""
        self.server.unblock(self.user_id)
        return self._push_member_change("kicked", "member")

    def _push_member_change(self, old: str, new: str) -> JSON:
        bot = self.server.bot_user()

        def member(status: str) -> JSON:
            extra = {"until_date": 0} if status == "kicked" else {}
            return {"status": status, "user": bot, **extra}

        change = {
            "chat": self.chat,
            "from": self.user,
            "date": int(self.server.clock()),
            "old_chat_member": member(old),
            "new_chat_member": member(new),
        }
        return self.server.push_update({"my_chat_member": change})

    # ----------------------------------------------------------------- what the user sees

    @property
    def messages(self) -> list[JSON]:
        """Bot messages in this chat, oldest first, edits applied, deleted ones left out."""
        return self.server.chat(self.user_id)

    @property
    def reply_keyboard(self) -> JSON | None:
        return self.server.reply_keyboard(self.user_id)

    def mark_all_seen(self) -> None:
        """Skip everything the bot sent so far, so ``wait_message`` returns only new ones."""
        self._seen.update(message["message_id"] for message in self.messages)

    def _next_unseen(self, predicate: Callable[[JSON], Any]) -> JSON | None:
        for message in self.messages:
            if message["message_id"] not in self._seen and predicate(message):
                self._seen.add(message["message_id"])
                return message
        return None

    async def wait_message(
        self,
        predicate: MessagePredicate = None,
        timeout: float = 5.0,  # noqa: ASYNC109 - a per-call deadline is the point here
    ) -> JSON:
        """The oldest bot message not yet returned to this client that matches ``predicate``.

        ``predicate`` is a callable on the message dict or a substring of its text/caption.
        Messages skipped by the predicate stay unseen for later calls.
        """
        matches = _as_predicate(predicate)
        return await self.server.wait_for(
            lambda: self._next_unseen(matches),
            timeout,
            what=f"a bot message to {self.user_id} matching {predicate!r} "
            f"(chat: {[text_of(message) for message in self.messages]})",
        )

    async def wait_for(
        self,
        predicate: Callable[[], _T | None],
        timeout: float = 5.0,  # noqa: ASYNC109 - a per-call deadline is the point here
    ) -> _T:
        """Wait until ``predicate()`` is truthy; re-checked whenever the server changes."""
        return await self.server.wait_for(predicate, timeout)

    async def wait_callback_answer(
        self,
        query_id: str | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109 - a per-call deadline is the point here
    ) -> JSON:
        """The answerCallbackQuery params for ``query_id`` (default: the last click)."""
        wanted = query_id or self.last_callback_id
        if wanted is None:
            raise ValueError("no callback query to wait for; click something first")
        return await self.server.wait_for(
            lambda: self.server.callback_answers.get(wanted),
            timeout,
            what=f"answerCallbackQuery for query {wanted}",
        )

    # ----------------------------------------------------------------- helpers

    def _button_by_text(self, text: str) -> tuple[JSON, str]:
        keyboards = [message for message in self.messages if inline_buttons(message)]
        if not keyboards:
            raise LookupError(f"no inline keyboard in chat {self.user_id}")
        message = keyboards[-1]
        for button in inline_buttons(message):
            if button.get("text") == text:
                if "callback_data" not in button:
                    raise LookupError(f"button {text!r} has no callback_data: {button}")
                return message, button["callback_data"]
        texts = [button.get("text") for button in inline_buttons(message)]
        raise LookupError(f"no button {text!r} on the last inline keyboard; buttons: {texts}")

    @staticmethod
    def _callback_data(message: JSON) -> list[str]:
        return [b["callback_data"] for b in inline_buttons(message) if "callback_data" in b]
