"""Router-level filters: who may use a router at all. Use cases check again."""

from __future__ import annotations

from typing import Any

from aiogram.filters import Filter
from aiogram.types import TelegramObject


class IsMember(Filter):
    """Passes for a joined member (the locale middleware loaded `member`)."""

    async def __call__(self, event: TelegramObject, member: Any = None) -> bool:
        return member is not None


class IsStaff(Filter):
    """Passes for active staff of a partner in one of `roles` (any role if none given)."""

    def __init__(self, *roles: str) -> None:
        self.roles = roles

    async def __call__(self, event: TelegramObject, staff: Any = None) -> bool:
        return staff is not None and (not self.roles or staff.role in self.roles)


class IsOwner(Filter):
    """Owners are Telegram ids in ADMIN_IDS: ids, never usernames, which can change hands."""

    async def __call__(
        self, event: TelegramObject, settings: Any, event_from_user: Any = None
    ) -> bool:
        return event_from_user is not None and event_from_user.id in settings.admin_ids
