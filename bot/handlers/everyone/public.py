"""What anyone may read, member or not."""

from __future__ import annotations

from datetime import UTC, datetime

from aiogram import Router
from aiogram.filters import Command
from aiogram.types import Message

from bot import roles
from bot.config import Settings
from bot.filters import PrivateChat, TextIs
from bot.views import keyboards, texts
from db.rules.program import Program
from db.usecases.members import MemberInfo
from db.usecases.staff import StaffInfo


async def partners(message: Message, program: Program) -> None:
    today = datetime.now(UTC).astimezone(program.program.zone).date()  # offers end locally
    await message.answer(texts.partners(program, today))


async def help_command(
    message: Message,
    settings: Settings,
    program: Program,
    member: MemberInfo | None = None,
    staff: StaffInfo | None = None,
) -> None:
    """Each of the person's roles with its commands (bot/roles.py), in their language."""
    owner = message.from_user is not None and message.from_user.id in settings.admin_ids
    who = roles.roles_of(member=member, staff=staff, owner=owner)
    partner = staff.partner_name if staff else None
    text = roles.help_text(who, partner, roles.till_club(program))
    await message.answer(text, reply_markup=keyboards.main_menu() if member else None)


def build() -> Router:
    router = Router(name="public")
    router.message.filter(PrivateChat())
    router.message.register(partners, Command("partners"))
    router.message.register(partners, TextIs(keyboards.PARTNERS))
    router.message.register(help_command, Command("help"))
    router.message.register(help_command, TextIs(keyboards.HELP))
    return router
