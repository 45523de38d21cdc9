"""Webhook mode, /healthz and /metrics."""

from __future__ import annotations

from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.web import build_web_app
from db.engine import create_engine
from db.members import find_by_telegram
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


async def test_healthz_says_when_the_database_is_gone() -> None:
    engine = create_engine("postgresql://postgres@127.0.0.1:1/none", pool_size=1)
    async with TestClient(TestServer(build_web_app(engine))) as client:
        response = await client.get("/healthz")
        assert response.status == 503
        assert (await response.json())["status"] == "unavailable"
    await engine.dispose()
