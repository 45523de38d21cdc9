"""Loads who sent the update, once: their member record (None if they have not joined), the
figures /balance shows of their wallet, and their active staff record (None for everyone
else). A revoked cashier loses every staff action at once, whatever buttons they still have."""

from __future__ import annotations

from functools import partial
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import TelegramObject, Update, User
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.middlewares import Handler
from bot.retry import retry_database
from db.queries.identity import SenderBatch


class IdentityMiddleware(BaseMiddleware):
    """Reads outside the update's session, with the updates handled alongside
    (db.queries.identity): an update that only reads starts no transaction."""

    def __init__(self, engine: AsyncEngine, timezone: str = "UTC") -> None:
        # The program's time zone: /balance counts the points expiring on a local day.
        self.senders = SenderBatch(engine, timezone)

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        user: User | None = data.get("event_from_user")
        data["staff"] = None
        if user is not None:
            identify = partial(self.senders.identify, user.id)
            if _is_payment(event):  # Telegram sends it once: a passing failure is waited out
                sender = await retry_database(identify, f"looking up payer {user.id}")
            else:
                sender = await identify()
            data["member"], data["staff"] = sender.member, sender.staff
            data["wallet_figures"] = sender.wallet
        return await handler(event, data)


def _is_payment(event: TelegramObject) -> bool:
    return (
        isinstance(event, Update)
        and event.message is not None
        and event.message.successful_payment is not None
    )
