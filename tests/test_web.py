"""Webhook mode, /healthz and /metrics."""

from __future__ import annotations

import logging

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import ValidationError
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.config import Settings
from bot.workers.web import build_web_app
from db.engine import create_engine
from db.usecases.members import find_by_telegram
from tests.botharness import BotHarness
from tests.fakegram import command_entities

Sessions = async_sessionmaker[AsyncSession]
SECRET = "s3cret-Token_1"


def start_update(update_id: int, user_id: int) -> dict[str, object]:
    user = {"id": user_id, "is_bot": False, "first_name": "Web", "language_code": "en"}
    return {
        "update_id": update_id,
        "message": {
            "message_id": update_id,
            "date": 1_700_000_000,
            "chat": {"id": user_id, "type": "private", "first_name": "Web"},
            "from": user,
            "text": "/start",
            "entities": command_entities("/start"),
        },
    }


async def test_webhook_refuses_requests_without_the_secret(
    harness: BotHarness, sessions: Sessions
) -> None:
    app = build_web_app(
        harness.runtime.engine,
        dp=harness.dp,
        bot=harness.bot,
        webhook_url="https://bot.example.org/tg/hook",
        webhook_secret=SECRET,
    )
    async with TestClient(TestServer(app)) as client:
        for headers in ({}, {"X-Telegram-Bot-Api-Secret-Token": "wrong"}):
            response = await client.post("/tg/hook", json=start_update(900, 77), headers=headers)
            assert response.status == 401
        assert harness.server.calls("sendMessage") == []
        ok = await client.post(
            "/tg/hook",
            json=start_update(901, 77),
            headers={"X-Telegram-Bot-Api-Secret-Token": SECRET},
        )
        assert ok.status == 200
        # Answered only after handling: the reply is already sent when Telegram gets 200.
        assert [r.chat_id for r in harness.server.calls("sendMessage")] == [77]
        metrics = await (await client.get("/metrics")).text()
        assert 'loyalty_updates_total{type="message"}' in metrics
        health = await client.get("/healthz")
        assert health.status == 200 and (await health.json())["status"] == "ok"
    async with sessions() as s:
        assert await find_by_telegram(s, 77) is None  # /start shows the rules; nobody joined


async def test_healthz_says_when_the_database_is_gone(caplog: pytest.LogCaptureFixture) -> None:
    """It names what failed; the reason (it names the database) goes to the log."""
    engine = create_engine("postgresql://postgres@127.0.0.1:1/secret_db", pool_size=1)
    async with TestClient(TestServer(build_web_app(engine))) as client:
        response = await client.get("/healthz")
        assert response.status == 503
        assert await response.json() == {"status": "unavailable", "failed": ["database"]}
        assert "secret_db" not in await response.text()
    await engine.dispose()
    logged = [r for r in caplog.records if r.name == "bot.workers.web"]
    assert [r.levelno for r in logged] == [logging.WARNING]
    assert "the database does not answer" in logged[0].getMessage()


async def test_healthz_checks_redis_when_it_is_set(
    engine: AsyncEngine, redis: str, caplog: pytest.LogCaptureFixture
) -> None:
    """With REDIS_URL set, dialogs live in Redis: a bot that cannot reach it is not healthy,
    though its database answers."""
    answering, refusing = Redis.from_url(redis), Redis.from_url("redis://127.0.0.1:1/0")
    async with TestClient(TestServer(build_web_app(engine, redis=answering))) as client:
        response = await client.get("/healthz")
        assert response.status == 200 and await response.json() == {"status": "ok"}
    async with TestClient(TestServer(build_web_app(engine, redis=refusing))) as client:
        response = await client.get("/healthz")
        assert response.status == 503
        assert await response.json() == {"status": "unavailable", "failed": ["redis"]}
    gone = create_engine("postgresql://postgres@127.0.0.1:1/secret_db", pool_size=1)
    async with TestClient(TestServer(build_web_app(gone, redis=refusing))) as client:
        response = await client.get("/healthz")
        assert response.status == 503
        assert (await response.json())["failed"] == ["database", "redis"]
    await gone.dispose()
    await answering.aclose()
    await refusing.aclose()
    logged = [r.getMessage() for r in caplog.records if r.name == "bot.workers.web"]
    assert [m.split(":")[1] for m in logged] == [
        " Redis does not answer",
        " the database does not answer",
        " Redis does not answer",
    ]


async def test_metrics_can_require_a_bearer_token(harness: BotHarness) -> None:
    app = build_web_app(harness.runtime.engine, metrics_token="m3trics-Token")
    async with TestClient(TestServer(app)) as client:
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": "m3trics-Token"},
            {"Authorization": "Basic m3trics-Token"},
        ):
            refused = await client.get("/metrics", headers=headers)
            assert refused.status == 401
            assert refused.headers["WWW-Authenticate"] == "Bearer"
            assert "loyalty_" not in await refused.text()
        ok = await client.get("/metrics", headers={"Authorization": "Bearer m3trics-Token"})
        assert ok.status == 200 and "loyalty_updates_total" in await ok.text()
        # Health stays open: load balancers and the Docker healthcheck carry no token.
        assert (await client.get("/healthz")).status == 200


def test_settings_defaults_and_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_HOST", "METRICS_TOKEN", "WEBHOOK_URL", "WEBHOOK_SECRET"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.http_host == "127.0.0.1"
    assert settings.metrics_token is None
    # docker compose passes unset variables as empty strings: unset, not an empty secret.
    for name in ("METRICS_TOKEN", "WEBHOOK_URL", "WEBHOOK_SECRET"):
        monkeypatch.setenv(name, "")
    empty = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (empty.metrics_token, empty.webhook_url, empty.webhook_secret) == (None, None, None)
    monkeypatch.setenv("WEBHOOK_URL", "https://bot.example.org/tg")
    monkeypatch.setenv("WEBHOOK_SECRET", "A-z_09" * 40)
    ok = Settings(_env_file=None)  # type: ignore[call-arg]
    assert ok.webhook_url == "https://bot.example.org/tg"
    for name, bad in [
        ("WEBHOOK_URL", "http://bot.example.org/tg"),
        ("WEBHOOK_URL", "https:///tg"),
        ("WEBHOOK_SECRET", "A" * 257),
        ("WEBHOOK_SECRET", "no spaces"),
        ("WEBHOOK_SECRET", "no/slash"),
    ]:
        monkeypatch.setenv(name, bad)
        with pytest.raises(ValidationError) as info:
            Settings(_env_file=None)  # type: ignore[call-arg]
        (error,) = info.value.errors()
        assert error["loc"] == (name.lower(),)
        assert bad not in str(error["msg"])  # a rejected secret is not echoed to the log
        monkeypatch.setenv(name, "https://bot.example.org/tg" if name == "WEBHOOK_URL" else "ok")
