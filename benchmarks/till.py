"""How many till sales a second the real bot completes with 8 cashiers at work, next to a bare
aiogram bot that answers the same conversation without doing anything.

A sale is the till conversation of tests/test_bot_till.py, end to end over HTTP: the cashier
opens the member's card link (`/start c…`, the token `db.rules.tokens.card_token` makes with the
bot's signing secret, as the phone's camera opens it), waits for the member panel, taps
"🧾 Sale: earn points", waits for the prompt, sends the amount and waits for the "✅" reply.
Its latency runs from queueing the `/start` to the ✅ reaching the fake server: three updates
long-polled, three database transactions, five Bot API calls to the cashier and the member's
notification. 8 cashiers (2 on the staff of each of the 4 partners, hired through the owner's
`/staff_invite`) loop over 200 members registered beforehand, each starting its next sale as
soon as the last one is done (a closed loop: the rate is what the bot sustains, the latency
what a cashier waits at that rate).

Two bots long-poll their own fake Bot API server (tests/fakegram) with the same `Bot`
(bot.app.build_bot) and polling settings, and the same 8 cashier loops drive both:

- till: the dispatcher from `bot.app.build_dispatcher` (middlewares, FSM, the till router)
  on a fresh PostgreSQL database, posting each sale through the ledger.
- echo: a bare `aiogram.Dispatcher` making the same Bot API calls per sale as the till does
  (the panel with its keyboard, the callback answer, the keyboard removed, the prompt, the ✅
  and a message to the member) with no middleware, no state and no database.

The echo is what aiogram, aiohttp, the fake server and the cashier loops cost on this machine
for this conversation, so `till/echo` is the share of that ceiling the bot's own work (SQL
round trips, the ledger, FSM, i18n) leaves; unlike sales/s alone it stays comparable across
machines and load. The rounds alternate between the two bots and each bot's rate is its sales
over its time in all rounds, so a burst of other work on a shared machine hits both. The
table also gives this process's CPU per sale (the bot, the fake server and the cashiers; not
PostgreSQL's), which moves less than the rates when other jobs share the machine.

Afterwards the database must hold exactly one earn transaction per sale counted (warm-up
included), for the amounts sent, by the cashier who made it, and the ledger's invariants
(tests/invariants.py) must hold; every Bot API call must have succeeded.

The cashiers look for the bot's reply by message id (the next message in their chat) rather
than with `UserClient.wait_message`, which copies the whole chat on every server event: with
hundreds of messages per chat that load generator would cost more CPU than the bot.

Run from the repository root: `python -m benchmarks.till [--seconds 15] [--cashiers 8]`.
The server is `BENCH_DATABASE_URL` if set, else the one the tests use (tests/pg.py); the
database is created for the run and dropped at the end. The last lines are
`till sales/s: X.X (median Y ms)` and `till/echo ratio: X.XX`.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import statistics
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from benchmarks.ledger import admin_url, server_version
from bot.app import build_bot, build_dispatcher, signing_secret
from bot.callbacks import TillCb
from bot.config import Settings
from bot.runtime import Runtime
from db.engine import create_engine, session_factory
from db.ledger.models import Staff, Transaction, TxKind
from db.migrate import upgrade
from db.rules.program import Program
from db.rules.tokens import card_token
from db.usecases.members import register_member
from db.usecases.partners import sync_partners
from tests import pg
from tests.botharness import BOT_USERNAME, OWNER_ID, BotHarness
from tests.conftest import make_program
from tests.fakegram import FakeTelegramServer, UserClient, text_of
from tests.invariants import ledger_violations
from tests.till import hire

TOKEN = "4242:BENCH-till"
POLLING_TIMEOUT = 10  # aiogram's default
CASHIERS = 8
MEMBERS = 200
FIRST_MEMBER_ID = 710_000_001
FIRST_CASHIER_ID = 720_000_001
ROUNDS = 3  # per bot, alternating; each round is seconds / ROUNDS long
WARMUP_SECONDS = 2.0  # per bot, untimed: pool connections, prepared statements, keep-alive
STEP_TIMEOUT = 30.0  # seconds a cashier waits for one reply before the run is called failed
EARN = "🧾 Sale: earn points"


# --- measures -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sale:
    cashier: int  # telegram id
    amount: Decimal
    ms: float


@dataclass(slots=True)
class Run:
    """One bot's timed rounds."""

    name: str
    sales: list[Sale] = field(default_factory=list)
    seconds: float = 0.0
    python_cpu: float = 0.0  # seconds of this process's CPU: bot, fake server, cashiers
    per_round: list[float] = field(default_factory=list)

    @property
    def per_second(self) -> float:
        return len(self.sales) / self.seconds

    def percentile(self, p: int) -> float:
        ms = [sale.ms for sale in self.sales]
        return statistics.quantiles(ms, n=100, method="inclusive")[p - 1]


