"""The program's figures (KPIs) for a period, for the coalition or for one partner.

Everything is counted in SQL from the ledger's own tables, a handful of queries per call and
no loop over members in Python. Words used below:

- the period is [start, end); a *sale* is a transaction of kind `earn` or `redeem` (its
  `amount` is the purchase total before a tier discount, `discount` the money taken off it,
  `paid` the part paid in money); what a sale *charged* is its amount less its discount (the
  money taken, in money and points); a *refund* is a `reverse` (its `amount` is the refunded
  part of the money the sale charged, `paid` the money given back);
- *in scope* means: for the coalition, at any partner; for a partner, at that partner;
- a member *exists at `end`* when they joined before `end` and had not deleted their account
  by then. Stocks (member counts, lifetime value) count such members; flows (new members,
  sales, active members, points) count every posting in the period, including those of
  members who have left since, because those postings happened.

Figures (`Kpis`):

- `members`: coalition: members existing at `end`. Partner: members existing at `end` with at
  least one sale at the partner before `end` (its customers).
- `new_members`: coalition: members who joined in the period and still exist at `end` (an
  account deleted in the period is not a join). Partner: members whose first sale at the
  partner is in the period, if they still exist at `end`.
- `joins_by_source`: coalition only: the same new members counted by `members.source`, the
  start link they joined through (db/rules/tokens.py): `poster-<partner>` or `poster` (a poster),
  any other `src-<source>` link (an ad, a campaign), `referral` (a friend's invitation), None
  (a plain /start); most joins first. `advertised_joins`: those with a source other than
  `referral` (they saw the program advertised); `advertised_share` = advertised_joins /
  new_members, the seeds' "share of members who joined after seeing the program advertised".
- `active_members`: members with at least one sale in scope in the period.
- `sales`, `sales_total`, `sales_paid`: the number of sales in scope in the period, the money
  they charged (amount less discount) and the sum of their `paid`; `average_check` =
  sales_total / sales (refunds not netted).
- `refunds_total`: the sum of `amount` of refunds in scope posted in the period: money charged
  given back, the same basis as sales_total (a discount is never refunded).
- `discounts_total`: the money taken off the sales in scope in the period by tier discounts
  (their `discount`): "discounts given", at the selling partner's cost.
- `repeat_members`: active members with two sales or more in scope in the period;
  `repeat_rate` = repeat_members / active_members.
- `customers`, `lifetime_spend`: members existing at `end` with at least one sale in scope
  before `end`, and the money they spent in scope before `end` (the `paid` of their sales
  minus the `paid` of their refunds); `lifetime_value` (CLV) = lifetime_spend / customers.
  It is "since joining, as of `end`", not limited to the period.
- `points_issued`, `points_redeemed`: the net points that left the `partner_issued` accounts
  and reached the `partner_redeemed` accounts in scope in the period, from `entries` (so a
  refund's claw-back lowers points issued in the period it is posted: the settlement's
  numbers exactly); `redemption_rate` = points_redeemed / points_issued. A partner's are
  those of its own accounts, whoever's sale moved them: its share of a promotion's points on
  another partner's sale, a voucher it funds honoured elsewhere (as settlement counts them).
- `invited`, `invited_rewarded`: members who joined in the period with an inviter, and those
  of them whose `referral` reward was posted before `end`; `referral_conversion` =
  invited_rewarded / invited. Partner: `invited` stays the coalition's count and
  `invited_rewarded` counts the rewards triggered by a sale at the partner, so partners' rates
  add up to the coalition's.
- `cross_partner_members`: coalition: members with sales at two partners or more in the
  period. Partner: its active members who also had a sale at another partner in the period.
  `cross_partner_rate` = cross_partner_members / active_members.
- `days`: per day of the period in the program's time zone: sales (their number and money),
  active members, points issued and redeemed, in scope (points issued may be negative on a
  day of refunds).
- `walk_in_sales`, `walk_in_total`: sales without a member card in scope in the period, and
  their money: those a till's software recorded through the partner API (`api_sales` with
  no member: never in the ledger, no discount, no points); `walk_in_average_check` =
  walk_in_total / walk_in_sales, to compare with the members' `average_check` (the seeds'
  "average check of members against non-members"; refunds netted in neither).

A ratio whose denominator is zero is None ("no data"), not 0.

The club's figures (`ClubFigures`, `club_figures`) are at the end of this module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import TextClause, literal_column, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from db.engine import own_session
from db.ledger.models import Transaction, TxKind
from db.ledger.writer import unit_of_work
from db.rules.points import CENT
from db.rules.program import Program
from db.rules.tokens import REFERRAL_SOURCE
from db.usecases.purchases import spend_expression
from db.usecases.staff import StaffInfo, audit

RATE = Decimal("0.0001")


def ratio(part: int | Decimal, whole: int | Decimal) -> Decimal | None:
    """part / whole to four decimals (0.5 is 50 %); None when there is nothing to divide by."""
    if not whole:
        return None
    return (Decimal(part) / Decimal(whole)).quantize(RATE, rounding=ROUND_HALF_UP)


def mean(total: Decimal, count: int) -> Decimal | None:
    return (total / count).quantize(CENT, rounding=ROUND_HALF_UP) if count else None


@dataclass(frozen=True, slots=True)
class DayFigures:
    day: date
    sales: int
    active_members: int
    points_issued: int
    points_redeemed: int
    sales_total: Decimal = Decimal(0)  # the money the day's sales charged


@dataclass(frozen=True, slots=True)
class Kpis:
    """The figures for [start, end); see the module's docstring for each definition."""

    start: datetime
    end: datetime
    partner_id: int | None
    members: int
    new_members: int
    active_members: int
    sales: int
    sales_total: Decimal
    sales_paid: Decimal
    refunds_total: Decimal
    repeat_members: int
    customers: int
    lifetime_spend: Decimal
    points_issued: int
    points_redeemed: int
    invited: int
    invited_rewarded: int
    cross_partner_members: int
    days: tuple[DayFigures, ...] = ()
    joins_by_source: tuple[tuple[str | None, int], ...] = ()
    discounts_total: Decimal = Decimal(0)
    walk_in_sales: int = 0
    walk_in_total: Decimal = Decimal(0)

    @property
    def average_check(self) -> Decimal | None:
        """The members' average check: every sale in the ledger is a member's."""
        return mean(self.sales_total, self.sales)

    @property
    def walk_in_average_check(self) -> Decimal | None:
        """The average check of sales without a member card."""
        return mean(self.walk_in_total, self.walk_in_sales)

    @property
    def repeat_rate(self) -> Decimal | None:
        return ratio(self.repeat_members, self.active_members)

    @property
    def lifetime_value(self) -> Decimal | None:
        return mean(self.lifetime_spend, self.customers)

    @property
    def redemption_rate(self) -> Decimal | None:
        return ratio(self.points_redeemed, self.points_issued)

    @property
    def referral_conversion(self) -> Decimal | None:
        return ratio(self.invited_rewarded, self.invited)

    @property
    def cross_partner_rate(self) -> Decimal | None:
        return ratio(self.cross_partner_members, self.active_members)

    @property
    def advertised_joins(self) -> int:
        ads = (n for source, n in self.joins_by_source if source not in (None, REFERRAL_SOURCE))
        return sum(ads)

    @property
    def advertised_share(self) -> Decimal | None:
        return ratio(self.advertised_joins, self.new_members)


