"""Loads the sender's active staff record (None for everyone else) for every update, so a
revoked cashier loses every staff action at once, whatever buttons they still have."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import TelegramObject, User

from db.staff import active_staff


class StaffMiddleware(BaseMiddleware):
    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        user: User | None = data.get("event_from_user")
        data["staff"] = None
        if user is not None and "session" in data:
            data["staff"] = await active_staff(data["session"], user.id)
            await data["session"].rollback()
        return await handler(event, data)
