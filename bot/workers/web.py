"""The bot's HTTP side: the Telegram webhook (when WEBHOOK_URL is set), /healthz, /metrics
and the partner API under /api/v1 (bot/api, an ASGI app mounted on this aiohttp server), on
HTTP_PORT."""

from __future__ import annotations

import asyncio
import errno
import hmac
import logging
from urllib.parse import urlsplit

from aiogram import Bot, Dispatcher
from aiogram.webhook.aiohttp_server import SimpleRequestHandler
from aiohttp import web
from aiohttp_asgi import ASGIResource
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import ASGIApp

from bot.runtime import StartupError

log = logging.getLogger(__name__)
API_ROOT = "/api/v1"

# Below the image's HEALTHCHECK timeout (5 s), so a server that never answers is reported as
# unavailable rather than leaving the check to time out.
CHECK_TIMEOUT = 2.0


def build_web_app(
    engine: AsyncEngine,
    *,
    dp: Dispatcher | None = None,
    bot: Bot | None = None,
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
    metrics_token: str | None = None,
    redis: Redis | None = None,
    api: ASGIApp | None = None,
) -> web.Application:
    """`redis`: the FSM storage's client when REDIS_URL is set; /healthz then checks it too.
    `api`: the partner API (bot/api/app.py build_api), served under API_ROOT."""
    app = web.Application()

    async def database_answers() -> bool:
        try:
            async with asyncio.timeout(CHECK_TIMEOUT), engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except (OSError, DBAPIError, TimeoutError) as exc:
            log.warning("health check: the database does not answer: %s", str(exc) or "timed out")
            return False
        return True

    async def redis_answers(client: Redis) -> bool:
        try:
            async with asyncio.timeout(CHECK_TIMEOUT):
                await client.ping()
        except (OSError, RedisError, TimeoutError) as exc:
            log.warning("health check: Redis does not answer: %s", str(exc) or "timed out")
            return False
        return True

    async def healthz(_request: web.Request) -> web.Response:
        # Anyone may ask: the answer names what does not answer, never why (the errors name
        # hosts and databases); the reason goes to the log.
        failed = [] if await database_answers() else ["database"]
        if redis is not None and not await redis_answers(redis):
            failed.append("redis")
        if failed:
            return web.json_response({"status": "unavailable", "failed": failed}, status=503)
        return web.json_response({"status": "ok"})

    async def metrics(request: web.Request) -> web.Response:
        if metrics_token is not None:
            given = request.headers.get("Authorization", "").encode()
            if not hmac.compare_digest(given, f"Bearer {metrics_token}".encode()):
                return web.Response(
                    status=401, text="401: Unauthorized", headers={"WWW-Authenticate": "Bearer"}
                )
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    if webhook_url and dp is not None and bot is not None:
        # Answer Telegram only after the update is handled: if this instance dies mid-way,
        # Telegram delivers the update again (postings are idempotent, so it is safe).
        SimpleRequestHandler(
            dispatcher=dp, bot=bot, secret_token=webhook_secret, handle_in_background=False
        ).register(app, path=urlsplit(webhook_url).path or "/")
    if api is not None:
        # One server, one port, one event loop: the API calls the same use cases on the
        # same engine as the bot's handlers, with no second process to run.
        app.router.register_resource(ASGIResource(api, root_path=API_ROOT))  # type: ignore[arg-type]
    return app


async def start_web(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        await runner.cleanup()
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(
                f"HTTP_PORT {port} on {host} is already in use: stop what holds it or set "
                "HTTP_PORT to a free port"
            ) from None
        raise StartupError(
            f"cannot listen on {host}:{port} (HTTP_HOST, HTTP_PORT): {exc.strerror or exc}"
        ) from None
    log.info("HTTP on %s:%s (/healthz, /metrics, %s)", host, port, API_ROOT)
    return runner
