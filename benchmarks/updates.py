"""How many `/balance` updates a second the real bot handles, next to a bare aiogram echo bot.

Both bots long-poll their own fake Bot API server (tests/fakegram) over HTTP on 127.0.0.1, with
the same polling settings, aiogram's default of handling each polled update as its own task,
and the same number of `/balance` messages from the same 500 users:

- balance: the dispatcher from `bot.app.build_dispatcher` with all its middlewares (one
  database session per update, the staff and locale lookups) answering `/balance` for members
  registered in a fresh PostgreSQL database: the reads, the formatting and the HTML reply sent
  over HTTP.
- echo: a bare `aiogram.Dispatcher` with one handler, `message.answer(message.text)`; no
  middlewares, no database.

The echo bot is what aiogram, aiohttp and the fake server cost on this machine for one update
in and one message out, so `balance/echo` is the share of that ceiling the bot's own work (SQL
round trips, SQLAlchemy, i18n, formatting) leaves. Target: at least 0.5. The card's QR render
is timed on its own (target: a median of at most 15 ms), and a `/balance` and a `/card` round
trip as a member sees it, one message at a time.

The bots take turns in short slices (about a second each), and each pair of slices gives one
ratio: a burst of other work on a shared machine then skews a pair or two, not the figure,
which is the median of the pairs' ratios, printed with their spread. What else ran meanwhile
is printed too: on 2 cores, PostgreSQL, this process (fake server, bot, load) and any other
job share the CPU.

Run from the repository root: `python -m benchmarks.updates [--pairs 12] [--members 500]`.
The server is `BENCH_DATABASE_URL` if set, else the one the tests use (tests/pg.py).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.types import Message
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.app import build_bot, build_dispatcher, signing_secret
from bot.config import Settings
from bot.runtime import Runtime
from bot.views.qr import render_qr
from db.engine import create_engine, session_factory
from db.migrate import upgrade
from db.rules.program import Program
from db.rules.tokens import card_token
from db.usecases.members import register_member
from db.usecases.partners import sync_partners
from tests import pg
from tests.conftest import make_program
from tests.fakegram import FakeTelegramServer, RecordedRequest, UserClient

BOT_USERNAME = "city_bonus_bot"
TOKEN = "4242:BENCH-token"
FIRST_TELEGRAM_ID = 700_000_001
POLLING_TIMEOUT = 10  # aiogram's default
BATCH = 100  # getUpdates' largest batch
WINDOW = 3 * BATCH  # updates pushed but not yet answered, at most (see `closed_loop`)
CHECK_EVERY = 0.002  # seconds between looks at the server while a round runs
WARMUP_UPDATES = 600  # per bot, untimed: pool connections, prepared statements, keep-alive
PAIRS = 16  # slices per bot, alternating
SLICE_SECONDS = 1.0  # each slice's length, at the bot's median rate so far
MIN_SLICE = WINDOW + BATCH  # updates, so each slice runs past its first window
QR_RENDERS = 200
ROUND_TRIPS = 30

Check = Callable[[str], bool]


# --- measures -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Round:
    updates: int
    seconds: float
    python_cpu: float  # seconds of this process's CPU

    @property
    def per_second(self) -> float:
        return self.updates / self.seconds


@dataclass(slots=True)
class Throughput:
    name: str
    rounds: list[Round] = field(default_factory=list)

    @property
    def updates(self) -> int:
        return sum(r.updates for r in self.rounds)

    @property
    def seconds(self) -> float:
        return sum(r.seconds for r in self.rounds)

    @property
    def per_second(self) -> float:
        return statistics.median(r.per_second for r in self.rounds)

    @property
    def python_cpu_ms(self) -> float:
        """This process's CPU per update: the bot, the fake server and the load together."""
        return sum(r.python_cpu for r in self.rounds) / self.updates * 1000


@dataclass(frozen=True, slots=True)
class Spread:
    """A figure measured once per pair of slices: its median, least and greatest."""

    values: list[float]

    def __str__(self) -> str:
        return (
            f"{statistics.median(self.values):.2f} (spread {min(self.values):.2f}"
            f"\u2013{max(self.values):.2f} over {len(self.values)} pairs)"
        )


