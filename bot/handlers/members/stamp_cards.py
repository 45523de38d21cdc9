"""/stamps: the member's stamp cards (every card of the program, at 0 too)."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command
from aiogram.types import Message
from sqlalchemy.ext.asyncio import AsyncSession

from bot.filters import IsMember, PrivateChat, TextIs
from bot.views import keyboards, stamps
from db.queries.stamps import card_progress
from db.rules.program import Program
from db.usecases.members import MemberInfo


async def show_stamps(
    message: Message, session: AsyncSession, member: MemberInfo, program: Program
) -> None:
    progress = await card_progress(session, member.id) if program.stamp_cards else {}
    await message.answer(stamps.screen(program, progress))


def build() -> Router:
    router = Router(name="stamp_cards")
    router.message.filter(PrivateChat(), IsMember())
    router.message.register(show_stamps, Command("stamps"))
    router.message.register(show_stamps, TextIs(keyboards.STAMPS))
    return router
