"""Whatever no other router took: a short, helpful answer instead of silence."""

from __future__ import annotations

from aiogram import Router
from aiogram.types import CallbackQuery, Message
from aiogram.utils.i18n import gettext as _

from bot.filters import PrivateChat
from db.members import MemberInfo


async def anything_else(message: Message, member: MemberInfo | None = None) -> None:
    if member is None:
        await message.answer(_("You are not a member yet: send /start to join."))
    elif message.text and message.text.startswith("/"):
        await message.answer(_("I do not know that command. Send /help to see what I can do."))
    else:
        await message.answer(_("I did not understand that. Send /help to see what I can do."))


async def stale_button(query: CallbackQuery) -> None:
    await query.answer(_("This button is no longer active."))


def build() -> Router:
    router = Router(name="fallback")
    router.message.register(anything_else, PrivateChat())
    router.callback_query.register(stale_button)
    return router
