"""The real bot (build_dispatcher + long polling over HTTP) against the fake Bot API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiogram import Bot, Dispatcher
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.app import build_bot, build_dispatcher, signing_secret
from bot.config import Settings
from bot.runtime import Runtime
from bot.workers.notify import Notifier
from db.rules.program import Program
from tests.fakegram import FakeTelegramServer, UserClient

BOT_USERNAME = "city_bonus_bot"
TOKEN = "4242:TEST-token"
OWNER_ID = 1


@dataclass
class BotHarness:
    server: FakeTelegramServer
    bot: Bot
    dp: Dispatcher
    runtime: Runtime
    _next_user: int = field(default=1000)
    _owner: UserClient | None = None

    @property
    def notifier(self) -> Notifier:
        return self.dp["notifier"]  # type: ignore[no-any-return]

    @property
    def secret(self) -> bytes:
        return signing_secret(self.runtime.settings)

    def owner(self) -> UserClient:
        # One client for the owner, so "the next message" means the same thing every time.
        if self._owner is None:
            self._owner = UserClient(self.server, OWNER_ID, first_name="Owner")
        return self._owner

    def user(self, first_name: str = "Ann", language_code: str = "en") -> UserClient:
        self._next_user += 1
        return UserClient(
            self.server, self._next_user, first_name=first_name, language_code=language_code
        )


@asynccontextmanager
async def running_bot(
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    program: Program,
    **settings: object,
) -> AsyncIterator[BotHarness]:
    async with FakeTelegramServer(bot_username=BOT_USERNAME) as server:
        config = Settings(
            bot_token=TOKEN,  # type: ignore[arg-type]
            telegram_api_base=server.base_url,
            **settings,  # type: ignore[arg-type]
        )
        runtime = Runtime(config, program, engine, sessions)
        bot = build_bot(config)
        dp = build_dispatcher(runtime, bot)
        polling = asyncio.create_task(
            dp.start_polling(
                bot,
                handle_signals=False,
                polling_timeout=1,
                allowed_updates=dp.resolve_used_update_types(),
            )
        )
        try:
            yield BotHarness(server, bot, dp, runtime)
        finally:
            await dp.stop_polling()
            await asyncio.wait_for(polling, 10)
            await bot.session.close()
