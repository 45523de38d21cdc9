"""Editing a message in place, for button presses.

Telegram refuses an edit that changes nothing ("message is not modified"): a double tap, or
a page that looks the same. The message already shows what we wanted, so that refusal is
success. (Comparing texts first cannot tell: Telegram returns the text without our HTML, so
`&` or `<` in a name always looks "changed".) Telegram also refuses to edit some messages
(too old, a photo has no text to edit, a button forged onto another message): then the new
text is sent as a message of its own, and a keyboard that cannot be removed is left alone."""

from __future__ import annotations

import logging
from typing import Any

from aiogram.exceptions import TelegramBadRequest
from aiogram.types import InlineKeyboardMarkup, Message

log = logging.getLogger(__name__)


def _not_modified(error: TelegramBadRequest) -> bool:
    return "message is not modified" in error.message


async def edit_text(message: Message, text: str, **kwargs: Any) -> None:
    try:
        await message.edit_text(text, **kwargs)
    except TelegramBadRequest as error:
        if _not_modified(error):
            return
        log.info("message %s cannot be edited (%s); sent anew", message.message_id, error)
        await message.answer(text, **kwargs)


async def edit_markup(message: Message, markup: InlineKeyboardMarkup | None) -> None:
    try:
        await message.edit_reply_markup(reply_markup=markup)
    except TelegramBadRequest as error:
        if _not_modified(error):
            return
        if markup is not None:
            raise
        log.info("the keyboard of message %s cannot be removed: %s", message.message_id, error)
