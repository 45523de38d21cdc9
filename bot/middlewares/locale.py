"""The reply language: the member's chosen one; before joining, the one picked on the join
screen; else Telegram's."""

from __future__ import annotations

from typing import Any

from aiogram.fsm.context import FSMContext
from aiogram.types import TelegramObject, User
from aiogram.utils.i18n import I18nMiddleware

from bot.i18n import pick_language


class MemberLocaleMiddleware(I18nMiddleware):
    async def get_locale(self, event: TelegramObject, data: dict[str, Any]) -> str:
        user: User | None = data.get("event_from_user")
        if user is None:
            return self.i18n.default_locale
        # The identity middleware loaded `member` for the update (also reused when an error
        # is reported, so reporting a database error needs no database).
        member = data.get("member")
        if member is not None:
            return str(member.language)
        state: FSMContext | None = data.get("state")
        if state is not None and (chosen := (await state.get_data()).get("language")):
            return str(chosen)
        return pick_language(user.language_code)