# --- the cashiers ---------------------------------------------------------------------------


class Reply:
    """The bot's next message in a chat, found by message id: in a private chat the user's
    message and the bot's answers share one sequence, and a cashier waits for each answer
    before sending anything else."""

    @staticmethod
    async def after(server: FakeTelegramServer, chat_id: int, message_id: int) -> dict[str, Any]:
        def first_new() -> dict[str, Any] | None:
            next_id = message_id + 1
            while (message := server.message(chat_id, next_id)) is not None:
                if message.get("from", {}).get("is_bot"):
                    return message
                next_id += 1
            return None

        return await server.wait_for(
            first_new, STEP_TIMEOUT, what=f"the bot's reply to message {message_id}"
        )


def expect(message: dict[str, Any], step: str, looks_right: Callable[[str], bool]) -> None:
    if not looks_right(text_of(message)):
        raise SystemExit(f"{step}: the bot answered {text_of(message)!r}")


def earn_button(panel: dict[str, Any]) -> str:
    rows = (panel.get("reply_markup") or {}).get("inline_keyboard") or []
    for button in (b for row in rows for b in row):
        if button.get("text") == EARN:
            return str(button["callback_data"])
    raise SystemExit(f"no {EARN!r} button on the panel: {panel.get('reply_markup')}")


@dataclass(slots=True)
class Cashier:
    user: UserClient
    next_card: Callable[[random.Random], str]  # a fresh card link payload, a random member
    rng: random.Random

    async def sale(self) -> Sale:
        server, chat = self.user.server, self.user.user_id
        cents = self.rng.randint(500, 15_000)
        amount = Decimal(cents) / 100
        started = time.perf_counter()
        scanned = await self.user.send(f"/start {self.next_card(self.rng)}")
        panel = await Reply.after(server, chat, scanned["message_id"])
        expect(panel, "card link", lambda text: "Points can pay up to" in text)
        await self.user.click(panel, earn_button(panel))
        prompt = await Reply.after(server, chat, panel["message_id"])
        expect(prompt, "earn", lambda text: text.startswith("Enter the purchase amount"))
        entered = await self.user.send(f"{amount:.2f}")
        done = await Reply.after(server, chat, entered["message_id"])
        expect(done, "amount", lambda text: text.startswith("✅"))
        return Sale(chat, amount, (time.perf_counter() - started) * 1000)

    async def loop(self, deadline: float) -> list[Sale]:
        sales = []
        while time.perf_counter() < deadline:
            sales.append(await self.sale())
        return sales


async def timed_round(cashiers: list[Cashier], seconds: float) -> tuple[list[Sale], float, float]:
    """Every cashier starts sales until `seconds` have passed and finishes the one under
    way; the round lasts until the last of them is done. Returns the sales, the round's
    seconds and this process's CPU seconds."""
    # The fake server keeps every request and message, a heap a real bot does not have;
    # frozen, the collector's full passes skip it rather than bill it to whichever bot runs.
    gc.collect()
    gc.freeze()
    cpu, started = time.process_time(), time.perf_counter()
    per_cashier = await asyncio.gather(*(c.loop(started + seconds) for c in cashiers))
    sales = [sale for sales in per_cashier for sale in sales]
    return sales, time.perf_counter() - started, time.process_time() - cpu