@dataclass(frozen=True, slots=True)
class PartnerKpis:
    partner_id: int
    slug: str
    name: str
    kpis: Kpis  # without `days`


# --------------------------------------------------------------------------- the queries
# Text SQL: these are reports, easier to check against the definitions above as SQL than as
# ORM expressions. A `{partner}` slot holds fixed SQL, never user input.
#
# Their shape is for speed on a year of a busy coalition (see benchmarks/stats.py): a
# grouping per member keeps small counters only, money is summed without grouping by member,
# and points are read through the partner accounts' ids (so the planner knows how many
# entries those few accounts hold) and summed by day and by partner in one pass.

_SALE = TxKind.sql_in("t.kind", TxKind.SALES)
_IN_PERIOD = "t.created_at >= :start"  # every statement also has t.created_at < :end
_CHARGED = "(t.amount - coalesce(t.discount, 0))"  # what a sale charged (purchases.charged)
_ALIVE = "(m.deleted_at IS NULL OR m.deleted_at >= :end)"
# The members who had left by `end`: few, so joining them is cheaper than joining everyone.
_GONE = "LEFT JOIN members AS gone ON gone.id = {t}.member_id AND gone.deleted_at < :end"
_JOINED = "m.joined_at >= :start AND m.joined_at < :end"
# The money spent, by the one rule the tiers use, by members still there at `end`.
_LIFETIME_SPEND = str(
    spend_expression(
        Transaction.__table__.alias("t").c, literal_column("gone.id").is_(None)
    ).compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})
)
_ONE_PARTNER = "AND t.partner_id = :partner_id"

# Members, enrolment and invitations: one pass over `members`.
_MEMBERS = text(
    f"""
    SELECT count(*) FILTER (WHERE m.joined_at < :end AND {_ALIVE}) AS members,
           count(*) FILTER (WHERE {_JOINED} AND {_ALIVE}) AS new_members,
           count(*) FILTER (WHERE {_JOINED} AND m.referred_by_id IS NOT NULL) AS invited,
           count(*) FILTER (
               WHERE {_JOINED} AND m.referred_by_id IS NOT NULL AND EXISTS (
                   SELECT FROM transactions AS r
                   WHERE r.member_id = m.id AND r.kind = 'referral' AND r.created_at < :end
               )
           ) AS rewarded
    FROM members AS m
    """
)

