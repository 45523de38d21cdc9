"""`python -m bot` as a real process, the way a user starts it: polling, then webhook mode."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp

from tests.botharness import TOKEN
from tests.conftest import ROOT
from tests.fakegram import FakeTelegramServer, UserClient


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def bot_process(
    env: dict[str, str], without: tuple[str, ...] = ()
) -> AsyncIterator[asyncio.subprocess.Process]:
    base = {k: v for k, v in os.environ.items() if k not in without}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        cwd=ROOT,
        env={**base, "BOT_TOKEN": TOKEN, "LOG_LEVEL": "WARNING", **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 20)
            except TimeoutError:
                process.kill()


async def wait_healthy(port: int, process: asyncio.subprocess.Process) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(300):
            if process.returncode is not None:
                output = await process.stdout.read() if process.stdout else b""
                raise AssertionError(f"the bot exited: {output.decode()}")
            try:
                async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("the bot never became healthy")


async def test_polling_process_answers_and_stops_cleanly(database_url: str) -> None:
    port = free_port()
    async with FakeTelegramServer(bot_username="city_bonus_bot") as server:
        env = {
            "DATABASE_URL": database_url,
            "TELEGRAM_API_BASE": server.base_url,
            "HTTP_PORT": str(port),
            "HTTP_HOST": "127.0.0.1",
        }
        async with bot_process(env) as process:
            await wait_healthy(port, process)
            user = UserClient(server, 4321, first_name="Pat", language_code="uk")
            await user.send("/start")
            await user.wait_message(timeout=15)
            assert {c["command"] for c in server.commands("uk")} >= {"card", "balance"}
            process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(process.wait(), 20) == 0


async def test_a_refused_command_menu_and_no_owners_are_warnings_not_failures(
    database_url: str,
) -> None:
    port = free_port()
    async with FakeTelegramServer(bot_username="city_bonus_bot") as server:
        server.fail_next("setMyCommands", 400, count=None, description="Bad Request: no menu")
        env = {
            "DATABASE_URL": database_url,
            "TELEGRAM_API_BASE": server.base_url,
            "HTTP_PORT": str(port),
            "HTTP_HOST": "127.0.0.1",
            "ADMIN_IDS": "",
        }
        async with bot_process(env) as process:
            await wait_healthy(port, process)
            user = UserClient(server, 4322, first_name="Pat")
            await user.send("/start")
            await user.wait_message(timeout=15)
            process.send_signal(signal.SIGTERM)
            output, _ = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 0, output
    log = output.decode()
    assert "could not set the command menu (Telegram server says - Bad Request: no menu)" in log
    assert "ADMIN_IDS is empty" in log and "@userinfobot" in log
    assert "Traceback" not in log, log


async def test_webhook_process_registers_its_secret_and_serves(database_url: str) -> None:
    port = free_port()
    async with FakeTelegramServer(bot_username="city_bonus_bot") as server:
        env = {
            "DATABASE_URL": database_url,
            "TELEGRAM_API_BASE": server.base_url,
            "HTTP_PORT": str(port),
            "HTTP_HOST": "127.0.0.1",
            # The public URL (TLS ends at a proxy); the bot serves its path on HTTP_PORT.
            "WEBHOOK_URL": "https://bot.example.org/telegram",
            "WEBHOOK_SECRET": "hook-secret",
        }
        async with bot_process(env) as process:
            await wait_healthy(port, process)
            await server.wait_for(lambda: server.webhook.get("url"), timeout=15)
            assert server.webhook["url"] == "https://bot.example.org/telegram"
            assert server.webhook["secret_token"] == "hook-secret"
            from tests.test_web import start_update

            async with aiohttp.ClientSession() as http:
                url = f"http://127.0.0.1:{port}/telegram"
                async with http.post(url, json=start_update(5, 99)) as refused:
                    assert refused.status == 401
                async with http.post(
                    url,
                    json=start_update(6, 99),
                    headers={"X-Telegram-Bot-Api-Secret-Token": "hook-secret"},
                ) as accepted:
                    assert accepted.status == 200
            assert [r.chat_id for r in server.calls("sendMessage")] == [99]


async def test_bad_settings_stop_start_up_with_one_clear_line() -> None:
    cases = [
        ({"BOT_TOKEN": "not-a-token"}, "BOT_TOKEN"),
        ({"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/x"}, "cannot use the database"),
        ({"PROGRAM_FILE": "/nonexistent/program.toml"}, "program file not found"),
        ({"WEBHOOK_URL": "http://bot.example.org/telegram"}, "WEBHOOK_URL: must be an https://"),
        ({"WEBHOOK_URL": "bot.example.org/telegram"}, "WEBHOOK_URL: must be an https://"),
        ({"WEBHOOK_SECRET": "has spaces"}, "WEBHOOK_SECRET: must be 1 to 256 characters"),
        ({"WEBHOOK_SECRET": "x" * 257}, "WEBHOOK_SECRET: must be 1 to 256 characters"),
        ({"WEBHOOK_SECRET": "pässword"}, "WEBHOOK_SECRET: must be 1 to 256 characters"),
    ]
    for env, expected in cases:
        async with bot_process(env) as process:
            output, _ = await asyncio.wait_for(process.communicate(), 60)
            assert process.returncode == 2, output
            assert expected in output.decode().strip().splitlines()[-1], output
            assert "Traceback" not in output.decode(), output


async def test_a_busy_port_stops_start_up_and_the_embedded_database(tmp_path: Path) -> None:
    """With the embedded database (no DATABASE_URL): one line, exit code 2, at once, and the
    embedded server is stopped (its postmaster.pid is gone)."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        async with FakeTelegramServer(bot_username="city_bonus_bot") as server:
            env = {
                "TELEGRAM_API_BASE": server.base_url,
                "HTTP_PORT": str(port),
                "HTTP_HOST": "127.0.0.1",
                "DATA_DIR": str(tmp_path),
                "ADMIN_IDS": "1",
            }
            started = time.monotonic()
            async with bot_process(env, without=("DATABASE_URL",)) as process:
                output, _ = await asyncio.wait_for(process.communicate(), 60)
            took = time.monotonic() - started
    lines = output.decode().strip().splitlines()
    assert process.returncode == 2, output
    assert lines == [
        f"error: HTTP_PORT {port} on 127.0.0.1 is already in use: stop what holds it or set "
        "HTTP_PORT to a free port"
    ]
    assert took < 30
    assert (tmp_path / "postgres" / "PG_VERSION").exists()  # it did run embedded
    assert not (tmp_path / "postgres" / "postmaster.pid").exists()
