"""Telegram's own events: a member blocking or unblocking the bot."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import KICKED, MEMBER, ChatMemberUpdatedFilter
from aiogram.types import ChatMemberUpdated
from sqlalchemy.ext.asyncio import AsyncSession

from db.queries.wallet import set_reachable


async def blocked(event: ChatMemberUpdated, session: AsyncSession) -> None:
    await set_reachable(session, event.from_user.id, False)


async def unblocked(event: ChatMemberUpdated, session: AsyncSession) -> None:
    await set_reachable(session, event.from_user.id, True)


def build() -> Router:
    router = Router(name="system")
    router.my_chat_member.register(blocked, ChatMemberUpdatedFilter(member_status_changed=KICKED))
    router.my_chat_member.register(
        unblocked, ChatMemberUpdatedFilter(member_status_changed=MEMBER)
    )
    return router
