"""How long /stats takes to compute on a year of a busy coalition.

Builds a fresh database with 100,000 members and 1,000,000 transactions (with their
entries) spread over the last year at 4 partners, then times `db.queries.stats.kpis` for the
coalition and for one partner over the last 30 and the last 365 days (median of 3 runs
each). The target is 2 s for the worst of the four; the last line is

    stats/target ratio: X.XX      (2.0 s / the worst median; 1.00 or more meets the target)

The data is written with set-based SQL (INSERT … SELECT generate_series), not through the
use cases, which would take hours, but it keeps the ledger's rules: every transaction's
entries sum to zero, every balance equals the sum of its entries, no wallet is negative,
the point lots hold exactly each wallet's balance. The benchmark checks all of that (the
SQL of tests/invariants.py) before timing anything.

Run from the repository root: `python -m benchmarks.stats`. The server is
`BENCH_DATABASE_URL` if set, else the one the tests use (see tests/pg.py); the database is
created for the run and dropped at the end. Writing with the triggers off needs a superuser.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg

from benchmarks.ledger import admin_url, server_version
from db.engine import create_engine, session_factory
from db.migrate import upgrade
from db.queries.settlement import settlement
from db.queries.stats import Kpis, Period, coalition_report, kpis, parse_period
from db.usecases.partners import sync_partners
from tests import pg
from tests.conftest import make_program
from tests.invariants import CHECKS

MEMBERS = 100_000
TRANSACTIONS = 1_000_000
SALES = 860_000  # then refunds, referral rewards, expiries, and more sales up to the total
REFUND_EVERY = 43  # every 43rd sale is refunded in full: about 20,000 refunds
RUNS = 3
TARGET_SECONDS = 2.0
PARTNER = "coffee"

# The indexes the KPI queries' plans use (name: what for), all from earlier migrations; the
# benchmark checks they exist. None was added for /stats: covering versions of the first,
# fourth and fifth (INCLUDE the columns the queries read) were measured on this data, took
# three times the space and gained nothing measurable on the worst case, a year of the
# coalition, whose cost is hashing about a million rows, not finding them.
INDEXES = {
    "ix_transactions_created_at": "a period's transactions: its id span, the daily series",
    "ix_transactions_partner_created": "one partner's transactions: money, long daily series",
    "ix_transactions_member_created": "invited members' referral rewards",
    "ix_entries_transaction_id": "entries of a short period, by transaction id span",
    "ix_entries_account_id": "entries of the partner accounts, for long periods",
    "pk_transactions": "the sale behind a referral reward",
    "pk_accounts": "the partner accounts of the points",
}


# --- the data ---------------------------------------------------------------------------------


class Writer:
    """Runs the generating statements on one connection, with `{now}` and friends filled in,
    and says how long each step took."""

    def __init__(self, conn: asyncpg.Connection, now: datetime) -> None:
        self.conn = conn
        self.values = {"now": f"TIMESTAMPTZ '{now.isoformat()}'", "members": MEMBERS}

    async def step(self, what: str, *statements: str, **values: object) -> None:
        started = time.perf_counter()
        for statement in statements:
            await self.conn.execute(statement.format(**self.values, **values))
        print(f"  {what}: {time.perf_counter() - started:.1f} s", flush=True)

    async def next_key(self) -> int:
        return int(await self.conn.fetchval("SELECT coalesce(max(k), 0) + 1 FROM plan"))


# Sales: a random member and partner, at a random time after the member joined (within the
# year, and before a deleted member left); 5.00 to 150.00; every 5th pays part with points,
# at most half of what the purchase alone would earn, so that no wallet can go below zero.
SALES_SQL = """
    INSERT INTO plan (k, kind, member_id, partner_id, amount, paid, redeemed, earned,
                      created_at)
    WITH drawn AS (
        SELECT {first} + g AS k, 1 + floor(random() * {members})::bigint AS member_id,
               1 + floor(random() * 4)::int AS n,
               round((5 + random() * 145)::numeric, 2) AS amount,
               random() AS at, random() AS share, g % 5 = 0 AS with_points
        FROM generate_series(0, {count} - 1) AS g
    ), priced AS (
        SELECT d.*, p.partner_id, p.earn_percent,
               CASE WHEN d.with_points
                    THEN least(floor(d.amount * p.earn_percent / 2), 10 + floor(d.share * 90))
                    ELSE 0 END::bigint AS redeemed,
               greatest(m.joined_at, {now} - interval '365 days') AS since,
               coalesce(m.deleted_at, {now}) AS until
        FROM drawn AS d
        JOIN partner_accounts AS p ON p.n = d.n
        JOIN members AS m ON m.id = d.member_id
    )
    SELECT k, CASE WHEN redeemed > 0 THEN 'redeem' ELSE 'earn' END, member_id, partner_id,
           amount, amount - redeemed / 100.0, redeemed,
           floor((amount - redeemed / 100.0) * earn_percent)::bigint,
           since + (until - since) * at
    FROM priced