# --- the bots -------------------------------------------------------------------------------


@dataclass(slots=True)
class Polling:
    server: FakeTelegramServer
    bot: Bot
    dp: Dispatcher
    settings: Settings


@asynccontextmanager
async def polling(
    make_dispatcher: Callable[[Settings, Bot], Dispatcher],
) -> AsyncIterator[Polling]:
    """A bot long-polling its own fake server; the same Bot and polling settings for both."""
    async with FakeTelegramServer(bot_username=BOT_USERNAME) as server:
        settings = Settings(
            bot_token=TOKEN,  # type: ignore[arg-type]
            telegram_api_base=server.base_url,
            # The load's users send far faster than a person: no flood control in the way.
            flood_rate=1e6,
            flood_burst=1e6,
            admin_ids=[OWNER_ID],
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
            yield Polling(server, bot, dp, settings)
        finally:
            await dp.stop_polling()
            await asyncio.wait_for(task, 10)
            await bot.session.close()


ECHO_PANEL = "👤 <b>Echo</b> · Bronze\n💰 50 points (worth PLN0.50)\nPoints can pay up to 50%."
ECHO_PROMPT = (
    "Enter the purchase amount. Type the amount with at most two decimals after a point or a "
    "comma: 12.50 or 12,50 (the currency may follow: 12.50 PLN). A receipt number goes after "
    "#: 12.50 #A-1043"
)


def echo_dispatcher(member_chat: int) -> Dispatcher:
    """The till's Bot API calls with nothing behind them. No filters: aiogram runs a
    synchronous one, such as `F.text`, in a thread."""
    dp = Dispatcher()

    async def on_message(message: Message, bot: Bot) -> None:
        text = message.text or ""
        if text.startswith("/start "):
            data = TillCb(action="earn", dialog="echo").pack()
            await message.answer(
                ECHO_PANEL,
                reply_markup=InlineKeyboardMarkup(
                    inline_keyboard=[[InlineKeyboardButton(text=EARN, callback_data=data)]]
                ),
            )
            return
        await message.answer(f"✅ PLN{text}: +1 points. The member's balance: 51 points.")
        await bot.send_message(member_chat, f"🟢 +1 points for your purchase of PLN{text}.")

    async def on_callback(query: CallbackQuery) -> None:
        await query.answer()
        if isinstance(query.message, Message):
            await query.message.edit_reply_markup(reply_markup=None)
            await query.message.answer(ECHO_PROMPT)

    dp.message.register(on_message)
    dp.callback_query.register(on_callback)
    return dp


# --- the run --------------------------------------------------------------------------------


async def prepare_database(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], program: Program
) -> list[int]:
    """Migrate, sync the partners and register the members; returns their ids."""
    await upgrade(engine)
    async with sessions() as session:
        await sync_partners(session, program)

    async def register(telegram_ids: range) -> list[int]:
        async with sessions() as session:
            return [
                (await register_member(session, program, telegram_id=tid, first_name="M")).id
                for tid in telegram_ids
            ]

    last = FIRST_MEMBER_ID + MEMBERS
    ids = await asyncio.gather(*(register(range(FIRST_MEMBER_ID + i, last, 8)) for i in range(8)))
    return sorted(member for batch in ids for member in batch)


def make_cashiers(
    server: FakeTelegramServer, count: int, next_card: Callable[[random.Random], str]
) -> list[Cashier]:
    cashiers = []
    for i in range(count):
        user = UserClient(server, FIRST_CASHIER_ID + i, first_name=f"Cashier{i}")
        rng = random.Random(f"cashier-{i}")
        cashiers.append(Cashier(user, next_card, rng))
    return cashiers