# The new members of `_MEMBERS` by the link they joined through.
_SOURCES = text(
    f"""
    SELECT m.source, count(*) AS joins
    FROM members AS m
    WHERE {_JOINED} AND {_ALIVE}
    GROUP BY m.source
    ORDER BY joins DESC, m.source NULLS LAST
    """
)

# Who bought: one row per member with a sale before `end`, with counters only.
_BUYERS = text(
    f"""
    WITH buyers AS (
        SELECT t.member_id,
               count(*) FILTER (WHERE {_IN_PERIOD}) AS sales,
               min(t.partner_id) FILTER (WHERE {_IN_PERIOD}) AS one_partner,
               max(t.partner_id) FILTER (WHERE {_IN_PERIOD}) AS another_partner
        FROM transactions AS t
        WHERE {_SALE} AND t.created_at < :end
        GROUP BY t.member_id
    )
    SELECT count(*) FILTER (WHERE b.sales > 0) AS active_members,
           count(*) FILTER (WHERE b.sales >= 2) AS repeat_members,
           count(*) FILTER (WHERE b.one_partner <> b.another_partner) AS cross_partner_members,
           count(*) FILTER (WHERE gone.id IS NULL) AS customers
    FROM buyers AS b {_GONE.format(t="b")}
    """
)

# The same for one partner: counters at the partner, and whether the member also bought
# at another partner in the period.
_PARTNER_BUYERS = text(
    f"""
    WITH buyers AS (
        SELECT t.member_id,
               count(*) FILTER (WHERE t.partner_id = :partner_id AND {_IN_PERIOD}) AS sales,
               min(t.created_at) FILTER (WHERE t.partner_id = :partner_id) AS first_sale,
               bool_or(t.partner_id <> :partner_id AND {_IN_PERIOD}) AS elsewhere
        FROM transactions AS t
        WHERE {_SALE} AND t.created_at < :end
        GROUP BY t.member_id
    )
    SELECT CAST(:partner_id AS bigint) AS partner_id,
           count(*) FILTER (WHERE b.sales > 0) AS active_members,
           count(*) FILTER (WHERE b.sales >= 2) AS repeat_members,
           count(*) FILTER (WHERE b.sales > 0 AND b.elsewhere) AS cross_partner_members,
           count(*) FILTER (WHERE b.first_sale IS NOT NULL AND gone.id IS NULL) AS customers,
           count(*) FILTER (WHERE b.first_sale >= :start AND gone.id IS NULL) AS new_members
    FROM buyers AS b {_GONE.format(t="b")}
    """
)

# Every partner's: one row per (partner, member) with a sale before `end`; then the same
# rolled up per member gives the coalition's row (partner_id NULL) without another pass.
_EVERY_PARTNER_BUYERS = text(
    f"""
    WITH pairs AS (
        SELECT t.partner_id, t.member_id, count(*) FILTER (WHERE {_IN_PERIOD}) AS sales,
               min(t.created_at) AS first_sale
        FROM transactions AS t
        WHERE {_SALE} AND t.created_at < :end
        GROUP BY t.partner_id, t.member_id
    ), per_member AS (
        SELECT p.member_id, sum(p.sales) AS sales,
               count(*) FILTER (WHERE p.sales > 0) AS partners,
               bool_and(gone.id IS NULL) AS alive
        FROM pairs AS p {_GONE.format(t="p")}
        GROUP BY p.member_id
    )
    SELECT p.partner_id,
           count(*) FILTER (WHERE p.sales > 0) AS active_members,
           count(*) FILTER (WHERE p.sales >= 2) AS repeat_members,
           count(*) FILTER (WHERE p.sales > 0 AND s.partners >= 2) AS cross_partner_members,
           count(*) FILTER (WHERE s.alive) AS customers,
           count(*) FILTER (WHERE p.first_sale >= :start AND s.alive) AS new_members
    FROM pairs AS p JOIN per_member AS s ON s.member_id = p.member_id
    GROUP BY p.partner_id
    UNION ALL
    SELECT NULL,
           count(*) FILTER (WHERE s.sales > 0),
           count(*) FILTER (WHERE s.sales >= 2),
           count(*) FILTER (WHERE s.partners >= 2),
           count(*) FILTER (WHERE s.alive),
           0
    FROM per_member AS s
    """
)

