"""Whatever no other router took: a short, helpful answer instead of silence."""

from __future__ import annotations

from aiogram import Router
from aiogram.types import Message
from aiogram.utils.i18n import gettext as _

router = Router(name="fallback")


@router.message()
async def anything_else(message: Message) -> None:
    await message.answer(_("I did not understand that. Send /help to see what I can do."))
