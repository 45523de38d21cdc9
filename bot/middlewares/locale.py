"""The reply language: the member's chosen one if they joined, else Telegram's."""

from __future__ import annotations

from typing import Any

from aiogram.types import TelegramObject, User
from aiogram.utils.i18n import I18nMiddleware

from bot.i18n import pick_language
from db.members import find_by_telegram


class MemberLocaleMiddleware(I18nMiddleware):
    async def get_locale(self, event: TelegramObject, data: dict[str, Any]) -> str:
        user: User | None = data.get("event_from_user")
        if user is None:
            return self.i18n.default_locale
        session = data.get("session")
        if session is not None:
            member = await find_by_telegram(session, user.id)
            if member is not None and member.telegram_id is not None:
                data["member"] = member
                return member.language
        return pick_language(user.language_code)
