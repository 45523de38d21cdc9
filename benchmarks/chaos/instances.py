"""The bot as the operator runs it: `python -m bot` processes (one polling, or several behind
a webhook on one database and one Redis), killed with SIGKILL and started again; and the
webhook's Telegram side, which delivers each update to an instance until one answers it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from tests.conftest import ROOT
from tests.fakegram import FakeTelegramServer
from tests.test_process import free_port

WEBHOOK_SECRET = "chaos-soak"
Note = Callable[[str, str, str], Any]  # History.note
WEBHOOK_PATH = "/tg"
SLOW_ANSWER = 10.0  # seconds: a webhook answer this late is noted in the history


@dataclass
class Instance:
    """One `python -m bot` process, its log (all its runs, each after a marker line) and
    its HTTP port."""

    index: int
    env: dict[str, str]
    log_path: Path
    port: int = field(default_factory=free_port)
    process: asyncio.subprocess.Process | None = None
    runs: int = 0
    _restarting: asyncio.Lock = field(default_factory=asyncio.Lock)
    _restarts: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{WEBHOOK_PATH}"

    @property
    def restarting(self) -> bool:
        return bool(self._restarts) or self._restarting.locked()

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self) -> None:
        """Start the process (one at a time: a live one is killed first, so no process of
        this instance is ever left running unseen)."""
        if self.alive:
            self.kill()
        await self.reap()
        self.runs += 1
        with self.log_path.open("a" if self.runs > 1 else "w", encoding="utf-8") as log:
            log.write(f"=== chaos: run {self.runs} of instance {self.index} ===\n")
        env = {**os.environ, **self.env, "HTTP_PORT": str(self.port)}
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bot",
                cwd=ROOT,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
            )

    async def wait_healthy(self, timeout: float = 60.0) -> None:  # noqa: ASYNC109
        """Until /healthz answers 200 (the bot migrated, listens, and reaches the database)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with aiohttp.ClientSession() as http:
            while loop.time() < deadline:
                if self.process is None or self.process.returncode is not None:
                    raise RuntimeError(
                        f"instance {self.index} exited at start-up: see {self.log_path}"
                    )
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with http.get(
                        f"http://127.0.0.1:{self.port}/healthz",
                        timeout=aiohttp.ClientTimeout(total=2),
                    ) as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(0.1)
        raise RuntimeError(f"instance {self.index} never became healthy: see {self.log_path}")

    async def back_up(self, after: float = 0.0, note: Note | None = None) -> None:
        """Start it again after `after` seconds, and again until it is healthy (it refuses
        to start while the database is down); one such loop at a time. `note` is told of
        each start that came up."""
        await asyncio.sleep(after)
        async with self._restarting:
            while not self.alive or not await self.healthy():
                await self.start()
                try:
                    await self.wait_healthy()
                except RuntimeError:
                    await asyncio.sleep(1)
                    continue
                if note is not None:
                    note("chaos", "restarted", f"instance {self.index}")

    def restart_later(self, after: float, note: Note | None = None) -> None:
        task = asyncio.create_task(self.back_up(after, note))
        self._restarts.add(task)
        task.add_done_callback(self._restarts.discard)

    async def cancel_restarts(self) -> None:
        for task in list(self._restarts):
            task.cancel()
        await asyncio.gather(*self._restarts, return_exceptions=True)

    async def healthy(self) -> bool:
        try:
            await self.wait_healthy(timeout=5)
        except RuntimeError:
            return False
        return True

    def kill(self) -> None:
        """SIGKILL: no shutdown, nothing flushed, whatever was in flight is cut."""
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)

    async def reap(self) -> None:
        if self.process is not None:
            await self.process.wait()

    async def stop(self) -> int | None:
        """SIGTERM and wait for a clean exit (SIGKILL after 20 s); the exit code."""
        process = self.process
        if process is None:
            return None
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 20)
            except TimeoutError:
                process.kill()
                await process.wait()
                return None
        return process.returncode


class WebhookSender:
    """Telegram's side of a webhook behind a load balancer: each update the users sent is
    posted to an instance (a seeded choice); an instance that is down or fails is tried
    again, the next one after a short wait, until one answers 200. A chat's updates go in
    order, one at a time; chats go at once. `duplicate(update)` says whether to deliver an
    update a second time after it was answered (Telegram does when it did not see the
    answer)."""

    def __init__(
        self,
        server: FakeTelegramServer,
        instances: list[Instance],
        rng: random.Random,
        duplicate: Callable[[dict[str, Any]], bool],
        note: Note,
    ) -> None:
        self.server = server
        self.instances = instances
        self.rng = rng
        self.duplicate = duplicate
        self.note = note
        self.delivered = 0
        self.redelivered = 0
        self._chats: dict[int, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._pump: asyncio.Task[None] | None = None
        self._http: aiohttp.ClientSession | None = None
        self._sent = 0  # pushed updates taken so far

    def start(self) -> None:
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120))
        self._pump = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            await asyncio.gather(self._pump, return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.close()

    async def _run(self) -> None:
        while True:
            await self.server.wait_for(
                lambda: len(self.server.pushed_updates) > self._sent, timeout=3600
            )
            while self._sent < len(self.server.pushed_updates):
                update = self.server.pushed_updates[self._sent]
                self._sent += 1
                task = asyncio.create_task(self._deliver_in_order(update))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _deliver_in_order(self, update: dict[str, Any]) -> None:
        lock = self._chats.setdefault(_chat_of(update), asyncio.Lock())
        async with lock:
            await self._deliver(update)
            self.delivered += 1
            if self.duplicate(update):
                await self._deliver(update)
                self.redelivered += 1

    async def _deliver(self, update: dict[str, Any]) -> None:
        assert self._http is not None
        target = self.rng.randrange(len(self.instances))
        attempt = 0
        while True:
            instance = self.instances[(target + attempt) % len(self.instances)]
            attempt += 1
            if instance.alive:
                started = time.monotonic()
                why = ""
                try:
                    async with self._http.post(
                        instance.url,
                        json=update,
                        headers={"X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET},
                    ) as response:
                        if response.status == 200:
                            if time.monotonic() - started > SLOW_ANSWER:
                                self.note(
                                    "webhook",
                                    "slow answer",
                                    f"update {update['update_id']} to instance"
                                    f" {instance.index}: {time.monotonic() - started:.1f} s",
                                )
                            return
                        why = f"HTTP {response.status}"
                except (aiohttp.ClientError, TimeoutError) as exc:
                    why = repr(exc)[:80]
                self.note(
                    "webhook",
                    "delivered again",
                    f"update {update['update_id']}: instance {instance.index} {why} after"
                    f" {time.monotonic() - started:.1f} s",
                )
            await asyncio.sleep(min(0.2 * attempt, 2.0))


def _chat_of(update: dict[str, Any]) -> int:
    for key, value in update.items():
        if key == "update_id" or not isinstance(value, dict):
            continue
        chat = value.get("chat") or (value.get("message") or {}).get("chat")
        if chat:
            return int(chat["id"])
        sender = value.get("from")
        if sender:
            return int(sender["id"])
    return 0
