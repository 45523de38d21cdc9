"""Editing a message in place. Telegram refuses an edit that changes nothing ("message is
not modified"): a double tap, or a page that looks the same. The message already shows what
we wanted, so that refusal is success. Comparing texts first cannot tell: Telegram returns
the text without our HTML, so `&` or `<` in a name always looks "changed"."""

from __future__ import annotations

from typing import Any

from aiogram.exceptions import TelegramBadRequest
from aiogram.types import InlineKeyboardMarkup, Message


def _not_modified(error: TelegramBadRequest) -> bool:
    return "message is not modified" in error.message


async def edit_text(message: Message, text: str, **kwargs: Any) -> None:
    try:
        await message.edit_text(text, **kwargs)
    except TelegramBadRequest as error:
        if not _not_modified(error):
            raise


async def edit_markup(message: Message, markup: InlineKeyboardMarkup | None) -> None:
    try:
        await message.edit_reply_markup(reply_markup=markup)
    except TelegramBadRequest as error:
        if not _not_modified(error):
            raise