"""


async def generate(conn: asyncpg.Connection, now: datetime) -> None:
    """Plan every transaction in a temporary table first, then write `transactions` and
    `entries` in time order, ids rising with `created_at`, as the bot writes them (so a
    period's rows sit together on disk, as they would)."""
    w = Writer(conn, now)
    # This session only: the ledger's triggers (and foreign-key checks) are off. The entries
    # trigger updates balances row by row, which takes hours for millions of entries; the
    # balances are set below with one UPDATE from the sums of the entries instead, and the
    # invariants are checked afterwards, so the result is what the triggers would give.
    await w.step("triggers off", "SET session_replication_role = replica", "SELECT setseed(0.42)")
    await w.step(
        "members and wallets",
        # 30 % joined before the year, the others through it; every 7th was invited by an
        # earlier member; every 100th deleted their account yesterday.
        """
        INSERT INTO members (id, telegram_id, card_number, first_name, language, tier,
                             rules_accepted_at, marketing_consent, referred_by_id, reachable,
                             joined_at, deleted_at)
        SELECT g, CASE WHEN g % 100 <> 7 THEN 1000000000 + g END, lpad(g::text, 12, '0'),
               'Member ' || g, 'en', 'Bronze', j, g % 3 = 0,
               CASE WHEN g % 7 = 0 THEN g / 2 END, g % 100 <> 7, j,
               CASE WHEN g % 100 = 7 THEN {now} - interval '1 day' END
        FROM generate_series(1, {members}) AS g,
             LATERAL (SELECT {now} - interval '540 days' + interval '539 days' * g / {members}
                      AS j) AS joined
        """,
        "INSERT INTO accounts (kind, member_id) SELECT 'member', id FROM members ORDER BY id",
        """
        CREATE TEMP TABLE partner_accounts AS
        SELECT p.id AS partner_id, p.earn_percent, i.id AS issued_id, r.id AS redeemed_id,
               row_number() OVER (ORDER BY p.id) AS n
        FROM partners AS p
        JOIN accounts AS i ON i.partner_id = p.id AND i.kind = 'partner_issued'
        JOIN accounts AS r ON r.partner_id = p.id AND r.kind = 'partner_redeemed'
        """,
        # `k` is a planning key; the transaction ids come from the time order at the end.
        """
        CREATE TEMP TABLE plan (
            k bigint PRIMARY KEY, kind text, member_id bigint, partner_id bigint,
            amount numeric, paid numeric, redeemed bigint, earned bigint, reverses_k bigint,
            related_k bigint, inviter_id bigint, created_at timestamptz)
        """,
        # Welcome points on joining.
        """
        INSERT INTO plan (k, kind, member_id, created_at)
        SELECT id, 'welcome', id, joined_at FROM members
        """,
    )
    await w.step("sales", SALES_SQL, first=await w.next_key(), count=SALES)
    await w.step(
        "refunds",
        # In full, up to a week after the sale, never in the future.
        """
        INSERT INTO plan (k, kind, member_id, partner_id, amount, paid, redeemed, earned,
                          reverses_k, created_at)
        SELECT {first} - 1 + row_number() OVER (ORDER BY k), 'reverse', member_id,
               partner_id, amount, paid, redeemed, earned, k,
               least(created_at + interval '7 days' * random(), {now} - interval '1 minute')
        FROM plan WHERE kind IN ('earn', 'redeem') AND k % {every} = 0
        """,
        first=await w.next_key(),
        every=REFUND_EVERY,
    )
    await w.step(
        "referral rewards",
        # On an invited member's first purchase of 20.00 or more: 200 + 100 points.
        """
        INSERT INTO plan (k, kind, member_id, inviter_id, related_k, created_at)
        SELECT {first} - 1 + row_number() OVER (ORDER BY f.member_id), 'referral',
               f.member_id, m.referred_by_id, f.k, f.created_at
        FROM (SELECT DISTINCT ON (member_id) member_id, k, created_at
              FROM plan WHERE kind IN ('earn', 'redeem') AND amount >= 20
              ORDER BY member_id, created_at) AS f
        JOIN members AS m ON m.id = f.member_id
        WHERE m.referred_by_id IS NOT NULL
        """,
        first=await w.next_key(),
    )
    await w.step(
        "expiries",
        # The welcome points of some of those who joined before the year, a year later.
        """
        INSERT INTO plan (k, kind, member_id, created_at)
        SELECT {first} - 1 + row_number() OVER (ORDER BY id), 'expire', id,
               joined_at + interval '365 days'
        FROM members WHERE joined_at < {now} - interval '365 days' AND id % 7 = 3
        """,
        first=await w.next_key(),
    )
    more = TRANSACTIONS - int(await conn.fetchval("SELECT count(*) FROM plan"))
    await w.step(f"{more:,} more sales", SALES_SQL, first=await w.next_key(), count=more)
    await w.step(
        "transactions",
        """
        CREATE TEMP TABLE numbered AS
        SELECT p.*, row_number() OVER (ORDER BY p.created_at, p.k) AS id FROM plan AS p
        """,
        "CREATE INDEX ON numbered (k)",
        """
        INSERT INTO transactions (id, kind, idempotency_key, fingerprint, member_id,
                                  partner_id, amount, paid, reason, reverses_id, related_id,
                                  created_at)
        SELECT n.id, n.kind, n.kind || ':' || n.k, 'bench', n.member_id, n.partner_id,
               n.amount, n.paid, CASE WHEN n.kind = 'reverse' THEN 'returned' END, r.id, s.id,
               n.created_at
        FROM numbered AS n
        LEFT JOIN numbered AS r ON r.k = n.reverses_k
        LEFT JOIN numbered AS s ON s.k = n.related_k
        ORDER BY n.id
        """,
    )
    await w.step(
        "entries",
        # Up to four legs per transaction, each summing to zero:
        #   welcome  program −50, wallet +50
        #   sale     wallet −redeemed, redeemed account +redeemed,
        #            issued account −earned, wallet +earned
        #   refund   the sale's legs reversed
        #   referral program −300, invitee +100, inviter +200
        #   expire   wallet −50, breakage +50
        """
        INSERT INTO entries (transaction_id, account_id, amount)
        SELECT n.id, x.account_id, x.amount
        FROM numbered AS n
        JOIN accounts AS w ON w.member_id = n.member_id AND w.kind = 'member'
        LEFT JOIN partner_accounts AS p ON p.partner_id = n.partner_id
        LEFT JOIN accounts AS i ON i.member_id = n.inviter_id AND i.kind = 'member'
        CROSS JOIN (SELECT (SELECT id FROM accounts WHERE kind = 'program') AS program,
                           (SELECT id FROM accounts WHERE kind = 'breakage') AS breakage)
            AS sys
        CROSS JOIN LATERAL (VALUES
            (CASE n.kind WHEN 'welcome' THEN sys.program WHEN 'reverse' THEN p.redeemed_id
                         WHEN 'referral' THEN sys.program ELSE w.id END,
             CASE n.kind WHEN 'welcome' THEN -50 WHEN 'referral' THEN -300
                         WHEN 'expire' THEN -50 ELSE -n.redeemed END),
            (CASE n.kind WHEN 'earn' THEN p.redeemed_id WHEN 'redeem' THEN p.redeemed_id
                         WHEN 'expire' THEN sys.breakage ELSE w.id END,
             CASE n.kind WHEN 'welcome' THEN 50 WHEN 'referral' THEN 100
                         WHEN 'expire' THEN 50 ELSE n.redeemed END),
            (CASE n.kind WHEN 'reverse' THEN w.id WHEN 'referral' THEN i.id
                         ELSE p.issued_id END,
             CASE n.kind WHEN 'referral' THEN 200 ELSE -n.earned END),
            (CASE n.kind WHEN 'reverse' THEN p.issued_id ELSE w.id END, n.earned)
        ) AS x (account_id, amount)
        WHERE x.account_id IS NOT NULL AND x.amount IS NOT NULL AND x.amount <> 0
        ORDER BY n.id
        """,
    )
    await w.step(
        "balances, lots and sequences",
        # What the entries trigger would have done, in one statement: the balances it keeps
        # (AccountKind.KEPT; the others are the sums of their entries).
        """
        UPDATE accounts AS a SET balance = e.total
        FROM (SELECT account_id, sum(amount) AS total FROM entries GROUP BY account_id) AS e
        WHERE a.id = e.account_id AND a.kind IN ('member', 'stamps')
        """,
        # One lot per wallet holding its balance (its origin: the member's welcome).
        """
        INSERT INTO point_lots (member_id, transaction_id, points, remaining, earned_at,
                                expires_at)
        SELECT a.member_id, t.id, a.balance, a.balance, {now}, {now} + interval '365 days'
        FROM accounts AS a
        JOIN transactions AS t ON t.member_id = a.member_id AND t.kind = 'welcome'
        WHERE a.kind = 'member' AND a.balance > 0
        """,
        *(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), max(id)) FROM {table}"
            for table in ("members", "accounts", "transactions", "entries", "point_lots")
        ),
        "SET session_replication_role = origin",
    )
    # What autovacuum does for tables that grew: statistics and the visibility map.
    await w.step("vacuum analyze", "VACUUM ANALYZE")


