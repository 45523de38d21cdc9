"""Two bot processes behind one webhook, on one database and one Redis: a whole till dialog
with every update going to the other instance than the one before, and a campaign. Every
result is what one process gives."""

from __future__ import annotations

import asyncio
from collections import Counter
from contextlib import AsyncExitStack

import aiohttp
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.rules.program import load_program
from db.usecases.members import find_by_telegram, register_member
from tests.botharness import OWNER_ID
from tests.conftest import ROOT
from tests.fakegram import FakeTelegramServer, UserClient, text_of
from tests.test_process import bot_process, free_port, wait_healthy

Sessions = async_sessionmaker[AsyncSession]
SECRET = "two-instances"


class WebhookPump:
    """Plays Telegram behind a load balancer: delivers each update users send to the next
    instance in turn, and waits for its answer before the next one."""

    def __init__(self, server: FakeTelegramServer, urls: list[str]) -> None:
        self.server, self.urls = server, urls
        self.delivered = Counter[str]()
        self.task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        sent = 0
        async with aiohttp.ClientSession() as http:
            while True:
                await self.server.wait_for(
                    lambda sent=sent: len(self.server.pushed_updates) > sent, 3600
                )
                update = self.server.pushed_updates[sent]
                url = self.urls[sent % len(self.urls)]
                async with http.post(
                    url, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": SECRET}
                ) as response:
                    assert response.status == 200, await response.text()
                self.delivered[url] += 1
                sent += 1

    def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def test_two_instances_share_dialogs_and_deliver_once(
    database_url: str, sessions: Sessions, redis: str
) -> None:
    program = load_program(ROOT / "program.toml")
    async with (
        FakeTelegramServer(bot_username="city_bonus_bot") as server,
        AsyncExitStack() as stack,
    ):
        ports = [free_port(), free_port()]
        for port in ports:
            env = {
                "DATABASE_URL": database_url,
                "REDIS_URL": redis,
                "TELEGRAM_API_BASE": server.base_url,
                "ADMIN_IDS": str(OWNER_ID),
                "HTTP_HOST": "127.0.0.1",
                "HTTP_PORT": str(port),
                "WEBHOOK_URL": "https://bot.example.org/tg",
                "WEBHOOK_SECRET": SECRET,
                "DELIVERY_RATE": "200",
            }
            process = await stack.enter_async_context(bot_process(env))
            await wait_healthy(port, process)
        pump = WebhookPump(server, [f"http://127.0.0.1:{port}/tg" for port in ports])
        pump.start()
        stack.push_async_callback(pump.stop)

        base = 7_000_000 + (id(server) % 1000) * 100  # fresh ids: Redis outlives test runs
        owner = UserClient(server, OWNER_ID, first_name="Owner")
        cashier = UserClient(server, base + 1, first_name="Carl")
        ann = UserClient(server, base + 2, first_name="Ann")

        await owner.send("/staff_invite coffee cashier")
        link = text_of(await owner.wait_message("one-time invite", timeout=15)).split()[-1]
        await cashier.send("/start " + link.split("start=")[1])
        await cashier.wait_message("You are now", timeout=15)

        await ann.send("/start")
        await ann.wait_message("one card for", timeout=15)
        await ann.click("✅ I accept the rules, join")
        await ann.wait_message("offers", timeout=15)
        await ann.click("Yes, send me offers")
        await ann.wait_message("Show your card", timeout=15)
        await ann.send("/card")
        photo = await ann.wait_message(lambda m: "photo" in m, timeout=15)

        # The till dialog: each step lands on the other instance; its state is in Redis.
        await cashier.send_photo(server.file(photo["photo"][-1]["file_id"]).data)
        await cashier.wait_message("Points can pay up to", timeout=15)
        await cashier.click("💳 Sale: use points")
        await cashier.wait_message("Enter the purchase amount", timeout=15)
        await cashier.send("10")
        await cashier.wait_message("How many points?", timeout=15)
        await cashier.send("max")
        await cashier.wait_message("Waiting for the member", timeout=15)
        await ann.wait_message("Confirm?", timeout=15)
        await ann.click("✅ Confirm")
        told = text_of(await cashier.wait_message("The member confirmed", timeout=15))
        # 50 welcome points pay 0.50 of 10.00; 9.50 earns 5 % = 47 points; the demo's
        # first visit to a partner (a purchase of 10.00 or more) gives 100 more.
        assert "The customer pays PLN\u00a09.50" in told and "+47 points" in told
        assert "+100 points — 100 points for your first visit to a new partner" in told
        async with sessions() as s:
            member = await find_by_telegram(s, ann.user_id)
            assert member is not None and member.balance == 147

        # A campaign: both instances run a delivery worker; one holds the lock.
        async with sessions() as s:
            for tg in range(base + 10, base + 40):
                await register_member(s, program, telegram_id=tg, marketing_consent=True)
        await owner.send("/campaign")
        await owner.wait_message("New campaign", timeout=15)
        await owner.click("Next: write the message ▶")
        await owner.wait_message("Send the message", timeout=15)
        await owner.send("Two instances, one message each.")
        await owner.wait_message("link button", timeout=15)
        await owner.send("/skip")
        await owner.wait_message("Send it?", timeout=15)
        await owner.click("🚀 Send now")

        def received() -> Counter[int]:
            return Counter(
                r.chat_id
                for r in server.calls("sendMessage")
                if r.status == 200 and r.params.get("text") == "Two instances, one message each."
            )

        audience = {ann.user_id, *range(base + 10, base + 40)}
        await server.wait_for(lambda: audience <= set(received()), timeout=30)
        await asyncio.sleep(1)  # time for a duplicate to show, if there were one
        got = received()
        assert {tg: n for tg, n in got.items() if tg != OWNER_ID} == dict.fromkeys(audience, 1)
        first, second = pump.delivered.values()  # both instances took their half
        assert abs(first - second) <= 1 and first + second >= 16
