"""/offers: the promotions open to the member now or to come, and the partners' offers."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from aiogram import Router
from aiogram.filters import Command
from aiogram.types import Message
from sqlalchemy.ext.asyncio import AsyncSession

from bot.filters import IsMember, PrivateChat, TextIs
from bot.views import keyboards
from bot.views import offers as views
from db.queries.offers import member_facts
from db.rules.offers import open_offers
from db.rules.program import Program
from db.usecases.members import MemberInfo


async def offers(
    message: Message,
    session: AsyncSession,
    member: MemberInfo,
    program: Program,
    clock: Callable[[], datetime],
) -> None:
    now = clock()
    facts = await member_facts(session, member.id)
    today = now.astimezone(program.program.zone).date()
    await message.answer(views.screen(program, open_offers(program, facts, now), today))


def build() -> Router:
    router = Router(name="offers_list")
    router.message.filter(PrivateChat(), IsMember())
    router.message.register(offers, Command("offers"))
    router.message.register(offers, TextIs(keyboards.OFFERS))
    return router
