"""One database session per update, closed when the update is handled. Handlers and use
cases share it; only use cases commit."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import TelegramObject
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.middlewares import Handler

log = logging.getLogger(__name__)


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
        session = self.sessions()
        session.info["after_commit"] = self.after_commit
        data["session"] = session
        try:
            return await handler(event, data)
        finally:
            await close(session)


async def close(session: AsyncSession) -> None:
    """End the update's session. What it left open is only ever reads (use cases commit
    their writes before anyone is told of them), so when its connection has died meanwhile
    and the rollback cannot be sent, the server has already ended that transaction: the
    update's outcome stands, whether it was handled or failed, and is not replaced by this
    failure (which would tell a person that nothing was changed after they were answered).
    The connection is not handed out again."""
    try:
        await session.close()
    except (DBAPIError, OSError) as exc:
        log.warning("an update's database connection was lost as it ended: %s", exc)
        await session.invalidate()
