"""Text PostgreSQL cannot store: a NUL character is refused in any text column (and in
JSON), so a message carrying one would fail deep in a use case. Refuse it at the door."""

from __future__ import annotations

from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import Message, TelegramObject
from aiogram.utils.i18n import gettext as _

from bot.middlewares import Handler


class RefuseNul(BaseMiddleware):
    """On messages, after the locale middleware (the refusal is in the reader's language)."""

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        if isinstance(event, Message) and "\x00" in (event.text or event.caption or ""):
            await event.answer(
                _("That message contains a character I cannot accept. Nothing was changed.")
            )
            return None
        return await handler(event, data)