async def check_ledger(conn: asyncpg.Connection) -> None:
    """The invariants of tests/invariants.py. Counted, not `EXISTS`: that would make the
    planner choose plans for finding one row fast, which take minutes at this size."""
    for rule, sql in CHECKS.items():
        if await conn.fetchval(f"SELECT count(*) FROM ({sql}) AS broken"):
            raise SystemExit(f"the generated ledger breaks: {rule}")


async def describe(conn: asyncpg.Connection) -> str:
    counts = await conn.fetch(
        "SELECT kind, count(*) AS n FROM transactions GROUP BY kind ORDER BY count(*) DESC"
    )
    entries = await conn.fetchval("SELECT count(*) FROM entries")
    members = await conn.fetchval("SELECT count(*) FROM members")
    total = sum(r["n"] for r in counts)
    kinds = ", ".join(f"{r['kind']} {r['n']:,}" for r in counts)
    return f"{members:,} members, {total:,} transactions ({kinds}), {entries:,} entries"


async def missing_indexes(conn: asyncpg.Connection) -> list[str]:
    present = {r["indexname"] for r in await conn.fetch("SELECT indexname FROM pg_indexes")}
    return [name for name in INDEXES if name not in present]


# --- the timing -------------------------------------------------------------------------------


async def median_seconds(run: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(RUNS):
        started = time.perf_counter()
        result = await run()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def load_average() -> str:
    """The machine's 1, 5 and 15-minute load: timings on a busy machine are longer."""
    try:
        with open("/proc/loadavg") as fp:
            return " ".join(fp.read().split()[:3]) + f" (on {os.cpu_count()} CPUs)"
    except OSError:
        return "unknown"


def summary(k: Kpis) -> str:
    def pct(value: Any) -> str:
        return "—" if value is None else f"{value * 100:.1f}%"

    return (
        f"members {k.members:,} (+{k.new_members:,}), active {k.active_members:,}, "
        f"sales {k.sales:,} = {k.sales_total:,} (avg {k.average_check}), "
        f"repeat {pct(k.repeat_rate)}, CLV {k.lifetime_value}, "
        f"points +{k.points_issued:,}/-{k.points_redeemed:,} "
        f"(redemption {pct(k.redemption_rate)}), referral {pct(k.referral_conversion)}, "
        f"cross-partner {k.cross_partner_members:,} ({pct(k.cross_partner_rate)})"
    )


async def bench(url: str) -> float:
    program = make_program()
    now = datetime.now(UTC).replace(microsecond=0)
    engine = create_engine(url, pool_size=2)
    try:
        await upgrade(engine)
        sessions = session_factory(engine)
        async with sessions() as session:
            await sync_partners(session, program)
            await session.commit()
        conn = await asyncpg.connect(url)
        try:
            print("building the data:", flush=True)
            started = time.perf_counter()
            await generate(conn, now)
            print(f"  built in {time.perf_counter() - started:.0f} s", flush=True)
            await check_ledger(conn)
            print(await describe(conn))
            missing = await missing_indexes(conn)
            partner_id = await conn.fetchval("SELECT id FROM partners WHERE slug = $1", PARTNER)
        finally:
            await conn.close()
        print("relies on these indexes:")
        for name, why in INDEXES.items():
            print(f"  {name}{' (MISSING)' if name in missing else ''}: {why}")

        worst = 0.0
        print(f"load average before timing: {load_average()}")
        for word in ("month", "year"):
            period: Period = parse_period(word, now=now, timezone=program.program.timezone)
            days = (period.end - period.start).days
            for label, pid in (("coalition", None), (f"partner {PARTNER}", partner_id)):

                async def one(pid: int | None = pid, period: Period = period) -> Kpis:
                    async with sessions() as session:
                        return await kpis(
                            session, program, start=period.start, end=period.end, partner_id=pid
                        )

                seconds, k = await median_seconds(one)
                worst = max(worst, seconds)
                print(f"kpis {label}, last {days} days: median {seconds:.3f} s")
                print(f"  {summary(k)}")

            async def report(period: Period = period) -> Any:
                async with sessions() as session:
                    return await coalition_report(
                        session, program, start=period.start, end=period.end
                    )

            seconds, _result = await median_seconds(report)
            print(
                f"  (coalition_report, /stats for owners and marketers: the coalition and"
                f" every partner, last {days} days: median {seconds:.3f} s; not in the ratio)"
            )

            async def settle(period: Period = period) -> Any:
                async with sessions() as session:
                    return await settlement(session, program, start=period.start, end=period.end)

            seconds, _result = await median_seconds(settle)
            print(
                f"  (settlement, /settlement: every partner's position, last {days} days, with"
                f" the partners' and the program's balances summed from all their entries:"
                f" median {seconds:.3f} s; not in the ratio)"
            )
        print(f"load average after timing: {load_average()}")
        return worst
    finally:
        await engine.dispose()


async def run(admin: str) -> float:
    print(await server_version(admin))
    url = await pg.create_database(admin)
    try:
        return await bench(url)
    finally:
        await pg.drop_database(admin, url)


def main() -> None:
    admin, server = admin_url()  # may start an embedded server: outside the event loop
    try:
        worst = asyncio.run(run(admin))
    finally:
        if server is not None:
            server.cleanup()
    print(f"worst median {worst:.3f} s; target {TARGET_SECONDS:.1f} s")
    print(f"stats/target ratio: {TARGET_SECONDS / worst:.2f}")


if __name__ == "__main__":
    main()
