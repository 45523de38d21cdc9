"""What anyone may read, member or not."""

from __future__ import annotations

from datetime import UTC, datetime

from aiogram import Router
from aiogram.filters import Command
from aiogram.types import Message
from aiogram.utils.i18n import gettext as _

from bot import keyboards, texts
from bot.filters import PrivateChat, TextIs
from db.members import MemberInfo
from db.program import Program


async def partners(message: Message, program: Program) -> None:
    await message.answer(texts.partners(program, datetime.now(UTC).date()))


async def help_command(message: Message, member: MemberInfo | None = None) -> None:
    text = texts.help_text()
    if member is None:
        text += "\n\n" + _("You are not a member yet: send /start to join.")
    await message.answer(text, reply_markup=keyboards.main_menu() if member else None)


def build() -> Router:
    router = Router(name="public")
    router.message.filter(PrivateChat())
    router.message.register(partners, Command("partners"))
    router.message.register(partners, TextIs(keyboards.PARTNERS))
    router.message.register(help_command, Command("help"))
    router.message.register(help_command, TextIs(keyboards.HELP))
    return router
