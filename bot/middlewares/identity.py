"""Loads who sent the update, once: their member record (None if they have not joined) and
their active staff record (None for everyone else). A revoked cashier loses every staff
action at once, whatever buttons they still have."""

from __future__ import annotations

from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import TelegramObject, User

from bot.middlewares import Handler
from db.queries.identity import identify


class IdentityMiddleware(BaseMiddleware):
    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        user: User | None = data.get("event_from_user")
        data["staff"] = None
        if user is not None and "session" in data:
            data["member"], data["staff"] = await identify(data["session"], user.id)
        return await handler(event, data)
