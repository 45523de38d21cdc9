"""The member's side: joining and the balance."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command, CommandStart
from aiogram.types import Message
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from bot.i18n import pick_language
from db.members import MemberInfo, register_member
from db.program import Program

router = Router(name="member")
router.message.filter(F.chat.type == "private")


@router.message(CommandStart())
async def start(message: Message, session: AsyncSession, program: Program) -> None:
    assert message.from_user is not None
    member = await register_member(
        session,
        program,
        telegram_id=message.from_user.id,
        first_name=message.from_user.first_name,
        language=pick_language(message.from_user.language_code),
    )
    await message.answer(
        _("Welcome to {program}, {name}! You have {points} points.").format(
            program=program.program.name, name=member.first_name, points=member.balance
        )
    )


@router.message(Command("balance"))
async def balance(message: Message, member: MemberInfo | None = None) -> None:
    if member is None:
        await message.answer(_("You are not a member yet: send /start to join."))
        return
    await message.answer(_("You have {points} points.").format(points=member.balance))