# Money, per partner and in total (the row where `total` is 1): sales and refunds in the
# period; lifetime spend of the members existing at `end`. Grouped by partner first (a
# grouping PostgreSQL can run in parallel), then the total over those few rows.
_MONEY = f"""
    SELECT partner_id, GROUPING(partner_id) AS total, coalesce(sum(sales), 0) AS sales,
           coalesce(sum(sales_total), 0) AS sales_total,
           coalesce(sum(sales_paid), 0) AS sales_paid,
           coalesce(sum(refunds_total), 0) AS refunds_total,
           coalesce(sum(lifetime_spend), 0) AS lifetime_spend,
           coalesce(sum(discounts_total), 0) AS discounts_total
    FROM (
        SELECT t.partner_id,
               count(*) FILTER (WHERE {_SALE} AND {_IN_PERIOD}) AS sales,
               coalesce(sum({_CHARGED}) FILTER (WHERE {_SALE} AND {_IN_PERIOD}), 0)
                   AS sales_total,
               coalesce(sum(t.paid) FILTER (WHERE {_SALE} AND {_IN_PERIOD}), 0) AS sales_paid,
               coalesce(sum(t.amount) FILTER (WHERE t.kind = 'reverse' AND {_IN_PERIOD}), 0)
                   AS refunds_total,
               coalesce(sum(t.discount) FILTER (WHERE {_SALE} AND {_IN_PERIOD}), 0)
                   AS discounts_total,
               {_LIFETIME_SPEND} AS lifetime_spend
        FROM transactions AS t
        {_GONE.format(t="t")}
        WHERE {TxKind.sql_in("t.kind", TxKind.SPEND)} AND t.created_at < :end {{partner}}
        GROUP BY t.partner_id
    ) AS per_partner
    GROUP BY GROUPING SETS ((partner_id), ())
"""

# Sales and active members per local day, every day of the period listed.
_DAILY_SALES = f"""
    WITH days AS (
        SELECT CAST(d AS date) AS day
        FROM generate_series(CAST(:first_day AS date), CAST(:last_day AS date),
                             interval '1 day') AS d
    ), sales AS (
        SELECT CAST(t.created_at AT TIME ZONE :tz AS date) AS day, count(*) AS sales,
               count(DISTINCT t.member_id) AS active_members, sum({_CHARGED}) AS sales_total
        FROM transactions AS t
        WHERE {_SALE} AND {_IN_PERIOD} AND t.created_at < :end {{partner}}
        GROUP BY 1
    )
    SELECT days.day, coalesce(sales.sales, 0) AS sales,
           coalesce(sales.active_members, 0) AS active_members,
           coalesce(sales.sales_total, 0) AS sales_total
    FROM days LEFT JOIN sales ON sales.day = days.day
    ORDER BY days.day
"""

# The smallest and largest id of the period's transactions (every partner's: see _POINTS).
# Ids rise with time, so the entries of a period lie in a narrow band of transaction ids,
# which the points' query reads by range instead of reading every entry of the partner
# accounts; the band is exact whatever the order (any id of a period's transaction lies
# between its min and max).
# (`id + 0`: so that PostgreSQL finds the period's rows through `created_at`, rather than
# walking the primary key from one end until it meets the period.)
_SPAN = f"""
    SELECT coalesce(min(t.id + 0), 0) AS first_id, coalesce(max(t.id + 0), -1) AS last_id
    FROM transactions AS t
    WHERE {_IN_PERIOD} AND t.created_at < :end
"""

# Points issued and redeemed in the period, from the entries on the partner accounts
# `:accounts` (for one partner, its own two): per local day (`level` 1), per partner (2) and
# in total (3). Summed per day and account first (a few thousand rows, however many
# entries), then rolled up. Every transaction of the period, whichever partner it carries:
# a partner's accounts also move on other partners' sales (its share of a promotion, a
# voucher it funds claimed elsewhere), and settlement counts those.
_POINTS = f"""
    WITH moved AS (
        SELECT CAST(t.created_at AT TIME ZONE :tz AS date) AS day, e.account_id,
               sum(e.amount) AS amount
        FROM transactions AS t
        JOIN entries AS e ON e.transaction_id = t.id
        WHERE {_IN_PERIOD} AND t.created_at < :end
          AND e.account_id = ANY(CAST(:accounts AS bigint[]))
          AND e.transaction_id BETWEEN :first_id AND :last_id
        GROUP BY 1, 2
    )
    SELECT m.day, a.partner_id, GROUPING(m.day, a.partner_id) AS level,
           -coalesce(sum(m.amount) FILTER (WHERE a.kind = 'partner_issued'), 0) AS issued,
           coalesce(sum(m.amount) FILTER (WHERE a.kind = 'partner_redeemed'), 0) AS redeemed
    FROM moved AS m
    JOIN accounts AS a ON a.id = m.account_id AND a.id = ANY(CAST(:accounts AS bigint[]))
    GROUP BY GROUPING SETS ((m.day), (a.partner_id), ())
"""

# Invited members who joined in the period, rewarded through a sale at each partner.
_REWARDS = f"""
    SELECT t.partner_id, count(*) AS rewarded
    FROM members AS m
    JOIN transactions AS r
      ON r.member_id = m.id AND r.kind = 'referral' AND r.created_at < :end
    JOIN transactions AS t ON t.id = r.related_id
    WHERE {_JOINED} AND m.referred_by_id IS NOT NULL {{partner}}
    GROUP BY t.partner_id
"""