@dataclass(frozen=True, slots=True)
class Results:
    till: Run
    echo: Run
    warmup_sales: list[Sale]
    failed_calls: int
    calls: dict[str, str]  # per bot


async def compare(
    program: Program,
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    members: list[int],
    cashiers: int,
    seconds: float,
) -> Results:
    def real_bot(settings: Settings, bot: Bot) -> Dispatcher:
        return build_dispatcher(Runtime(settings, program, engine, sessions), bot)

    ttl = timedelta(seconds=program.program.card_ttl_seconds)
    till, echo = Run("till"), Run("echo")
    async with polling(real_bot) as real, polling(lambda *_: echo_dispatcher(members[0])) as bare:
        secret = signing_secret(real.settings)

        def card(rng: random.Random) -> str:
            return card_token(secret, rng.choice(members), datetime.now(UTC) + ttl)

        real_cashiers = make_cashiers(real.server, cashiers, card)
        harness = BotHarness(
            real.server, real.bot, real.dp, Runtime(real.settings, program, engine, sessions)
        )
        for i, cashier in enumerate(real_cashiers):
            partner = program.partners[i % len(program.partners)].slug
            await hire(harness, cashier.user, partner, "cashier")
            cashier.user.mark_all_seen()
        bare_cashiers = make_cashiers(bare.server, cashiers, card)
        first = {real.server: len(real.server.requests), bare.server: 0}

        warmup, *_ = await timed_round(real_cashiers, WARMUP_SECONDS)
        echo_warmup, *_ = await timed_round(bare_cashiers, WARMUP_SECONDS)
        for _round in range(ROUNDS):
            for run, group in ((till, real_cashiers), (echo, bare_cashiers)):
                sales, elapsed, cpu = await timed_round(group, seconds / ROUNDS)
                run.sales.extend(sales)
                run.seconds += elapsed
                run.python_cpu += cpu
                run.per_round.append(len(sales) / elapsed)
        calls = {
            run.name: calls_per_sale(server, first[server], len(done) + len(run.sales))
            for run, server, done in (
                (till, real.server, warmup),
                (echo, bare.server, echo_warmup),
            )
        }
        failed = [
            r
            for server in (real.server, bare.server)
            for r in server.requests
            if r.status not in (0, 200)
        ]
    for r in failed[:5]:
        print(f"failed Bot API call: {r.method}({r.chat_id}) -> {r.status} {r.response}")
    return Results(till, echo, warmup, len(failed), calls)


def calls_per_sale(server: FakeTelegramServer, first: int, sales: int) -> str:
    """The bot's Bot API calls per sale, getUpdates and getMe aside, e.g. "sendMessage 3.0, …"."""
    methods = Counter(
        r.method for r in server.requests[first:] if r.method not in ("getUpdates", "getMe")
    )
    return ", ".join(f"{method} {count / sales:.1f}" for method, count in sorted(methods.items()))


