"""What share of an enforced Bot API rate the campaign worker attains, losing nobody.

A campaign to 1,000 consenting members (registered beforehand, in a fresh PostgreSQL
database) is delivered by `bot.workers.delivery.DeliveryWorker(rate=N)` with its other settings as
the bot runs it, `run_until_idle`, through the app's own `Bot` (bot.app.build_bot) to a fake
Bot API server (tests/fakegram) that enforces N messages a second: a token bucket of N tokens
refilled at N/s (`server.rate_limit(N, burst=N)`), answering 429 with `retry_after` (whole
seconds, at least 1, as Telegram does) to any send it has no token for. The burst is N because
that is the worker's own bucket (one second's worth), so the server and the worker mean the
same thing by "N a second" and every 429 is the worker's doing, not a stricter fake.

Attained is delivered / the seconds from starting the worker to the last successful send, so
`attained/N` is the share of the allowed rate the campaign got. Both buckets start full, so
the first sends cost no time and attained/N can exceed 1: its ceiling is 1000 / (1000 − B)
for a free burst of B = min(the worker's bucket, the server's), 1.03 at N = 25 and 1.11 at
N = 100 with the worker as it is. So the table also gives the ideal seconds, (1000 − B) / N,
and their share of the seconds taken ("of ideal", at most 1.00): what the worker lost to 429
pauses, to the database and to the event loop. Target: attained/N ≥ 0.95 with nobody lost.

Nobody lost: every member got the message exactly once, the outbox holds nothing else, and
the campaign's stored figures say done with 1,000 sent. To show where the time goes, the
table gives the 429s the server answered, the seconds the worker was paused for them (the
union of the `retry_after` windows: a pause costs little by itself, as both buckets refill
meanwhile, but a worker whose bucket is full cannot bank the time it then spends elsewhere),
and the seconds spent in the database (claim, settle, progress: `run_batch` awaits them
while nothing is sent, and only tokens banked in the worker's bucket make up for them).

`--worker-burst S` is an experiment, not how the bot runs: it sets the worker's bucket to
hold S·N tokens (the bot's is 1.0·N, one second's worth) before the run.

Run from the repository root:
`python -m benchmarks.delivery [--rate N ...] [--worker-burst S]` (default: N = 25, the bot's
default DELIVERY_RATE, then N = 100). The server is `BENCH_DATABASE_URL` if set, else the one
the tests use (tests/pg.py); the database is created for the run and dropped at the end. The
last line is `delivery attained/N: X.XX`, the worst of the runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from benchmarks.ledger import admin_url, server_version
from bot.app import build_bot
from bot.config import Settings
from bot.i18n import build_i18n
from bot.workers.delivery import DeliveryWorker
from db.engine import create_engine, session_factory
from db.ledger.models import Outbox
from db.migrate import upgrade
from db.usecases.campaigns import (
    CampaignInfo,
    OutboxItem,
    Outcome,
    Segment,
    create_campaign,
    get_campaign,
    start_campaign,
)
from db.usecases.members import register_member
from db.usecases.partners import sync_partners
from tests import pg
from tests.conftest import make_program
from tests.fakegram import FakeTelegramServer

TOKEN = "4242:BENCH-delivery"
MEMBERS = 1_000
FIRST_TELEGRAM_ID = 730_000_001
RATES = (25.0, 100.0)
TEXT = "Autumn offer: double points at Bean There Coffee this week."


# --- the worker, watched --------------------------------------------------------------------


class TimedSessions:
    """The worker's session factory, adding up how long each session is held."""

    def __init__(self, factory: async_sessionmaker[AsyncSession]) -> None:
        self.factory = factory
        self.seconds = 0.0

    @asynccontextmanager
    async def __call__(self) -> AsyncIterator[AsyncSession]:
        started = time.perf_counter()
        try:
            async with self.factory() as session:
                yield session
        finally:
            self.seconds += time.perf_counter() - started