# Sales without a member card (a till's, through the partner API), per partner and in total.
_WALK_INS = """
    SELECT t.partner_id, GROUPING(t.partner_id) AS total, count(*) AS sales,
           coalesce(sum(t.amount), 0) AS sales_total
    FROM api_sales AS t
    WHERE t.member_id IS NULL AND t.created_at >= :start AND t.created_at < :end {partner}
    GROUP BY GROUPING SETS ((t.partner_id), ())
"""


def _variants(sql: str) -> dict[bool, TextClause]:
    """The statement for every partner (False) and for the one `:partner_id` (True)."""
    return {False: text(sql.format(partner="")), True: text(sql.format(partner=_ONE_PARTNER))}


_MONEY_SQL = _variants(_MONEY)
_DAILY_SALES_SQL = _variants(_DAILY_SALES)
_POINTS_SQL = text(_POINTS)
_SPAN_SQL = text(_SPAN)
_REWARDS_SQL = _variants(_REWARDS)
_WALK_INS_SQL = _variants(_WALK_INS)
_PARTNER_ACCOUNTS = text(
    "SELECT id FROM accounts WHERE partner_id IS NOT NULL"
    " AND (CAST(:partner_id AS bigint) IS NULL OR partner_id = :partner_id) ORDER BY id"
)


# --------------------------------------------------------------------------- use cases


class _Report:
    """The queries of one report, in one database transaction (rolled back at the end: it
    only reads). `partner_id` narrows every query to that partner."""

    def __init__(
        self,
        session: AsyncSession,
        program: Program,
        start: datetime,
        end: datetime,
        partner_id: int | None = None,
    ) -> None:
        self.session = session
        self.partner_id = partner_id
        tz = ZoneInfo(program.program.timezone)
        first = start.astimezone(tz).date()
        last = max(first, (end - timedelta(microseconds=1)).astimezone(tz).date())
        self.params: dict[str, Any] = {
            "start": start,
            "end": end,
            "partner_id": partner_id,
            "tz": program.program.timezone,
            "first_day": first,
            "last_day": last,
        }

    async def _run(self, statement: TextClause) -> Any:
        return await self.session.execute(statement, self.params)

    async def prepare(self) -> None:
        # For this transaction only (LOCAL), settings for reports rather than for postings:
        # these queries hash and sort hundreds of thousands of rows, so give them memory;
        # skip JIT compilation, which costs more than it saves on queries of a second or so;
        # plan each for its own parameters (a day and a year want different plans), not with
        # a generic plan for prepared statements; and let PostgreSQL use parallel workers
        # sooner than its defaults (tuned for short transactions) allow: about 12 % off a
        # year of the coalition on two cores (benchmarks/stats.py).
        for setting in (
            "work_mem = '64MB'",
            "jit = off",
            "plan_cache_mode = force_custom_plan",
            "parallel_setup_cost = 100",
            "parallel_tuple_cost = 0.01",
        ):
            await self.session.execute(text(f"SET LOCAL {setting}"))
        accounts = (await self._run(_PARTNER_ACCOUNTS)).scalars().all()
        self.params["accounts"] = list(accounts)
        span = (await self._run(_SPAN_SQL)).one()
        self.params["first_id"], self.params["last_id"] = span.first_id, span.last_id

    async def members(self) -> Any:
        return (await self._run(_MEMBERS)).one()

    async def sources(self) -> tuple[tuple[str | None, int], ...]:
        return tuple((row.source, int(row.joins)) for row in await self._run(_SOURCES))

    async def money(self) -> dict[int | None, Any]:
        """Money per partner, and the total under None."""
        rows = await self._run(_MONEY_SQL[self.partner_id is not None])
        return {None if row.total else row.partner_id: row for row in rows}

    async def walk_ins(self) -> dict[int | None, Any]:
        """Sales without a member card per partner, and the total under None."""
        rows = await self._run(_WALK_INS_SQL[self.partner_id is not None])
        return {None if row.total else row.partner_id: row for row in rows}

    async def rewards(self) -> dict[int, int]:
        rows = await self._run(_REWARDS_SQL[self.partner_id is not None])
        return {row.partner_id: int(row.rewarded) for row in rows}

    async def buyers(self) -> Any:
        if self.partner_id is None:
            return (await self._run(_BUYERS)).one()
        return (await self._run(_PARTNER_BUYERS)).one()

    async def every_partner_buyers(self) -> dict[int | None, Any]:
        """Buyers' counters per partner, and the coalition's under None."""
        return {row.partner_id: row for row in await self._run(_EVERY_PARTNER_BUYERS)}

    async def points(self) -> tuple[dict[date, Any], dict[int | None, Any]]:
        """Points per day, and per partner with the total under None."""
        rows = (await self._run(_POINTS_SQL)).all()
        by_day = {row.day: row for row in rows if row.level == 1}
        by_partner = {row.partner_id: row for row in rows if row.level == 2}
        by_partner[None] = next((row for row in rows if row.level == 3), None)
        return by_day, by_partner

    async def days(self, points: dict[date, Any]) -> tuple[DayFigures, ...]:
        rows = await self._run(_DAILY_SALES_SQL[self.partner_id is not None])
        return tuple(
            DayFigures(
                row.day,
                int(row.sales),
                int(row.active_members),
                int(points[row.day].issued) if row.day in points else 0,
                int(points[row.day].redeemed) if row.day in points else 0,
                Decimal(row.sales_total),
            )
            for row in rows
        )


