"""How long `python -m bot simulate` takes on a year of a busy coalition.

Builds the data of benchmarks/stats.py (100,000 members, 1,000,000 transactions with their
entries over the last year, written with set-based SQL, the ledger's invariants checked),
and club memberships (one member in five paid for one to five months in a row, somewhere in
the year), then replays the whole year through a proposed program with promotions (a
weekend-morning multiplier split between two partners, with max_per_member; a
first-purchase-here bonus the program funds; another earn_percent) and a club (×1.5, 5 %
off, a bonus for members at the bookshop) and times it, against a baseline run in the same
process: the same rows read through the same cursors with no rule evaluated. It reports
rows/s, the process's peak memory before and after (resource.getrusage), and whether the
answer came within 10 s. The last line is

    simulate/read ratio: X.XX      (the simulation's time / the bare read's)

Run from the repository root, under the machine's benchmark lock:
`flock /work/bench.lock python -m benchmarks.simulate` (the server as benchmarks.stats
chooses it; the database is created for the run and dropped at the end).
"""

from __future__ import annotations

import asyncio
import resource
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from benchmarks.ledger import admin_url, server_version
from benchmarks.stats import check_ledger, describe, generate, load_average
from db.engine import create_engine, session_factory
from db.migrate import upgrade
from db.queries.simulate import _EVENTS, _MEMBERS, BATCH, read_only, simulate
from db.rules.program import Program, parse_program
from db.rules.simulation import history_start
from db.usecases.partners import sync_partners
from tests import pg
from tests.conftest import TEST_PROGRAM, make_program

TARGET_SECONDS = 10.0
RUNS = 3


def proposal() -> Program:
    partners = [
        {**p, "earn_percent": "6"} if p["slug"] == "coffee" else p
        for p in TEST_PROGRAM["partners"]
    ]
    return parse_program(
        {
            **TEST_PROGRAM,
            "partners": partners,
            "promotions": [
                {
                    "slug": "bakery-weekend",
                    "title": "Double points at the bakery on weekend mornings",
                    "partners": ["bakery"],
                    "when": {"weekdays": ["sat", "sun"], "hours": "07:00-11:00"},
                    "effect": {"multiplier": "2"},
                    "funded_by": {"bakery": 50, "coffee": 50},
                    "max_per_member": 3,
                },
                {
                    "slug": "new-here",
                    "title": "100 points for a first purchase here",
                    "who": {"first_at_partner": True},
                    "effect": {"bonus_points": 100},
                    "funded_by": "program",
                },
                {
                    "slug": "big-books",
                    "title": "50 points on 100.00 or more at the bookshop",
                    "partners": ["books"],
                    "min_purchase": "100.00",
                    "effect": {"bonus_points": 50},
                },
                {
                    "slug": "club-books",
                    "title": "Club members: 100 points on a book over 30.00",
                    "partners": ["books"],
                    "who": {"club": True},
                    "min_purchase": "30.00",
                    "effect": {"bonus_points": 100},
                    "funded_by": "program",
                },
            ],
            "club": {
                "name": "City Club",
                "stars_per_month": 250,
                "multiplier": "1.5",
                "discount_percent": "5",
            },
        }
    )


# One member in five (not deleted) paid for one to five months in a row, from a day spread
# over the year; their memberships end with their last month.
CLUB_DATA = (
    """
    INSERT INTO club_payments (charge_id, member_id, method, currency, amount, joined,
                               period_from, period_until, created_at)
    SELECT 'bench:' || m.id || ':' || k, m.id, 'stars', 'XTR', 250, k = 0,
           f + interval '30 days' * k, f + interval '30 days' * (k + 1),
           f + interval '30 days' * k
    FROM members AS m,
         LATERAL (SELECT $1::timestamptz - interval '360 days'
                         + interval '1 day' * (m.id * 7919 % 330) AS f) AS first,
         LATERAL generate_series(0, m.id / 5 % 5) AS k
    WHERE m.id % 5 = 0 AND m.deleted_at IS NULL
    """,
    """
    INSERT INTO club_memberships (member_id, joined_at, started_at, ends_at)
    SELECT member_id, min(period_from), min(period_from), max(period_until)
    FROM club_payments GROUP BY member_id
    """,
    "ANALYZE club_payments",
)


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def bare_read(session: Any, program: Program, start: datetime, end: datetime) -> int:
    """The simulation's reading alone: both cursors, every row fetched, nothing evaluated."""
    conn = await session.connection()
    pg_conn: Any = (await conn.get_raw_connection()).driver_connection
    since = history_start(start, program)
    members = await pg_conn.cursor(_MEMBERS, start, end, since, program.program.timezone)
    events = await pg_conn.cursor(_EVENTS, start, end, since)
    rows = 0
    while batch := await events.fetch(BATCH):
        rows += len(batch)
    while batch := await members.fetch(BATCH):
        pass
    return rows


