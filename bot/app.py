"""Building and running the bot. `build_dispatcher` is the one factory that `__main__` and
the end-to-end tests share."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import signal
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from aiogram.exceptions import (
    TelegramNetworkError,
    TelegramUnauthorizedError,
)
from aiogram.fsm.storage.base import BaseStorage
from aiogram.fsm.storage.memory import MemoryStorage
from aiogram.fsm.storage.redis import RedisStorage
from aiogram.utils.i18n import I18n
from redis.asyncio import Redis

from bot.api.app import build_api
from bot.api.context import ApiContext
from bot.api.ratelimit import LocalBuckets, RateLimiter, RedisBuckets
from bot.config import Settings
from bot.handlers import get_routers
from bot.i18n import build_i18n
from bot.metrics import MetricsMiddleware
from bot.middlewares.database import DatabaseMiddleware
from bot.middlewares.identity import IdentityMiddleware
from bot.middlewares.locale import MemberLocaleMiddleware
from bot.middlewares.sanitize import RefuseNul
from bot.middlewares.throttle import ThrottleMiddleware
from bot.retry import LateAnswerMiddleware, RetryMiddleware
from bot.runtime import Runtime, StartupError, open_runtime
from bot.views.menus import set_default_menu, set_owner_menus
from bot.workers.delivery import DeliveryWorker, TokenBucket
from bot.workers.jobs import start_scheduler
from bot.workers.notify import Notifier
from bot.workers.outbox import NoticeWorker
from bot.workers.web import build_web_app, start_web
from db.rules.tokens import derive_secret

log = logging.getLogger(__name__)


def build_bot(settings: Settings) -> Bot:
    if settings.bot_token is None:
        raise StartupError("BOT_TOKEN is not set: put the token @BotFather gave you in it.")
    session = AiohttpSession(api=TelegramAPIServer.from_base(settings.telegram_api_base))
    session.middleware(RetryMiddleware())
    session.middleware(LateAnswerMiddleware())
    return Bot(
        settings.bot_token.get_secret_value(),
        session=session,
        default=DefaultBotProperties(parse_mode=ParseMode.HTML),
    )


class Clock:
    """What handlers that show days and dates take as "now" (the dispatcher's `clock`):
    the time, unless a test fixed it (`fixed`)."""

    def __init__(self) -> None:
        self.fixed: datetime | None = None

    def __call__(self) -> datetime:
        return self.fixed or datetime.now(UTC)


def signing_secret(settings: Settings) -> bytes:
    assert settings.bot_token is not None
    extra = settings.signing_secret.get_secret_value() if settings.signing_secret else None
    return derive_secret(settings.bot_token.get_secret_value(), extra)


def build_dispatcher(
    runtime: Runtime,
    bot: Bot,
    *,
    storage: BaseStorage | None = None,
    i18n: I18n | None = None,
    bucket: TokenBucket | None = None,
) -> Dispatcher:
    """The dispatcher with its middlewares, routers and notice worker. `bucket` is the Bot
    API send rate shared with the campaign worker (transactional messages go first)."""
    i18n = i18n or build_i18n()
    outbox = NoticeWorker(bot, runtime.sessions, i18n, runtime.program, bucket=bucket)
    dp = Dispatcher(
        storage=storage or MemoryStorage(),
        settings=runtime.settings,
        program=runtime.program,
        sessions=runtime.sessions,
        secret=signing_secret(runtime.settings),
        notifier=Notifier(bot, i18n, runtime.sessions, runtime.program),
        outbox=outbox,
        # What handlers that show days take as "now" (tests set a fixed clock).
        clock=Clock(),
    )
    # The worker that delivers what postings owe runs whenever the dispatcher does.
    dp.startup.register(outbox.start)
    dp.shutdown.register(outbox.stop)

    # Owners see their commands in their own chat's menu (staff get theirs when they join).
    async def owner_menus(bot: Bot) -> None:
        await set_owner_menus(bot, i18n, runtime.settings.admin_ids)

    dp.startup.register(owner_menus)
    dp.update.outer_middleware(MetricsMiddleware())
    # Before the database: a flooding user's excess updates cost no connection.
    settings = runtime.settings
    dp.update.outer_middleware(
        ThrottleMiddleware(i18n, rate=settings.flood_rate, burst=settings.flood_burst)
    )
    dp.update.outer_middleware(DatabaseMiddleware(runtime.sessions, after_commit=outbox.kick))
    zone = runtime.program.program.timezone  # /balance's expiring points: a local day's
    dp.update.outer_middleware(IdentityMiddleware(runtime.engine, zone))
    MemberLocaleMiddleware(i18n).setup(dp)
    dp.message.outer_middleware(RefuseNul())
    dp.include_routers(*get_routers())
    dp["i18n_core"] = i18n
    return dp


async def register_commands(bot: Bot, i18n: I18n) -> None:
    """The members' command menu in each language (bot/views/menus.py)."""
    await set_default_menu(bot, i18n)


def api_limiter(settings: Settings, redis: Redis | None) -> RateLimiter:
    """Each API key's rate: in Redis when there is one (every instance counts it), else in
    this process."""
    if redis is not None:
        return RedisBuckets(redis, settings.api_rate, settings.api_burst)
    return LocalBuckets(settings.api_rate, settings.api_burst)


def build_partner_api(
    runtime: Runtime, limiter: RateLimiter, after_commit: Callable[[], None] | None = None
) -> Any:
    """The partner API (bot/api) on the runtime's program and database. `after_commit`:
    the notice worker's wake-up, so what a sale owes (the member's news, a confirmation
    request) is sent at once."""
    return build_api(
        ApiContext(
            sessions=runtime.sessions,
            program=runtime.program,
            secret=signing_secret(runtime.settings),
            limiter=limiter,
            after_commit=[after_commit] if after_commit else [],
        )
    )


def warn_without_owners(settings: Settings) -> None:
    if not settings.admin_ids:
        log.warning(
            "ADMIN_IDS is empty: nobody can hire staff or run the program. Put your Telegram "
            "id in it (send /start to @userinfobot to learn it) and restart."
        )


def webhook_secret(settings: Settings) -> str:
    """WEBHOOK_SECRET, or one derived from the token: Telegram sends it back in a header on
    every webhook call, so requests without it are not Telegram's."""
    if settings.webhook_secret:
        return settings.webhook_secret.get_secret_value()
    assert settings.bot_token is not None
    digest = hmac.new(
        settings.bot_token.get_secret_value().encode(), b"webhook-secret", hashlib.sha256
    )
    return digest.hexdigest()


async def _until_stopped() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    # Bounded: the database may already be gone, and shutting down must not hang on it.
    await asyncio.wait({task}, timeout=5)


async def run(settings: Settings) -> None:
    bot = build_bot(settings)
    runtime = await open_runtime(settings)
    storage: BaseStorage | None = None
    try:
        try:
            me = await bot.get_me()
        except TelegramUnauthorizedError:
            raise StartupError("Telegram refused BOT_TOKEN: check it with @BotFather.") from None
        except TelegramNetworkError as exc:
            # aiohttp's message may quote the request's path, which holds the token.
            why = str(exc).replace(bot.token, "<BOT_TOKEN>")
            raise StartupError(
                f"cannot reach the Bot API at {settings.telegram_api_base}: {why}"
            ) from None
        log.info("running as @%s", me.username)
        warn_without_owners(settings)
        storage = RedisStorage.from_url(settings.redis_url) if settings.redis_url else None
        limiter = api_limiter(settings, storage.redis if storage is not None else None)
        bucket = TokenBucket(settings.delivery_rate)
        dp = build_dispatcher(runtime, bot, storage=storage, bucket=bucket)
        secret = webhook_secret(settings)
        token = settings.metrics_token
        web_app = build_web_app(
            runtime.engine,
            dp=dp,
            bot=bot,
            webhook_url=settings.webhook_url,
            webhook_secret=secret,
            metrics_token=token.get_secret_value() if token else None,
            redis=storage.redis if isinstance(storage, RedisStorage) else None,
            api=build_partner_api(runtime, limiter, after_commit=dp["outbox"].kick),
        )
        # Before any background work starts, so a busy port stops start-up cleanly.
        runner = await start_web(web_app, settings.http_host, settings.http_port)
        try:
            await register_commands(bot, dp["i18n_core"])
            scheduler = start_scheduler(runtime, dp["notifier"])
            delivery = asyncio.create_task(
                DeliveryWorker(
                    bot,
                    runtime.engine,
                    runtime.sessions,
                    dp["i18n_core"],
                    rate=settings.delivery_rate,
                    bucket=bucket,
                    program=runtime.program,
                ).run_forever()
            )
            try:
                if settings.webhook_url:
                    await bot.set_webhook(
                        settings.webhook_url,
                        secret_token=secret,
                        allowed_updates=dp.resolve_used_update_types(),
                    )
                    log.info("serving the webhook at %s", settings.webhook_url)
                    await dp.emit_startup(bot=bot)
                    try:
                        await _until_stopped()
                    finally:
                        await dp.emit_shutdown(bot=bot)
                else:
                    await bot.delete_webhook(drop_pending_updates=False)
                    await dp.start_polling(
                        bot, handle_signals=True, allowed_updates=dp.resolve_used_update_types()
                    )
            finally:
                await _stop(delivery)
                scheduler.shutdown(wait=False)
        finally:
            await runner.cleanup()
    finally:
        if storage is not None:
            await storage.close()
        await bot.session.close()
        await runtime.close()
