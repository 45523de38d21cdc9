"""Telegram's own events: a member blocking or unblocking the bot."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import KICKED, MEMBER, ChatMemberUpdatedFilter
from aiogram.types import ChatMemberUpdated
from sqlalchemy.ext.asyncio import AsyncSession

from db.wallet import set_reachable

router = Router(name="system")


@router.my_chat_member(ChatMemberUpdatedFilter(member_status_changed=KICKED))
async def blocked(event: ChatMemberUpdated, session: AsyncSession) -> None:
    await set_reachable(session, event.from_user.id, False)


@router.my_chat_member(ChatMemberUpdatedFilter(member_status_changed=MEMBER))
async def unblocked(event: ChatMemberUpdated, session: AsyncSession) -> None:
    await set_reachable(session, event.from_user.id, True)