def _kpis(
    report: _Report,
    partner_id: int | None,
    *,
    members: Any,
    buyers: Any,
    money: Any,
    points: Any,
    rewarded: int,
    days: tuple[DayFigures, ...] = (),
    sources: tuple[tuple[str | None, int], ...] = (),
    walk_ins: Any = None,
) -> Kpis:
    """Kpis from the queries' rows: `members` from _MEMBERS (the invitations, and for the
    coalition the member counts), the others None where a partner had nothing."""
    if partner_id is None:
        count, new = members.members, members.new_members
    else:  # a partner's members are its customers
        count, new = (buyers.customers, buyers.new_members) if buyers else (0, 0)
    return Kpis(
        start=report.params["start"],
        end=report.params["end"],
        partner_id=partner_id,
        members=int(count),
        new_members=int(new),
        active_members=int(buyers.active_members) if buyers else 0,
        sales=int(money.sales) if money else 0,
        sales_total=Decimal(money.sales_total) if money else Decimal(0),
        sales_paid=Decimal(money.sales_paid) if money else Decimal(0),
        refunds_total=Decimal(money.refunds_total) if money else Decimal(0),
        repeat_members=int(buyers.repeat_members) if buyers else 0,
        customers=int(buyers.customers) if buyers else 0,
        lifetime_spend=Decimal(money.lifetime_spend) if money else Decimal(0),
        points_issued=int(points.issued) if points else 0,
        points_redeemed=int(points.redeemed) if points else 0,
        invited=int(members.invited),
        invited_rewarded=rewarded,
        cross_partner_members=int(buyers.cross_partner_members) if buyers else 0,
        days=days,
        joins_by_source=sources,
        discounts_total=Decimal(money.discounts_total) if money else Decimal(0),
        walk_in_sales=int(walk_ins.sales) if walk_ins else 0,
        walk_in_total=Decimal(walk_ins.sales_total) if walk_ins else Decimal(0),
    )


async def kpis(
    session: AsyncSession,
    program: Program,
    *,
    start: datetime,
    end: datetime,
    partner_id: int | None = None,
) -> Kpis:
    """The KPIs for [start, end): the coalition's, or one partner's with `partner_id`."""
    async with own_session(session) as reader:
        report = _Report(reader, program, start, end, partner_id)
        await report.prepare()
        members = await report.members()
        buyers = await report.buyers()
        money = await report.money()
        by_day, by_partner = await report.points()
        days = await report.days(by_day)
        rewarded = (
            int(members.rewarded)
            if partner_id is None
            else (await report.rewards()).get(partner_id, 0)
        )
        sources = await report.sources() if partner_id is None else ()
        walk_ins = await report.walk_ins()
    return _kpis(
        report,
        partner_id,
        members=members,
        buyers=buyers,
        money=money.get(partner_id),
        points=by_partner.get(partner_id),
        rewarded=rewarded,
        days=days,
        sources=sources,
        walk_ins=walk_ins.get(partner_id),
    )


_ByPartner = dict[int | None, Any]  # query rows per partner, the coalition's under None


async def _every_partner(
    report: _Report, members: Any
) -> tuple[list[PartnerKpis], _ByPartner, _ByPartner, _ByPartner, dict[date, Any], _ByPartner]:
    """Every partner's Kpis (without days), with the rows of buyers, money, points and sales
    without a member card per partner and of points per day."""
    money = await report.money()
    by_day, by_partner = await report.points()
    rewards = await report.rewards()
    buyers = await report.every_partner_buyers()
    walk_ins = await report.walk_ins()
    partners = (
        await report.session.execute(text("SELECT id, slug, name FROM partners ORDER BY id"))
    ).all()
    rows = [
        PartnerKpis(
            p.id,
            p.slug,
            p.name,
            _kpis(
                report,
                p.id,
                members=members,
                buyers=buyers.get(p.id),
                money=money.get(p.id),
                points=by_partner.get(p.id),
                rewarded=rewards.get(p.id, 0),
                walk_ins=walk_ins.get(p.id),
            ),
        )
        for p in partners  # a handful of partners, not members: the figures are the SQL's
    ]
    return rows, buyers, money, by_partner, by_day, walk_ins


