"""Building and running the bot. `build_dispatcher` is the one factory that `__main__` and
the end-to-end tests share."""

from __future__ import annotations

import logging

from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from aiogram.exceptions import TelegramUnauthorizedError

from bot.config import Settings
from bot.handlers import get_routers
from bot.i18n import build_i18n
from bot.middlewares.database import DatabaseMiddleware
from bot.middlewares.locale import MemberLocaleMiddleware
from bot.runtime import Runtime, StartupError, open_runtime

log = logging.getLogger(__name__)


def build_bot(settings: Settings) -> Bot:
    if settings.bot_token is None:
        raise StartupError("BOT_TOKEN is not set: put the token @BotFather gave you in it.")
    session = AiohttpSession(api=TelegramAPIServer.from_base(settings.telegram_api_base))
    return Bot(
        settings.bot_token.get_secret_value(),
        session=session,
        default=DefaultBotProperties(parse_mode=ParseMode.HTML),
    )


def build_dispatcher(runtime: Runtime) -> Dispatcher:
    dp = Dispatcher(
        settings=runtime.settings,
        program=runtime.program,
        sessions=runtime.sessions,
    )
    dp.update.outer_middleware(DatabaseMiddleware(runtime.sessions))
    MemberLocaleMiddleware(build_i18n()).setup(dp)
    dp.include_routers(*get_routers())
    return dp


async def run(settings: Settings) -> None:
    bot = build_bot(settings)
    runtime = await open_runtime(settings)
    try:
        try:
            me = await bot.get_me()
        except TelegramUnauthorizedError:
            raise StartupError("Telegram refused BOT_TOKEN: check it with @BotFather.") from None
        log.info("running as @%s", me.username)
        dp = build_dispatcher(runtime)
        await bot.delete_webhook(drop_pending_updates=False)
        await dp.start_polling(bot, handle_signals=True)
    finally:
        await bot.session.close()
        await runtime.close()
