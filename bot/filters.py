"""Router-level filters: who may use a router at all. Use cases check again."""

from __future__ import annotations

import re
from typing import Any

from aiogram.filters import Filter
from aiogram.types import Message, TelegramObject

from bot.views.keyboards import BUTTONS
from db.rules.access import may
from db.rules.cards import normalize_card_number


class IsMember(Filter):
    """Passes for a joined member (the locale middleware loaded `member`)."""

    async def __call__(self, event: TelegramObject, member: Any = None) -> bool:
        return member is not None


class IsStaff(Filter):
    """Passes for active staff whose role may do `action` (db/rules/access.py's table; any active
    staff if no action is given). The use case checks the same table again."""

    def __init__(self, action: str | None = None) -> None:
        if action is not None:
            may(None, action)  # an action missing from the table fails at start-up
        self.action = action

    async def __call__(self, event: TelegramObject, staff: Any = None) -> bool:
        return staff is not None and (self.action is None or may(staff.role, self.action))


class InDialog(Filter):
    """The chat is in a dialog step (any FSM state): `~StateFilter(None)` in one call."""

    async def __call__(self, event: TelegramObject, raw_state: str | None = None) -> bool:
        return raw_state is not None


class IsOwner(Filter):
    """Owners are Telegram ids in ADMIN_IDS: ids, never usernames, which can change hands."""

    async def __call__(
        self, event: TelegramObject, settings: Any, event_from_user: Any = None
    ) -> bool:
        return event_from_user is not None and event_from_user.id in settings.admin_ids


class IsOwnerOrStaff(Filter):
    """`or_f(IsOwner(), IsStaff())` in one call: the office and staff routers' common check,
    made for every member's update on its way past them."""

    async def __call__(
        self, event: TelegramObject, settings: Any, event_from_user: Any = None, staff: Any = None
    ) -> bool:
        return staff is not None or (
            event_from_user is not None and event_from_user.id in settings.admin_ids
        )


# aiogram runs a filter that is not a coroutine (a magic `F.…` filter, say) in a worker
# thread, which costs more than the check itself; these async equivalents run inline.


class PrivateChat(Filter):
    async def __call__(self, event: TelegramObject) -> bool:
        chat = getattr(event, "chat", None)
        return chat is not None and chat.type == "private"


class HasText(Filter):
    async def __call__(self, event: TelegramObject) -> bool:
        return isinstance(event, Message) and event.text is not None


class HasPhoto(Filter):
    async def __call__(self, event: TelegramObject) -> bool:
        return isinstance(event, Message) and bool(event.photo)


class HasPayment(Filter):
    """A successful_payment message: Telegram took money for an invoice of ours."""

    async def __call__(self, event: TelegramObject) -> bool:
        return isinstance(event, Message) and event.successful_payment is not None


class PaymentFailed(Filter):
    """An error raised while a successful_payment update was handled (errors router)."""

    async def __call__(self, event: TelegramObject) -> bool:
        update = getattr(event, "update", None)
        message = getattr(update, "message", None)
        return message is not None and message.successful_payment is not None


class HasDocument(Filter):
    async def __call__(self, event: TelegramObject) -> bool:
        return isinstance(event, Message) and event.document is not None


class TextIs(Filter):
    """The message text equals `label` in the reader's language (a lazy translation)."""

    def __init__(self, label: Any) -> None:
        self.label = label

    async def __call__(self, event: TelegramObject) -> bool:
        return isinstance(event, Message) and event.text == str(self.label)


class TextMatches(Filter):
    def __init__(self, pattern: re.Pattern[str]) -> None:
        self.pattern = pattern

    async def __call__(self, event: TelegramObject) -> bool:
        return isinstance(event, Message) and bool(self.pattern.match(event.text or ""))


class IsCardNumber(Filter):
    """A typed card number whose check digit is right (no amount looks like one)."""

    async def __call__(self, event: TelegramObject) -> bool:
        return isinstance(event, Message) and normalize_card_number(event.text or "") is not None


# `/name`, `/name@bot` or `/name args`, as Telegram marks a bot_command at the start.
COMMAND = re.compile(r"/([A-Za-z0-9_]{1,32})(?:@[A-Za-z0-9_]{3,32})?(?=\s|$)")


def command_name(text: str | None) -> str | None:
    """The command a message starts with, lower case without the slash, or None."""
    match = COMMAND.match(text or "")
    return match.group(1).lower() if match else None


class IsCommand(Filter):
    """A command, typed or as a button of the member's menu keyboard (the reader's
    language). Dialog steps that take text refuse these: a command is never an answer."""

    async def __call__(self, event: TelegramObject) -> bool:
        if not isinstance(event, Message) or event.text is None:
            return False
        if command_name(event.text):
            return True
        return any(event.text == str(label) for label in BUTTONS.values())