class WatchedWorker(DeliveryWorker):
    """The bot's worker as it is, noting when each send succeeded and each 429's pause."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sent_at: list[float] = []
        self.pauses: list[tuple[float, float]] = []  # (from, until), perf_counter seconds

    async def send(self, campaign: CampaignInfo, chat_id: int) -> None:
        await super().send(campaign, chat_id)
        self.sent_at.append(time.perf_counter())

    async def deliver(self, item: OutboxItem, clock: Callable[[], datetime]) -> Outcome:
        outcome = await super().deliver(item, clock)
        if outcome.status == "retry" and outcome.retry_at is not None:
            now = time.perf_counter()
            self.pauses.append((now, now + (outcome.retry_at - clock()).total_seconds()))
        return outcome

    def paused_seconds(self) -> float:
        """The union of the pause windows."""
        total, reach = 0.0, float("-inf")
        for start, end in sorted(self.pauses):
            if end > reach:
                total += end - max(start, reach)
                reach = end
        return total


# --- one run --------------------------------------------------------------------------------


@dataclass(slots=True)
class Delivery:
    rate: float
    delivered: int
    seconds: float  # from starting the worker to the last successful send
    idle_seconds: float  # to run_until_idle returning
    burst: float  # sends that cost no time: the smaller of the two buckets
    rate_limited: int  # 429s answered
    paused: float
    database: float
    problems: list[str] = field(default_factory=list)

    @property
    def attained(self) -> float:
        return self.delivered / self.seconds

    @property
    def share(self) -> float:
        return self.attained / self.rate

    @property
    def ideal(self) -> float:
        """The seconds the deliveries take at exactly N/s after the free burst."""
        return (self.delivered - self.burst) / self.rate


async def deliver_campaign(
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    members: list[int],
    rate: float,
    worker_burst: float | None,
) -> Delivery:
    async with sessions() as session:
        campaign = await create_campaign(session, created_by=1, segment=Segment(), text=TEXT)
        queued = await start_campaign(session, campaign)
    async with FakeTelegramServer() as server:
        bot = build_bot(
            Settings(bot_token=TOKEN, telegram_api_base=server.base_url)  # type: ignore[arg-type]
        )
        timed = TimedSessions(sessions)
        worker = WatchedWorker(bot, engine, timed, build_i18n(), rate=rate)  # type: ignore[arg-type]
        if worker_burst is not None:
            worker.bucket.capacity = worker.bucket.tokens = max(1.0, worker_burst * rate)
        try:
            server.rate_limit(rate, burst=int(rate))
            started = time.perf_counter()
            await worker.run_until_idle()
            idle = time.perf_counter() - started
        finally:
            await bot.session.close()
        got = Counter(
            r.chat_id for r in server.calls("sendMessage") if r.ok and r.params.get("text") == TEXT
        )
        others = [r for r in server.requests if not r.is_method("sendMessage")]
        refused = [r for r in server.requests if r.status not in (200, 429)]
    async with sessions() as session:
        info = await get_campaign(session, campaign)
        left = await session.scalar(
            select(func.count()).where(Outbox.campaign_id == campaign, Outbox.status != "sent")
        )
        await session.rollback()

    problems = []
    if queued != len(members):
        problems.append(f"{queued} queued for {len(members)} members")
    if set(got) != set(members):
        problems.append(f"{len(set(members) - set(got))} members got nothing")
    if twice := sum(n - 1 for n in got.values()):
        problems.append(f"{twice} messages sent twice")
    if others or refused:
        problems.append(f"unexpected calls: {[(r.method, r.status) for r in others + refused]}")
    if info is None or (info.status, info.sent, info.failed, info.blocked) != (
        "done",
        len(members),
        0,
        0,
    ):
        problems.append(f"campaign stored as {info}")
    if left:
        problems.append(f"{left} outbox rows not sent")
    return Delivery(
        rate=rate,
        delivered=sum(got.values()),
        seconds=max(worker.sent_at) - started,
        idle_seconds=idle,
        burst=min(worker.bucket.capacity, rate),
        rate_limited=server.rate_limited_count,
        paused=worker.paused_seconds(),
        database=timed.seconds,
        problems=problems,
    )


# --- the run --------------------------------------------------------------------------------


async def prepare_database(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> tuple[list[int], float]:
    """Migrate, sync the partners and register the consenting members as the bot does (with
    their wallets and welcome points); returns their Telegram ids and the seconds it took."""
    program = make_program()
    started = time.perf_counter()
    await upgrade(engine)
    async with sessions() as session:
        await sync_partners(session, program)

    async def register(telegram_ids: range) -> None:
        async with sessions() as session:
            for telegram_id in telegram_ids:
                await register_member(
                    session, program, telegram_id=telegram_id, marketing_consent=True
                )

    last = FIRST_TELEGRAM_ID + MEMBERS
    await asyncio.gather(*(register(range(FIRST_TELEGRAM_ID + i, last, 8)) for i in range(8)))
    return list(range(FIRST_TELEGRAM_ID, last)), time.perf_counter() - started


async def bench(
    admin: str, rates: list[float], worker_burst: float | None
) -> tuple[list[Delivery], float]:
    url = await pg.create_database(admin)
    try:
        engine = create_engine(url)  # the pool the bot runs with (bot.runtime.open_runtime)
        try:
            sessions = session_factory(engine)
            members, setup = await prepare_database(engine, sessions)
            runs = [
                await deliver_campaign(engine, sessions, members, rate, worker_burst)
                for rate in rates
            ]
        finally:
            await engine.dispose()
    finally:
        await pg.drop_database(admin, url)
    return runs, setup


def report(runs: list[Delivery]) -> str:
    rows = [
        f"{'N/s':>5} {'burst':>5} {'sent':>5} {'seconds':>8} {'ideal s':>7} {'of ideal':>8} "
        f"{'attained/s':>10} {'attained/N':>10} {'429s':>5} {'paused s':>8} {'db s':>6}"
    ]
    for run in runs:
        rows.append(
            f"{run.rate:>5.0f} {run.burst:>5.0f} {run.delivered:>5} {run.seconds:>8.2f} "
            f"{run.ideal:>7.2f} {run.ideal / run.seconds:>8.2f} {run.attained:>10.1f} "
            f"{run.share:>10.2f} {run.rate_limited:>5} {run.paused:>8.2f} {run.database:>6.2f}"
        )
    for run in runs:
        verdict = "; ".join(run.problems) or "none lost, none twice, stored as done"
        rows.append(
            f"N = {run.rate:.0f}: {verdict}; run_until_idle returned after "
            f"{run.idle_seconds:.2f} s"
        )
    rows.append(f"delivery attained/N: {min(run.share for run in runs):.2f}")
    return "\n".join(rows)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--rate",
        type=float,
        action="append",
        help=f"messages/s the server allows (repeat for several runs; default {RATES})",
    )
    parser.add_argument(
        "--worker-burst",
        type=float,
        help="an experiment: the worker's bucket holds this share of N (the bot's: 1.0)",
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    rates = args.rate or list(RATES)
    admin, server = admin_url()
    try:
        version = asyncio.run(server_version(admin))
        load_before = os.getloadavg()[0]
        runs, setup = asyncio.run(bench(admin, rates, args.worker_burst))
        load_after = os.getloadavg()[0]
    finally:
        if server is not None:
            server.cleanup()
    print(
        f"{os.cpu_count()} CPUs shared by PostgreSQL and one Python process (load average "
        f"{load_before:.2f} before, {load_after:.2f} after); {version}; {MEMBERS} members "
        f"registered in {setup:.1f} s; the worker's defaults but the rate (concurrency 8, "
        f"batches of 32), its bucket "
        + ("as the bot has it" if args.worker_burst is None else f"{args.worker_burst}·N")
    )
    print(report(runs))
    if any(run.problems for run in runs):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
