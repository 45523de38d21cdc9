"""One database session per update, closed when the update is handled. Handlers and use
cases share it; only use cases commit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import TelegramObject
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.middlewares import Handler


class DatabaseMiddleware(BaseMiddleware):
    """`after_commit` runs after each commit that wrote something (it wakes the notice
    worker); `session.info["committed"]` tells the error reporter that work was saved."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        after_commit: Callable[[], None] | None = None,
    ) -> None:
        self.sessions = sessions
        self.after_commit = [after_commit] if after_commit else []

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        async with self.sessions() as session:
            session.info["after_commit"] = self.after_commit
            data["session"] = session
            return await handler(event, data)