async def kpis_by_partner(
    session: AsyncSession, program: Program, *, start: datetime, end: datetime
) -> list[PartnerKpis]:
    """Every partner's KPIs for [start, end) (without the daily series), in partner order."""
    async with own_session(session) as reader:
        report = _Report(reader, program, start, end)
        await report.prepare()
        rows, *_rest = await _every_partner(report, await report.members())
    return rows


async def coalition_report(
    session: AsyncSession, program: Program, *, start: datetime, end: datetime
) -> tuple[Kpis, list[PartnerKpis]]:
    """`kpis` and `kpis_by_partner` together (what /stats shows owners and marketers), with
    the queries they share run once."""
    async with own_session(session) as reader:
        report = _Report(reader, program, start, end)
        await report.prepare()
        members = await report.members()
        rows, buyers, money, by_partner, by_day, walk_ins = await _every_partner(report, members)
        days = await report.days(by_day)
        sources = await report.sources()
    total = _kpis(
        report,
        None,
        members=members,
        buyers=buyers.get(None),
        money=money.get(None),
        points=by_partner.get(None),
        rewarded=int(members.rewarded),
        days=days,
        sources=sources,
        walk_ins=walk_ins.get(None),
    )
    return total, rows


async def log_report(
    session: AsyncSession,
    action: str,
    *,
    actor: int,
    staff: StaffInfo | None,
    start: datetime,
    end: datetime,
    partner_id: int | None = None,
) -> None:
    """Who read which figures, in the audit log: reports carry every partner's money."""
    async with unit_of_work(session):
        await audit(
            session,
            action,
            actor=actor,
            staff=staff,
            partner_id=partner_id,
            start=start.isoformat(),
            end=end.isoformat(),
        )


# --------------------------------------------------------------------------- the club
# A member's time in the club is made of runs: a run begins with a payment that found them
# outside the club (`joined`) and takes every later payment until the next such one; it
# lasts to the furthest end its payments bought, or to the account's deletion. A refunded
# payment bought its time up to its refund (db/usecases/club_refunds.py takes off only the
# part still ahead, and moves the periods of the payments after it back with it, so each
# payment's period is what it bought). So the figures of a past period never change when a
# member comes back later, and members at the end = members at the start + joined − lapsed.
#
# `at` is the period's end, or now for a period still running (its members are those in
# the club now, and a membership that ends later today has not lapsed yet).
_CLUB_RUNS = text(
    """
    WITH pay AS (
        SELECT p.member_id, p.created_at,
               CASE WHEN p.refunded_at IS NULL THEN p.period_until
                    ELSE LEAST(p.period_until, GREATEST(p.period_from, p.refunded_at))
               END AS bought_until,
               count(*) FILTER (WHERE p.joined)
                   OVER (PARTITION BY p.member_id ORDER BY p.created_at, p.id) AS run
        FROM club_payments AS p
        WHERE p.created_at < :at
    ), lasted AS MATERIALIZED (
        SELECT LEAST(max(r.bought_until), min(gone.deleted_at)) AS ended_at
        FROM pay AS r
        LEFT JOIN members AS gone ON gone.id = r.member_id AND gone.deleted_at IS NOT NULL
        GROUP BY r.member_id, r.run
    )
    SELECT count(*) FILTER (WHERE ended_at > :at) AS members,
           count(*) FILTER (WHERE ended_at > :start AND ended_at <= :at) AS lapsed
    FROM lasted
    """
)
# The period's payments, and the money given back in the period (refunded_at), whenever it
# was paid: a refund counts when it is made, as in settlement (db/queries/settlement.py).
_CLUB_PAYMENTS = text(
    """
    SELECT p.method, p.currency,
           count(*) FILTER (WHERE p.joined AND p.created_at >= :start) AS joined,
           coalesce(sum(p.amount) FILTER (WHERE p.created_at >= :start), 0) AS paid,
           coalesce(sum(p.amount) FILTER (WHERE p.refunded_at >= :start
                                            AND p.refunded_at < :at), 0) AS refunded
    FROM club_payments AS p
    WHERE p.created_at >= :start AND p.created_at < :at
       OR p.refunded_at >= :start AND p.refunded_at < :at
    GROUP BY p.method, p.currency
    ORDER BY p.method, p.currency
    """
)


@dataclass(frozen=True, slots=True)
class ClubMoney:
    """Club payments of the period in one currency: card and till (the program's money)."""

    currency: str
    card: Decimal = Decimal(0)
    till: Decimal = Decimal(0)
    refunded: Decimal = Decimal(0)  # of card + till, given back in the period

    @property
    def paid(self) -> Decimal:
        return self.card + self.till

    @property
    def kept(self) -> Decimal:
        return self.paid - self.refunded


