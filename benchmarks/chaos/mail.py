"""What the bot sent each person, as it reached the fake Bot API: every answered send, edit
and button-press answer is routed to the inbox of its chat, so actors wait for their own
replies without copying whole chats (UserClient.wait_message does, on every server event)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.fakegram import FakeTelegramServer, RecordedRequest, inline_buttons, text_of

SENDS = {"sendmessage", "sendphoto", "senddocument"}
EDITS = {"editmessagetext", "editmessagereplymarkup", "editmessagecaption"}


@dataclass(frozen=True, slots=True)
class Mail:
    """One message as the bot sent it ("sent"), or as an edit left it ("edited"), or the
    answer to a button press ("answer": message holds {"text", "query"})."""

    kind: str
    message: dict[str, Any]
    at: float
    method: str = ""

    @property
    def text(self) -> str:
        return text_of(self.message)

    @property
    def message_id(self) -> int:
        return int(self.message.get("message_id") or 0)

    def data(self, label: str | None = None, *, prefix: str | None = None) -> str | None:
        """The callback data of this message's button whose text is `label` (or starts with
        `prefix`)."""
        for button in inline_buttons(self.message):
            text = str(button.get("text", ""))
            if (label is not None and text == label) or (
                prefix is not None and text.startswith(prefix)
            ):
                return button.get("callback_data")
        return None


class Inbox:
    def __init__(self) -> None:
        self.mail: list[Mail] = []
        self._changed = asyncio.Event()

    def add(self, mail: Mail) -> None:
        self.mail.append(mail)
        self._changed.set()

    def mark(self) -> int:
        """Where the mail that comes next starts (give it to `wait` as `since`)."""
        return len(self.mail)

    async def wait(
        self,
        matches: Callable[[Mail], bool],
        *,
        since: int,
        timeout: float,  # noqa: ASYNC109 - a per-call deadline is the point here
    ) -> tuple[Mail, int] | None:
        """The first mail at or after `since` that matches, with the index after it; None
        when nothing matched within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        index = since
        while True:
            while index < len(self.mail):
                mail = self.mail[index]
                index += 1
                if matches(mail):
                    return mail, index
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)


class Mailroom:
    """Routes the bot's answered Bot API calls to the inboxes of their chats."""

    def __init__(self, server: FakeTelegramServer) -> None:
        self.inboxes: dict[int, Inbox] = {}
        self.queries: dict[str, int] = {}  # callback query id -> the chat that pressed
        self.sends: list[Mail] = []  # every message sent, for the checks
        server.observers.append(self.observe)

    def inbox(self, chat_id: int) -> Inbox:
        return self.inboxes.setdefault(chat_id, Inbox())

    def pressed(self, query_id: str, chat_id: int) -> None:
        self.queries[query_id] = chat_id

    def observe(self, record: RecordedRequest) -> None:
        if not record.ok or record.response is None:
            return
        method = record.method.lower()
        result = record.response.get("result")
        if method in SENDS | EDITS and isinstance(result, dict) and "chat" in result:
            mail = Mail("sent" if method in SENDS else "edited", result, record.at, method)
            if method in SENDS:
                self.sends.append(mail)
            self.inbox(int(result["chat"]["id"])).add(mail)
        elif method == "answercallbackquery":
            query = str(record.params.get("callback_query_id", ""))
            chat = self.queries.get(query)
            if chat is not None:
                answer = {"text": str(record.params.get("text") or ""), "query": query}
                self.inbox(chat).add(Mail("answer", answer, record.at, method))