async def bench(url: str) -> tuple[float, float]:
    current, proposed = make_program(), proposal()
    now = datetime.now(UTC).replace(microsecond=0)
    engine = create_engine(url, pool_size=2)
    try:
        await upgrade(engine)
        sessions = session_factory(engine)
        async with sessions() as session:
            await sync_partners(session, current)
            await session.commit()
        conn = await asyncpg.connect(url)
        try:
            print("building the data:", flush=True)
            started = time.perf_counter()
            await generate(conn, now)
            for statement in CLUB_DATA:
                await conn.execute(statement, *([now] if "$1" in statement else []))
            print(f"  built in {time.perf_counter() - started:.0f} s", flush=True)
            await check_ledger(conn)
            print(await describe(conn))
            club = await conn.fetchrow(
                "SELECT count(*) AS n, count(DISTINCT member_id) AS members FROM club_payments"
            )
            print(f"club: {club['n']:,} months paid by {club['members']:,} members")
        finally:
            await conn.close()
        start, end = now - timedelta(days=366), now + timedelta(minutes=1)
        print(f"load average before timing: {load_average()}")

        async def read() -> int:
            async with sessions() as session:
                await read_only(session)
                return await bare_read(session, proposed, start, end)

        async def replay() -> Any:
            async with sessions() as session:
                await read_only(session)
                return await simulate(session, proposed, current, start=start, end=end)

        reads, sims = [], []
        rows, result = 0, None
        rss_before = peak_mb()
        for _ in range(RUNS):  # alternating, so a busy moment of the machine hits both
            began = time.perf_counter()
            rows = await read()
            reads.append(time.perf_counter() - began)
            began = time.perf_counter()
            result = await replay()
            sims.append(time.perf_counter() - began)
        assert result is not None
        read_s, sim_s = sorted(reads)[RUNS // 2], sorted(sims)[RUNS // 2]
        print(f"load average after timing: {load_average()}")
        print(
            f"rows streamed: {rows:,} (the period's {result.sales:,} sales of "
            f"{result.members:,} members, {result.refunds:,} of their refunds, and the year "
            "before the period's start that their tiers depend on)"
        )
        print(f"bare read: median {read_s:.2f} s, {rows / read_s:,.0f} rows/s")
        print(f"simulation: median {sim_s:.2f} s, {rows / sim_s:,.0f} rows/s")
        print(
            f"peak memory of the process: {rss_before:.0f} MB before timing, "
            f"{peak_mb():.0f} MB after"
        )
        print(
            f"points: actual {result.actual_points:,}, simulated {result.simulated_points:,}; "
            + ", ".join(f"{p.slug} {p.points:,} ({p.sales:,} sales)" for p in result.promotions)
        )
        verdict = "under" if sim_s < TARGET_SECONDS else "OVER"
        print(f"answered {verdict} {TARGET_SECONDS:.0f} s ({sim_s:.2f} s)")
        return sim_s, read_s
    finally:
        await engine.dispose()


async def run(admin: str) -> tuple[float, float]:
    print(await server_version(admin))
    url = await pg.create_database(admin)
    try:
        return await bench(url)
    finally:
        await pg.drop_database(admin, url)


def main() -> None:
    admin, server = admin_url()  # may start an embedded server: outside the event loop
    try:
        sim_s, read_s = asyncio.run(run(admin))
    finally:
        if server is not None:
            server.cleanup()
    print(f"simulate/read ratio: {sim_s / read_s:.2f}")


if __name__ == "__main__":
    main()