@dataclass(frozen=True, slots=True)
class ClubFigures:
    """The club for [start, end): `members` in it at the end (now, for a period still
    running); `joined`: payments in the period that found their member outside the club (a
    first membership, or back after a lapse or a refund); `lapsed`: memberships that ended
    in the period and were not extended before they ended (refunds and deleted accounts
    included). Revenue is the period's payments, Stars and money kept apart: `stars_paid`,
    and `stars_refunded` given back in the period (whenever paid, as settlement counts
    refunds); `money` per currency."""

    members: int
    joined: int
    lapsed: int
    stars_paid: int = 0
    stars_refunded: int = 0
    money: tuple[ClubMoney, ...] = ()

    @property
    def stars_kept(self) -> int:
        return self.stars_paid - self.stars_refunded


async def club_figures(
    session: AsyncSession, *, start: datetime, end: datetime, now: datetime
) -> ClubFigures:
    params = {"start": start, "at": min(end, now)}
    async with own_session(session) as reader:
        # As the other reports (_Report.prepare): JIT costs more than it saves here.
        await reader.execute(text("SET LOCAL jit = off"))
        runs = (await reader.execute(_CLUB_RUNS, params)).one()
        rows = (await reader.execute(_CLUB_PAYMENTS, params)).all()
    money: dict[str, ClubMoney] = {}
    stars = refunded = joined = 0
    for row in rows:
        joined += int(row.joined)
        if row.method == "stars":
            stars += int(row.paid)
            refunded += int(row.refunded)
            continue
        was = money.get(row.currency) or ClubMoney(row.currency)
        money[row.currency] = ClubMoney(
            row.currency,
            was.card + (Decimal(row.paid) if row.method == "card" else 0),
            was.till + (Decimal(row.paid) if row.method == "till" else 0),
            was.refunded + Decimal(row.refunded),
        )
    return ClubFigures(
        members=int(runs.members),
        joined=joined,
        lapsed=int(runs.lapsed),
        stars_paid=stars,
        stars_refunded=refunded,
        money=tuple(money.values()),
    )


# --------------------------------------------------------------------------- periods

MAX_DAYS = 3 * 366
EARLIEST, LATEST = date(2000, 1, 1), date(2999, 12, 31)
_RANGE = re.compile(r"^(\d{4}-\d{2}-\d{2})\.\.(\d{4}-\d{2}-\d{2})$")
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_ROLLING = {"today": 1, "week": 7, "month": 30, "year": 365}


class BadPeriod(ValueError):
    """The period argument is not one we understand."""


@dataclass(frozen=True, slots=True)
class Period:
    """Whole local days: [start, end), both local midnights."""

    start: datetime
    end: datetime

    @property
    def first_day(self) -> date:
        return self.start.date()

    @property
    def last_day(self) -> date:
        return (self.end - timedelta(days=1)).date()


def _days_period(first: date, last: date, tz: ZoneInfo) -> Period:
    return Period(
        datetime.combine(first, time(), tzinfo=tz),
        datetime.combine(last + timedelta(days=1), time(), tzinfo=tz),
    )


def previous_month(now: datetime, timezone: str) -> Period:
    """The last whole calendar month before `now`'s (the usual settlement period)."""
    tz = ZoneInfo(timezone)
    first_this = now.astimezone(tz).date().replace(day=1)
    last = first_this - timedelta(days=1)
    return _days_period(last.replace(day=1), last, tz)


def parse_period(arg: str | None, *, now: datetime, timezone: str) -> Period:
    """`today`, `week` (7 days), `month` (30 days, the default), `year` (365 days), each
    ending with today; `2026-11` (a calendar month); `2026-11-01..2026-11-30` (both days
    included). Days are the program's local days."""
    tz = ZoneInfo(timezone)
    today = now.astimezone(tz).date()
    word = (arg or "month").strip().lower()
    if word in _ROLLING:
        return _days_period(today - timedelta(days=_ROLLING[word] - 1), today, tz)
    try:
        if match := _MONTH.match(word):
            first = date(int(match[1]), int(match[2]), 1)
            last = (first + timedelta(days=31)).replace(day=1) - timedelta(days=1)
        elif match := _RANGE.match(word):
            first, last = date.fromisoformat(match[1]), date.fromisoformat(match[2])
        else:
            raise BadPeriod(arg)
    except (ValueError, OverflowError) as exc:  # 2026-13, 2026-02-30, 9999-12
        raise BadPeriod(arg) from exc
    if last < first or (last - first).days >= MAX_DAYS:
        raise BadPeriod(arg)
    if first < EARLIEST or last > LATEST:  # 0001-01, 9999-12: no program's days
        raise BadPeriod(arg)
    return _days_period(first, last, tz)