@dataclass(frozen=True, slots=True)
class Timings:
    name: str
    ms: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.ms)

    @property
    def p95(self) -> float:
        return statistics.quantiles(self.ms, n=100, method="inclusive")[94]


class CpuMeter:
    """CPU seconds (Linux /proc) of the whole machine, of this process and of the PostgreSQL
    backends serving `database`, so a report can say how much went to other jobs."""

    def __init__(self, database: str) -> None:
        self.database = database
        self.tick = os.sysconf("SC_CLK_TCK") if Path("/proc/stat").exists() else 100
        self.machine = self.ours = self.postgres = 0.0
        self.wall = 0.0
        self._start: tuple[float, float, dict[int, float], float] | None = None

    def _machine_busy(self) -> float:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return (sum(fields) - fields[3] - fields[4]) / self.tick  # less idle and iowait

    def _backends(self) -> dict[int, float]:
        found: dict[int, float] = {}
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and self.database in (entry / "cmdline").read_text():
                    stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                    found[int(entry.name)] = (int(stat[11]) + int(stat[12])) / self.tick
            except OSError:
                continue  # gone meanwhile
        return found

    def start(self) -> None:
        if Path("/proc/stat").exists():
            self._start = (
                self._machine_busy(),
                time.process_time(),
                self._backends(),
                time.perf_counter(),
            )

    def stop(self) -> None:
        if self._start is None:
            return
        machine, ours, backends, wall = self._start
        self.machine += self._machine_busy() - machine
        self.ours += time.process_time() - ours
        # Backends that ended during the round are missed; the pool keeps them open.
        self.postgres += sum(t - backends.get(pid, 0.0) for pid, t in self._backends().items())
        self.wall += time.perf_counter() - wall
        self._start = None

    def summary(self) -> str:
        if not self.wall:
            return "CPU use not measured (no /proc)"
        cores = os.cpu_count() or 1
        others = max(self.machine - self.ours - self.postgres, 0.0)

        def share(seconds: float) -> str:
            return f"{seconds / self.wall:.2f}"

        return (
            f"CPU during the timed rounds, in cores busy of {cores}: this process "
            f"{share(self.ours)}, its PostgreSQL backends {share(self.postgres)}, "
            f"everything else {share(others)}"
        )


# --- the database -----------------------------------------------------------------------------


def admin_url() -> tuple[str, Any]:
    """A maintenance database on the server to use, and the embedded server's handle if one
    was started (to stop at the end)."""
    if url := os.environ.get("BENCH_DATABASE_URL"):
        return url, None
    return pg.server_url()


async def prepare_database(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], program: Program, count: int
) -> None:
    """Migrate, sync the partners and register `count` members, as the tests set up."""
    await upgrade(engine)
    async with sessions() as session:
        await sync_partners(session, program)

    async def register(telegram_ids: range) -> None:
        async with sessions() as session:
            for telegram_id in telegram_ids:
                await register_member(session, program, telegram_id=telegram_id, first_name="M")

    last = FIRST_TELEGRAM_ID + count
    await asyncio.gather(*(register(range(FIRST_TELEGRAM_ID + i, last, 8)) for i in range(8)))


# --- bots under test --------------------------------------------------------------------------


async def echo_handler(message: Message) -> None:
    await message.answer(message.text or "")


def echo_dispatcher() -> Dispatcher:
    """No filter either: aiogram runs a synchronous one, such as `F.text`, in a thread."""
    dp = Dispatcher()
    dp.message.register(echo_handler)
    return dp


@dataclass(slots=True)
class Polling:
    """A bot long-polling its own fake server, and that server's users."""

    server: FakeTelegramServer
    users: list[UserClient]


