"""Router-level filters: who may use a router at all. Use cases check again."""

from __future__ import annotations

from typing import Any

from aiogram.filters import Filter
from aiogram.types import TelegramObject


class IsMember(Filter):
    """Passes for a joined member (the locale middleware loaded `member`)."""

    async def __call__(self, event: TelegramObject, member: Any = None) -> bool:
        return member is not None
