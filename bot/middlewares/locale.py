"""The reply language: the member's chosen one; before joining, the one picked on the join
screen; else Telegram's."""

from __future__ import annotations

from typing import Any

from aiogram.fsm.context import FSMContext
from aiogram.types import ErrorEvent, TelegramObject, User
from aiogram.utils.i18n import I18nMiddleware

from bot.i18n import pick_language
from db.members import find_by_telegram


class MemberLocaleMiddleware(I18nMiddleware):
    async def get_locale(self, event: TelegramObject, data: dict[str, Any]) -> str:
        user: User | None = data.get("event_from_user")
        if user is None:
            return self.i18n.default_locale
        if isinstance(event, ErrorEvent):
            # Reporting an error (perhaps the database's): use what the update pass found,
            # and touch nothing that might fail again.
            member = data.get("member")
            return str(member.language) if member else pick_language(user.language_code)
        session = data.get("session")
        if "member" in data:  # the identity middleware looked it up already
            member = data["member"]
            if member is not None:
                return str(member.language)
        elif session is not None:
            member = await find_by_telegram(session, user.id)
            await session.rollback()  # end the read: the handler's use case starts afresh
            data["member"] = member
            if member is not None:
                return str(member.language)
        state: FSMContext | None = data.get("state")
        if state is not None and (chosen := (await state.get_data()).get("language")):
            return str(chosen)
        return pick_language(user.language_code)