@asynccontextmanager
async def polling(
    make_dispatcher: Callable[[Settings, Bot], Dispatcher], members: int
) -> AsyncIterator[Polling]:
    """The same Bot (bot.app.build_bot) and polling settings for every dispatcher, those of
    tests/botharness.py but for aiogram's default polling timeout."""
    async with FakeTelegramServer(bot_username=BOT_USERNAME) as server:
        settings = Settings(
            bot_token=TOKEN,  # type: ignore[arg-type]
            telegram_api_base=server.base_url,
            # The load's users send far faster than a person: no flood control in the way.
            flood_rate=1e6,
            flood_burst=1e6,
        )
        bot = build_bot(settings)
        dp = make_dispatcher(settings, bot)
        task = asyncio.create_task(
            dp.start_polling(
                bot,
                handle_signals=False,
                polling_timeout=POLLING_TIMEOUT,
                allowed_updates=dp.resolve_used_update_types(),
            )
        )
        try:
            await server.wait_for(lambda: server.calls("getUpdates"), 10, what="the first poll")
            users = [
                UserClient(server, FIRST_TELEGRAM_ID + i, first_name="M", language_code="en")
                for i in range(members)
            ]
            yield Polling(server, users)
        finally:
            await dp.stop_polling()
            await asyncio.wait_for(task, 10)
            await bot.session.close()


# --- one timed round ----------------------------------------------------------------------------


class Replies:
    """The sendMessage calls made after `start`, as the server answers them."""

    def __init__(self, server: FakeTelegramServer, start: int) -> None:
        self.server = server
        self.cursor = start
        self.in_flight: list[RecordedRequest] = []
        self.answered: list[RecordedRequest] = []

    def update(self) -> int:
        requests = self.server.requests
        self.in_flight.extend(r for r in requests[self.cursor :] if r.is_method("sendMessage"))
        self.cursor = len(requests)
        self.answered.extend(r for r in self.in_flight if r.status)
        self.in_flight = [r for r in self.in_flight if not r.status]
        return len(self.answered)


def polled_updates(server: FakeTelegramServer, start: int) -> Callable[[], bool]:
    """Whether a getUpdates (the one waiting at `start`, or a later one) returned updates."""
    first = next(
        (i for i in range(start - 1, -1, -1) if server.requests[i].is_method("getUpdates")),
        start,
    )

    def returned() -> bool:
        return any(
            r.is_method("getUpdates") and r.status == 200 and r.response and r.response["result"]
            for r in server.requests[first:]
        )

    return returned


async def closed_loop(bot: Polling, count: int, text: str) -> tuple[float, list[RecordedRequest]]:
    """Send `count` messages, keeping at most WINDOW of them unanswered; return the seconds
    from the first getUpdates that returns some until the last reply, and the replies.

    Why not queue all `count` first: aiogram polls again as soon as a batch is turned into
    tasks, without waiting for them, so it would pull the whole queue at once and run
    thousands of tasks side by side: the event loop, the garbage collector and (for the
    balance bot) the connection pool's waiters then cost far more per update than in a bot
    that keeps up, and the figure would be the drain of a backlog, not a steady state (with
    waits for a connection near the pool's 30 s checkout timeout). Keeping 200-300 updates in
    the bot keeps it always busy (more than its 100 HTTP connections and 20 database
    connections can take) with a bounded backlog: the steady state of a bot at capacity. The
    price is that the load (UserClient.send, about 60 µs an update) runs inside the timed
    window, the same for both bots. The server is looked at every 2 ms rather than after each
    of its events, so watching costs little and the clock stops at most 2 ms late.
    """
    server, users = bot.server, bot.users
    start = len(server.requests)
    replies = Replies(server, start)
    pushed = 0

    async def push(up_to: int) -> None:
        nonlocal pushed
        for _ in range(min(up_to, count) - pushed):
            await users[pushed % len(users)].send(text)
            pushed += 1

    returned = polled_updates(server, start)
    await push(WINDOW)
    await server.wait_for(returned, 10, what="a getUpdates that returns the updates")
    started = time.perf_counter()
    deadline = started + max(60.0, count / 20)
    while (answered := replies.update()) < count:
        if answered + WINDOW - pushed >= BATCH:
            await push(answered + WINDOW)
        if time.perf_counter() > deadline:
            raise SystemExit(
                f"{text}: {answered} of {count} answered; {server.describe_requests()}"
            )
        await asyncio.sleep(CHECK_EVERY)
    return time.perf_counter() - started, replies.answered[:count]


