"""What anyone may read, member or not."""

from __future__ import annotations

from datetime import UTC, datetime

from aiogram import F, Router
from aiogram.filters import Command
from aiogram.types import Message
from aiogram.utils.i18n import gettext as _

from bot import keyboards, texts
from db.members import MemberInfo
from db.program import Program

router = Router(name="public")
router.message.filter(F.chat.type == "private")


@router.message(Command("partners"))
@router.message(F.text == keyboards.PARTNERS)
async def partners(message: Message, program: Program) -> None:
    await message.answer(texts.partners(program, datetime.now(UTC).date()))


@router.message(Command("help"))
@router.message(F.text == keyboards.HELP)
async def help_command(message: Message, member: MemberInfo | None = None) -> None:
    text = texts.help_text()
    if member is None:
        text += "\n\n" + _("You are not a member yet: send /start to join.")
    await message.answer(text, reply_markup=keyboards.main_menu() if member else None)