async def check_database(sessions: async_sessionmaker[AsyncSession], sales: list[Sale]) -> str:
    """Exactly one earn per sale counted, for the amounts sent, by the cashier who made it;
    the ledger's invariants hold. Returns a line for the report."""
    async with sessions() as session:
        kinds = dict(
            (
                await session.execute(
                    select(Transaction.kind, func.count()).group_by(Transaction.kind)
                )
            ).all()
        )
        total = await session.scalar(
            select(func.coalesce(func.sum(Transaction.amount), 0)).where(
                Transaction.kind == TxKind.EARN
            )
        )
        by_cashier = Counter(
            dict(
                (
                    await session.execute(
                        select(Staff.telegram_id, func.count())
                        .join(Transaction, Transaction.staff_id == Staff.id)
                        .where(Transaction.kind == TxKind.EARN)
                        .group_by(Staff.telegram_id)
                    )
                ).all()
            )
        )
        await session.rollback()
        violations = await ledger_violations(session)
    earns = kinds.get(TxKind.EARN, 0)
    expected_total = sum((sale.amount for sale in sales), Decimal(0))
    problems = []
    if earns != len(sales):
        problems.append(f"{earns} earn transactions for {len(sales)} sales")
    if Decimal(total or 0) != expected_total:
        problems.append(f"earned on {total} for {expected_total} sent")
    if by_cashier != Counter(sale.cashier for sale in sales):
        problems.append(f"per cashier {dict(by_cashier)}")
    if set(kinds) - {TxKind.EARN, TxKind.WELCOME}:
        problems.append(f"other postings: {kinds}")
    if violations:
        problems.append(f"ledger invariants broken: {violations}")
    if problems:
        raise SystemExit("database check failed: " + "; ".join(problems))
    return (
        f"database: {earns} earn transactions = {len(sales)} sales (warm-up included), "
        f"PLN{total} as sent, per cashier as counted; ledger invariants hold"
    )


async def bench(admin: str, cashiers: int, seconds: float) -> tuple[Results, str]:
    program = make_program()
    url = await pg.create_database(admin)
    try:
        engine = create_engine(url)  # the pool the bot runs with (bot.runtime.open_runtime)
        try:
            sessions = session_factory(engine)
            members = await prepare_database(engine, sessions, program)
            results = await compare(program, engine, sessions, members, cashiers, seconds)
            checked = await check_database(sessions, results.warmup_sales + results.till.sales)
        finally:
            await engine.dispose()
    finally:
        await pg.drop_database(admin, url)
    if results.failed_calls:
        raise SystemExit(f"{results.failed_calls} Bot API calls failed")
    return results, checked


def report(results: Results, checked: str, cashiers: int) -> str:
    till, echo = results.till, results.echo
    rows = [
        f"{'bot':<6} {'cashiers':>8} {'sales':>6} {'seconds':>8} {'sales/s':>8}  "
        f"{'per round':<18} {'p50 ms':>7} {'p95 ms':>7} {'py CPU ms/sale':>14}"
    ]
    for run in (till, echo):
        per_round = " ".join(f"{rate:.1f}" for rate in run.per_round)
        rows.append(
            f"{run.name:<6} {cashiers:>8} {len(run.sales):>6} {run.seconds:>8.2f} "
            f"{run.per_second:>8.1f}  {per_round:<18} {run.percentile(50):>7.0f} "
            f"{run.percentile(95):>7.0f} {run.python_cpu / len(run.sales) * 1000:>14.1f}"
        )
    for name, calls in results.calls.items():
        rows.append(f"{name} Bot API calls per sale: {calls}")
    rows.append(checked)
    rows.append(f"till sales/s: {till.per_second:.1f} (median {till.percentile(50):.0f} ms)")
    rows.append(f"till/echo ratio: {till.per_second / echo.per_second:.2f}")
    return "\n".join(rows)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=15.0, help="per bot, in all rounds")
    parser.add_argument("--cashiers", type=int, default=CASHIERS)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    admin, server = admin_url()
    try:
        version = asyncio.run(server_version(admin))
        load_before = os.getloadavg()[0]
        results, checked = asyncio.run(bench(admin, args.cashiers, args.seconds))
        load_after = os.getloadavg()[0]
    finally:
        if server is not None:
            server.cleanup()
    print(
        f"{os.cpu_count()} CPUs shared by PostgreSQL and one Python process (fake Bot API "
        f"servers, bots, cashiers) (load average {load_before:.2f} before, {load_after:.2f} "
        f"after); {version}; {MEMBERS} members; {ROUNDS} alternating rounds per bot, "
        f"{args.seconds:.0f} s in all, after {WARMUP_SECONDS:.0f} s of warm-up"
    )
    print(report(results, checked, args.cashiers))


if __name__ == "__main__":
    main()