def check_replies(name: str, replies: list[RecordedRequest], looks_right: Check) -> None:
    """Every reply must be the intended answer: an error message would be cheaper to send
    and inflate the rate."""
    wrong = [r for r in replies if not (r.ok and looks_right(str(r.params.get("text", ""))))]
    if wrong:
        sample = wrong[0]
        raise SystemExit(
            f"{name}: {len(wrong)} of {len(replies)} replies are not the expected answer, e.g. "
            f"{sample.status} {sample.params.get('text')!r} {sample.response}"
        )


async def timed_round(
    bot: Polling, count: int, looks_right: Check, cpu: CpuMeter | None = None
) -> Round:
    # The fake server keeps every request and message, a heap that grows all run long and that
    # a real bot does not have; frozen, the collector's full passes skip it rather than bill
    # it to whichever bot runs (without this the echo bot's CPU per update nearly doubles).
    gc.collect()
    gc.freeze()
    if cpu:
        cpu.start()
    before = time.process_time()
    seconds, replies = await closed_loop(bot, count, "/balance")
    python_cpu = time.process_time() - before
    if cpu:
        cpu.stop()
    check_replies("/balance", replies, looks_right)
    return Round(count, seconds, python_cpu)


async def round_trips(bot: Polling, text: str, method: str) -> Timings:
    """One message at a time: from queueing it to the server answering the bot's `method`
    call. Includes the long poll waking up: what a member waits, less the network."""
    server, ms = bot.server, []
    for user in bot.users[:ROUND_TRIPS]:
        start = len(server.requests)
        started = time.perf_counter()
        await user.send(text)
        record = await server.wait_request(method, after=start, timeout=10)
        ms.append((time.perf_counter() - started) * 1000)
        if not record.ok:
            raise SystemExit(f"{text}: {record.status} {record.response}")
    return Timings(f"{text} round trip", ms)


# --- the run --------------------------------------------------------------------------------


def is_balance(text: str) -> bool:
    return text.startswith("💰")


def is_echo(text: str) -> bool:
    return text == "/balance"


