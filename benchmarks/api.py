"""How many sales a second 8 tills post through the partner API, next to the same sales
posted directly through the use case the API calls, in the same run.

A sale through the API is `POST /api/v1/sales` over HTTP to the bot's own web app
(bot/workers/web.py with bot/api mounted, on a local port): the key checked, its rate, the
Idempotency-Key claimed, the sale posted (db/usecases/partner_api.py `api_sale`: the
member looked up by card number, then db/usecases/api/sales.py `post_sale`, the one sale
path: the document's row, the member's discount, the ledger's posting), the answer kept for
retries, the call audited. A direct sale is `api_sale` itself with the same key's actor, in
a session of its own: the ledger's and the use case's work without HTTP, FastAPI, the key,
the Idempotency-Key or the call's audit row. So `api/direct` is the share of the use case's
rate the API layer leaves.

8 tills (2 keys of each of the 4 partners) loop over 200 members, each posting its next sale
as soon as the last is answered (a closed loop: the rate is what is sustained, the latency
what a till waits at that rate); every sale has a new document number and amount. Rounds
alternate between the two ways, and each way's rate is its sales over its time in all rounds,
so a burst of other work on a shared machine hits both. Latency runs from sending the
request to reading the answer (API) or from calling the use case to its return (direct).

Afterwards the database must hold exactly one earn transaction per sale counted (warm-up
included), for the amounts sent, and the ledger's invariants must hold.

Run from the repository root: `python -m benchmarks.api [--seconds 12] [--tills 8]`. The
server is `BENCH_DATABASE_URL` if set, else the one the tests use (tests/pg.py); the
database is created for the run and dropped at the end. The last lines are
`api sales/s: X.X (p50 Y ms, p95 Z ms)` and `api/direct ratio: X.XX`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from aiohttp import ClientSession, TCPConnector, web
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from benchmarks.ledger import admin_url, server_version
from bot.api.app import build_api
from bot.api.context import ApiContext
from bot.api.ratelimit import LocalBuckets
from bot.workers.web import build_web_app
from db.engine import create_engine, session_factory
from db.ledger.models import Transaction
from db.migrate import upgrade
from db.rules.program import Program
from db.rules.tokens import derive_secret
from db.usecases.api.actor import ApiActor
from db.usecases.api_keys import authenticate, create_key
from db.usecases.members import register_member
from db.usecases.partner_api import api_sale
from db.usecases.partners import sync_partners
from tests import pg
from tests.conftest import make_program
from tests.invariants import assert_ledger_invariants

TILLS = 8
MEMBERS = 200
ROUNDS = 4
WARMUP_SECONDS = 2.0
SECRET = derive_secret("4242:BENCH-token")


@dataclass(slots=True)
class Run:
    name: str
    ms: list[float] = field(default_factory=list)
    amounts: list[Decimal] = field(default_factory=list)
    seconds: float = 0.0
    cpu: float = 0.0  # seconds of this process's CPU (server, tills; not PostgreSQL's)

    @property
    def per_second(self) -> float:
        return len(self.ms) / self.seconds

    def percentile(self, p: int) -> float:
        return statistics.quantiles(self.ms, n=100, method="inclusive")[p - 1]


@dataclass(slots=True)
class Till:
    number: int
    key: str
    actor: ApiActor
    rng: random.Random
    sent: int = 0

    def next_sale(self, cards: list[str]) -> tuple[str, Decimal, str]:
        self.sent += 1
        amount = Decimal(self.rng.randrange(500, 5000)) / 100
        return self.rng.choice(cards), amount, f"T{self.number}-{self.sent}"


Post = Callable[[Till, str, Decimal, str], Awaitable[None]]


async def timed(tills: list[Till], cards: list[str], post: Post, seconds: float, run: Run) -> None:
    deadline = time.perf_counter() + seconds

    async def loop(till: Till) -> None:
        while time.perf_counter() < deadline:
            card, amount, document = till.next_sale(cards)
            started = time.perf_counter()
            await post(till, card, amount, document)
            run.ms.append((time.perf_counter() - started) * 1000)
            run.amounts.append(amount)

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(loop(till) for till in tills))
    run.seconds += time.perf_counter() - started
    run.cpu += time.process_time() - cpu


async def prepare(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], program: Program, count: int
) -> tuple[list[str], list[Till]]:
    await upgrade(engine)
    async with sessions() as s:
        await sync_partners(s, program)
    cards = []
    async with sessions() as s:
        for n in range(MEMBERS):
            member = await register_member(s, program, telegram_id=10_000 + n, first_name="M")
            cards.append(member.card_number)
    tills = []
    partners = [p.slug for p in program.partners]
    for n in range(count):
        async with sessions() as s:
            _info, key = await create_key(
                s,
                actor=1,
                owners=[1],
                staff=None,
                partner_slug=partners[n % len(partners)],
                scopes=["sales", "read"],
                op=f"bench-{n}",
            )
            assert key is not None
            actor = await authenticate(s, key)
        tills.append(Till(n, key, actor, random.Random(f"till-{n}")))
    return cards, tills


async def compare(
    program: Program,
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    count: int,
    seconds: float,
) -> tuple[Run, Run, Run]:
    cards, tills = await prepare(engine, sessions, program, count)
    context = ApiContext(
        sessions=sessions,
        program=program,
        secret=SECRET,
        limiter=LocalBuckets(rate=10_000, burst=10_000),
    )
    runner = web.AppRunner(build_web_app(engine, api=build_api(context)), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    base = f"http://{host}:{port}/api/v1/sales"
    async with ClientSession(connector=TCPConnector(limit=count)) as http:

        async def through_api(till: Till, card: str, amount: Decimal, document: str) -> None:
            body = {"member": {"card_number": card}, "amount": str(amount), "document": document}
            headers = {"Authorization": f"Bearer {till.key}", "Idempotency-Key": document}
            async with http.post(base, json=body, headers=headers) as response:
                await response.read()
                if response.status != 201:
                    raise SystemExit(f"{document}: {response.status} {await response.text()}")

        async def direct(till: Till, card: str, amount: Decimal, document: str) -> None:
            async with sessions() as s:
                await api_sale(
                    s,
                    program,
                    till.actor,
                    secret=SECRET,
                    card_number=card,
                    amount=amount,
                    document=document,
                    discount_percent=None,
                    now=datetime.now(UTC),
                )

        warmup = Run("warm-up")
        await timed(tills, cards, through_api, WARMUP_SECONDS / 2, warmup)
        await timed(tills, cards, direct, WARMUP_SECONDS / 2, warmup)
        api, use_case = Run("api"), Run("direct")
        for _round in range(ROUNDS):
            await timed(tills, cards, through_api, seconds / ROUNDS, api)
            await timed(tills, cards, direct, seconds / ROUNDS, use_case)
    await runner.cleanup()
    return api, use_case, warmup


async def check(sessions: async_sessionmaker[AsyncSession], runs: list[Run]) -> str:
    counted = sum(len(run.ms) for run in runs)
    total = sum((sum(run.amounts, Decimal(0)) for run in runs), Decimal(0))
    async with sessions() as s:
        earns, amount = (
            await s.execute(
                select(func.count(), func.coalesce(func.sum(Transaction.amount), 0)).where(
                    Transaction.kind == "earn"
                )
            )
        ).one()
        await assert_ledger_invariants(s)
    if earns != counted or amount != total:
        raise SystemExit(f"database: {earns} earns for PLN{amount}; sent {counted} for {total}")
    return (
        f"database: {earns} earn transactions = sales counted, PLN{total} as sent; invariants hold"
    )


async def bench(admin: str, count: int, seconds: float) -> tuple[Run, Run, str]:
    program = make_program()
    url = await pg.create_database(admin)
    try:
        engine = create_engine(url)  # the pool the bot runs with (bot.runtime.open_runtime)
        try:
            sessions = session_factory(engine)
            api, direct, warmup = await compare(program, engine, sessions, count, seconds)
            checked = await check(sessions, [api, direct, warmup])
        finally:
            await engine.dispose()
    finally:
        await pg.drop_database(admin, url)
    return api, direct, checked


def report(api: Run, direct: Run, checked: str, tills: int) -> str:
    head = ("way", "tills", "sales", "seconds", "sales/s", "p50 ms", "p95 ms", "py CPU ms/sale")
    rows = ["{:<7} {:>5} {:>6} {:>8} {:>8} {:>7} {:>7} {:>14}".format(*head)]
    for run in (api, direct):
        rows.append(
            f"{run.name:<7} {tills:>5} {len(run.ms):>6} {run.seconds:>8.2f} "
            f"{run.per_second:>8.1f} {run.percentile(50):>7.1f} {run.percentile(95):>7.1f} "
            f"{run.cpu / len(run.ms) * 1000:>14.2f}"
        )
    rows.append(checked)
    rows.append(
        f"api sales/s: {api.per_second:.1f} (p50 {api.percentile(50):.0f} ms, "
        f"p95 {api.percentile(95):.0f} ms, mean {statistics.fmean(api.ms):.0f} ms)"
    )
    rows.append(f"api/direct ratio: {api.per_second / direct.per_second:.2f}")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=12.0, help="per way, in all rounds")
    parser.add_argument("--tills", type=int, default=TILLS)
    args = parser.parse_args()
    admin, server = admin_url()
    try:
        version = asyncio.run(server_version(admin))
        load_before = os.getloadavg()[0]
        api, direct, checked = asyncio.run(bench(admin, args.tills, args.seconds))
        load_after = os.getloadavg()[0]
    finally:
        if server is not None:
            server.cleanup()
    print(
        f"{os.cpu_count()} CPUs shared by PostgreSQL and one Python process (the API server, "
        f"the tills and the direct calls) (load average {load_before:.2f} before, "
        f"{load_after:.2f} after); {version}; {MEMBERS} members; {ROUNDS} alternating rounds "
        f"per way, {args.seconds:.0f} s in all, after {WARMUP_SECONDS:.0f} s of warm-up"
    )
    print(report(api, direct, checked, args.tills))


if __name__ == "__main__":
    main()
