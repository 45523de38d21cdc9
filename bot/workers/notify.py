"""Messages the bot sends on its own that no posting owes: reminders of points about to expire.
(What a posting owes goes through the outbox: db/usecases/outbox.py, bot/workers/outbox.py.)

Each is written in the member's language. A member who blocked the bot is marked
unreachable and not tried again; a send that fails for any other reason is logged, never
raised into the posting that triggered it (the points are already safely stored)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError, TelegramForbiddenError, TelegramRetryAfter
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.metrics import DELIVERIES
from bot.views import formatting as fmt
from db.queries.wallet import set_reachable
from db.rules.program import Program
from db.usecases.members import contact
from db.usecases.reminders import Reminder

log = logging.getLogger(__name__)


class Notifier:
    def __init__(
        self,
        bot: Bot,
        i18n: I18n,
        sessions: async_sessionmaker[AsyncSession],
        program: Program,
    ) -> None:
        self.bot = bot
        self.i18n = i18n
        self.sessions = sessions
        self.program = program

    async def to_member(self, member_id: int, compose: Callable[[], str]) -> bool:
        async with self.sessions() as session:
            who = await contact(session, member_id)
        if who is None:
            return False
        return await self.send(who.telegram_id, who.language, compose)

    async def send(self, telegram_id: int, language: str, compose: Callable[[], str]) -> bool:
        with self.i18n.context(), self.i18n.use_locale(language):
            text = compose()
        for _attempt in range(3):
            try:
                await self.bot.send_message(telegram_id, text)
                DELIVERIES.labels("sent").inc()
                return True
            except TelegramRetryAfter as exc:
                await asyncio.sleep(exc.retry_after)
            except TelegramForbiddenError:
                DELIVERIES.labels("blocked").inc()
                async with self.sessions() as session:
                    await set_reachable(session, telegram_id, False)
                return False
            except TelegramAPIError:
                log.warning("could not notify %s", telegram_id, exc_info=True)
                DELIVERIES.labels("failed").inc()
                return False
        return False

    async def expiring(self, reminder: Reminder) -> bool:
        day = reminder.expires_at.astimezone(self.program.program.zone)  # the member's day
        return await self.send(
            reminder.telegram_id,
            reminder.language,
            lambda: _(
                "⏳ {points} will expire on {date}. Spend them at any partner before then: "
                "/partners"
            ).format(points=fmt.points(reminder.points), date=fmt.day(day)),
        )