def slice_size(rounds: list[Round]) -> int:
    """Updates in a slice of about SLICE_SECONDS at the median rate of `rounds`, whole
    batches: a burst of other work during one round does not shrink every slice after it."""
    rate = statistics.median(r.per_second for r in rounds)
    return max(MIN_SLICE, int(rate * SLICE_SECONDS) // BATCH * BATCH)


def time_qr(program: Program) -> Timings:
    """render_qr on the link /card sends: t.me/<bot>?start=<37-character card token>."""
    secret = signing_secret(Settings(bot_token=TOKEN))  # type: ignore[arg-type]
    expires = datetime.now(UTC) + timedelta(seconds=program.program.card_ttl_seconds)
    link = f"https://t.me/{BOT_USERNAME}?start={card_token(secret, 123_456, expires)}"
    render_qr(link)  # imports and first-use caches
    ms: list[float] = []
    for _ in range(QR_RENDERS):
        started = time.perf_counter()
        render_qr(link)
        ms.append((time.perf_counter() - started) * 1000)
    return Timings(f"render_qr ({len(link)}-char link)", ms)


@dataclass(frozen=True, slots=True)
class Results:
    balance: Throughput
    echo: Throughput
    latencies: list[Timings]
    cpu: CpuMeter

    def _pairs(self) -> list[tuple[Round, Round]]:
        return list(zip(self.balance.rounds, self.echo.rounds, strict=True))

    @property
    def ratio(self) -> Spread:
        """balance/echo in updates a second, per pair of slices."""
        return Spread([b.per_second / e.per_second for b, e in self._pairs()])

    @property
    def cpu_ratio(self) -> Spread:
        """echo's CPU per update over balance's, per pair of slices."""
        return Spread(
            [(e.python_cpu / e.updates) / (b.python_cpu / b.updates) for b, e in self._pairs()]
        )


async def compare(
    program: Program,
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    members: int,
    pairs: int,
    cpu: CpuMeter,
) -> Results:
    def real_bot(settings: Settings, bot: Bot) -> Dispatcher:
        return build_dispatcher(Runtime(settings, program, engine, sessions), bot)

    balance, echo = Throughput("balance"), Throughput("echo")
    async with AsyncExitStack() as stack:
        real = await stack.enter_async_context(polling(real_bot, members))
        bare = await stack.enter_async_context(polling(lambda *_: echo_dispatcher(), members))
        warmed = {
            "balance": [await timed_round(real, WARMUP_UPDATES, is_balance)],
            "echo": [await timed_round(bare, WARMUP_UPDATES, is_echo)],
        }
        turns = [(balance, real, is_balance), (echo, bare, is_echo)]
        for pair in range(pairs):
            # Each bot goes first in half the pairs: a drift over the run favours neither.
            for run, bot, looks_right in turns if pair % 2 == 0 else turns[::-1]:
                size = slice_size(run.rounds or warmed[run.name])
                run.rounds.append(await timed_round(bot, size, looks_right, cpu))
        latencies = [
            await round_trips(real, "/balance", "sendMessage"),
            await round_trips(real, "/card", "sendPhoto"),
        ]
    return Results(balance, echo, latencies, cpu)


async def bench(admin: str, members: int, pairs: int) -> tuple[Results, Timings]:
    program = make_program()
    url = await pg.create_database(admin)
    try:
        engine = create_engine(url)  # the pool the bot runs with (bot.runtime.open_runtime)
        try:
            sessions = session_factory(engine)
            await prepare_database(engine, sessions, program, members)
            qr = time_qr(program)
            cpu = CpuMeter(make_url(url).database or "")
            results = await compare(program, engine, sessions, members, pairs, cpu)
        finally:
            await engine.dispose()
    finally:
        await pg.drop_database(admin, url)
    return results, qr


def _median_updates(run: Throughput) -> int:
    return int(statistics.median(r.updates for r in run.rounds))


def report(results: Results, qr: Timings, members: int) -> str:
    balance, echo = results.balance, results.echo
    rows = [
        f"{os.cpu_count()} CPUs shared by PostgreSQL and one Python process (fake Bot API "
        f"servers, bots, load); {members} members; {len(balance.rounds)} pairs of slices of "
        f"about {SLICE_SECONDS:g} s ({_median_updates(balance)} /balance and "
        f"{_median_updates(echo)} echo updates), at most {WINDOW} unanswered",
        results.cpu.summary(),
        f"{'bot':<8} {'updates':>8} {'seconds':>8} {'updates/s':>10} {'slices (least-most)':>20}"
        f" {'py CPU ms/update':>17}",
    ]
    for run in (balance, echo):
        rates = [r.per_second for r in run.rounds]
        per_slice = f"{min(rates):.0f}-{max(rates):.0f}"
        rows.append(
            f"{run.name:<8} {run.updates:>8} {run.seconds:>8.2f} {run.per_second:>10.1f} "
            f"{per_slice:>20} {run.python_cpu_ms:>17.2f}"
        )
    rows.append(f"{'timing':<36} {'n':>4} {'median ms':>10} {'p95 ms':>8}")
    for timing in (qr, *results.latencies):
        rows.append(
            f"{timing.name:<36} {len(timing.ms):>4} {timing.median:>10.2f} {timing.p95:>8.2f}"
        )
    rows.append(f"balance/echo by this process's CPU per update: {results.cpu_ratio}")
    rows.append(f"balance/echo ratio: {results.ratio}")
    return "\n".join(rows)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--pairs", type=int, default=PAIRS, help="slices per bot")
    parser.add_argument("--members", type=int, default=500)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    admin, server = admin_url()
    try:
        results, qr = asyncio.run(bench(admin, args.members, args.pairs))
    finally:
        if server is not None:
            server.cleanup()
    print(report(results, qr, args.members))


if __name__ == "__main__":
    main()
