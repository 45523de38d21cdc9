"""The program's figures (KPIs) for a period, for the coalition or for one partner.

Everything is counted in SQL from the ledger's own tables, a handful of queries per call and
no loop over members in Python. Words used below:

- the period is [start, end); a *sale* is a transaction of kind `earn` or `redeem` (its
  `amount` is the purchase total, `paid` the part paid in money); a *refund* is a `reverse`
  (its `amount` is the refunded part of the purchase, `paid` the money given back);
- *in scope* means: for the coalition, at any partner; for a partner, at that partner;
- a member *exists at `end`* when they joined before `end` and had not deleted their account
  by then. Stocks (member counts, lifetime value) count such members; flows (new members,
  sales, active members, points) count every posting in the period, including those of
  members who have left since, because those postings happened.

Figures (`Kpis`):

- `members`: coalition: members existing at `end`. Partner: members existing at `end` with at
  least one sale at the partner before `end` (its customers).
- `new_members`: coalition: members who joined in the period. Partner: members whose first
  sale at the partner is in the period.
- `active_members`: members with at least one sale in scope in the period.
- `sales`, `sales_total`, `sales_paid`: the number of sales in scope in the period and the sums
  of their `amount` and `paid`; `average_check` = sales_total / sales (refunds not netted).
- `refunds_total`: the sum of `amount` of refunds in scope posted in the period.
- `repeat_members`: active members with two sales or more in scope in the period;
  `repeat_rate` = repeat_members / active_members.
- `customers`, `lifetime_spend`: members existing at `end` with at least one sale in scope
  before `end`, and the money they spent in scope before `end` (the `paid` of their sales
  minus the `paid` of their refunds); `lifetime_value` (CLV) = lifetime_spend / customers.
  It is "since joining, as of `end`", not limited to the period.
- `points_issued`, `points_redeemed`: the net points that left the `partner_issued` accounts
  and reached the `partner_redeemed` accounts in scope in the period, from `entries` (so a
  refund's claw-back lowers points issued in the period it is posted: the settlement's
  numbers exactly); `redemption_rate` = points_redeemed / points_issued.
- `invited`, `invited_rewarded`: members who joined in the period with an inviter, and those
  of them whose `referral` reward was posted before `end`; `referral_conversion` =
  invited_rewarded / invited. Partner: `invited` stays the coalition's count and
  `invited_rewarded` counts the rewards triggered by a sale at the partner, so partners' rates
  add up to the coalition's.
- `cross_partner_members`: coalition: members with sales at two partners or more in the
  period. Partner: its active members who also had a sale at another partner in the period.
  `cross_partner_rate` = cross_partner_members / active_members.
- `days`: per day of the period in the program's time zone: sales, active members, points
  issued and redeemed, in scope (points issued may be negative on a day of refunds).

A ratio whose denominator is zero is None ("no data"), not 0.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncSession

from db.ledger import unit_of_work
from db.program import Program
from db.rules import CENT
from db.staff import StaffInfo, audit

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

    @property
    def average_check(self) -> Decimal | None:
        return mean(self.sales_total, self.sales)

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


@dataclass(frozen=True, slots=True)
class PartnerKpis:
    partner_id: int
    slug: str
    name: str
    kpis: Kpis  # without `days`


# --------------------------------------------------------------------------- the queries
# Statements are text: these are reports, easier to check against the definitions above as
# SQL than as ORM expressions. `{partner}` fragments are fixed SQL, never user input.


def _sale(t: str = "") -> str:
    return f"{t}kind IN ('earn', 'redeem')"


def _in_period(t: str = "") -> str:
    return f"{t}created_at >= :start AND {t}created_at < :end"


_EXISTS_AT_END = "(m.deleted_at IS NULL OR m.deleted_at >= :end)"
_JOINED_IN_PERIOD = "m.joined_at >= :start AND m.joined_at < :end"

# Members, enrolment and invitations (coalition); a single pass over `members`.
_MEMBERS = text(
    f"""
    SELECT count(*) FILTER (WHERE m.joined_at < :end AND {_EXISTS_AT_END}) AS members,
           count(*) FILTER (WHERE {_JOINED_IN_PERIOD}) AS new_members,
           count(*) FILTER (WHERE {_JOINED_IN_PERIOD} AND m.referred_by_id IS NOT NULL)
               AS invited,
           count(*) FILTER (
               WHERE {_JOINED_IN_PERIOD} AND m.referred_by_id IS NOT NULL AND EXISTS (
                   SELECT FROM transactions AS r
                   WHERE r.member_id = m.id AND r.kind = 'referral' AND r.created_at < :end
               )
           ) AS rewarded
    FROM members AS m
    """
)

# Sales in the period per member (the coalition): pairs first, so that counting a member's
# partners is a count of rows, not a sort for count(DISTINCT).
_PERIOD_SALES = text(
    f"""
    WITH pairs AS (
        SELECT t.member_id, t.partner_id, count(*) AS sales, sum(t.amount) AS amount,
               sum(t.paid) AS paid
        FROM transactions AS t
        WHERE {_sale("t.")} AND {_in_period("t.")}
        GROUP BY t.member_id, t.partner_id
    ), per_member AS (
        SELECT member_id, sum(sales) AS sales, count(*) AS partners, sum(amount) AS amount,
               sum(paid) AS paid
        FROM pairs
        GROUP BY member_id
    )
    SELECT count(*) AS active_members,
           coalesce(sum(sales), 0) AS sales,
           coalesce(sum(amount), 0) AS sales_total,
           coalesce(sum(paid), 0) AS sales_paid,
           count(*) FILTER (WHERE sales >= 2) AS repeat_members,
           count(*) FILTER (WHERE partners >= 2) AS cross_partner_members
    FROM per_member
    """
)

# Customers and lifetime spend as of `end`, and the period's refunds, from the same rows.
_LIFETIME = text(
    f"""
    WITH per_member AS (
        SELECT t.member_id,
               bool_or({_sale("t.")}) AS bought,
               sum(CASE WHEN t.kind = 'reverse' THEN -t.paid ELSE t.paid END) AS spend,
               sum(t.amount) FILTER (WHERE t.kind = 'reverse' AND t.created_at >= :start)
                   AS refunds
        FROM transactions AS t
        WHERE t.kind IN ('earn', 'redeem', 'reverse') AND t.created_at < :end
        GROUP BY t.member_id
    )
    SELECT count(*) FILTER (WHERE p.bought AND {_EXISTS_AT_END}) AS customers,
           coalesce(sum(p.spend) FILTER (WHERE {_EXISTS_AT_END}), 0) AS spend,
           coalesce(sum(p.refunds), 0) AS refunds
    FROM per_member AS p JOIN members AS m ON m.id = p.member_id
    """
)

# The same per partner. `{partner}` is empty (every partner) or restricts to `:partner_id`.
_PERIOD_SALES_BY_PARTNER = f"""
    WITH here AS (
        SELECT t.partner_id, t.member_id, count(*) AS sales, sum(t.amount) AS amount,
               sum(t.paid) AS paid
        FROM transactions AS t
        WHERE {_sale("t.")} AND {_in_period("t.")} {{partner}}
        GROUP BY t.partner_id, t.member_id
    )
    SELECT h.partner_id,
           count(*) AS active_members,
           sum(h.sales) AS sales,
           sum(h.amount) AS sales_total,
           sum(h.paid) AS sales_paid,
           count(*) FILTER (WHERE h.sales >= 2) AS repeat_members,
           count(*) FILTER (WHERE EXISTS (
               SELECT FROM transactions AS o
               WHERE o.member_id = h.member_id AND {_sale("o.")} AND {_in_period("o.")}
                 AND o.partner_id <> h.partner_id
           )) AS cross_partner_members
    FROM here AS h
    GROUP BY h.partner_id
"""

_LIFETIME_BY_PARTNER = f"""
    WITH pairs AS (
        SELECT t.partner_id, t.member_id,
               min(t.created_at) FILTER (WHERE {_sale("t.")}) AS first_sale,
               sum(CASE WHEN t.kind = 'reverse' THEN -t.paid ELSE t.paid END) AS spend,
               sum(t.amount) FILTER (WHERE t.kind = 'reverse' AND t.created_at >= :start)
                   AS refunds
        FROM transactions AS t
        WHERE t.kind IN ('earn', 'redeem', 'reverse') AND t.created_at < :end {{partner}}
        GROUP BY t.partner_id, t.member_id
    )
    SELECT p.partner_id,
           count(*) FILTER (WHERE p.first_sale IS NOT NULL AND {_EXISTS_AT_END}) AS customers,
           count(*) FILTER (WHERE p.first_sale >= :start) AS new_customers,
           coalesce(sum(p.spend) FILTER (WHERE {_EXISTS_AT_END}), 0) AS spend,
           coalesce(sum(p.refunds), 0) AS refunds
    FROM pairs AS p JOIN members AS m ON m.id = p.member_id
    GROUP BY p.partner_id
"""

_POINTS_BY_PARTNER = f"""
    SELECT a.partner_id,
           -coalesce(sum(e.amount) FILTER (WHERE a.kind = 'partner_issued'), 0) AS issued,
           coalesce(sum(e.amount) FILTER (WHERE a.kind = 'partner_redeemed'), 0) AS redeemed
    FROM transactions AS t
    JOIN entries AS e ON e.transaction_id = t.id
    JOIN accounts AS a ON a.id = e.account_id
    WHERE {_in_period("t.")} AND a.kind IN ('partner_issued', 'partner_redeemed') {{partner}}
    GROUP BY a.partner_id
"""

_REWARDS_BY_PARTNER = f"""
    SELECT s.partner_id, count(*) AS rewarded
    FROM members AS m
    JOIN transactions AS r
      ON r.member_id = m.id AND r.kind = 'referral' AND r.created_at < :end
    JOIN transactions AS s ON s.id = r.related_id
    WHERE {_JOINED_IN_PERIOD} AND m.referred_by_id IS NOT NULL {{partner}}
    GROUP BY s.partner_id
"""

# Per local day: sales and active members, points issued and redeemed; every day listed.
_DAYS = f"""
    WITH days AS (
        SELECT CAST(d AS date) AS day
        FROM generate_series(CAST(:first_day AS date), CAST(:last_day AS date),
                             interval '1 day') AS d
    ), sales AS (
        SELECT CAST(t.created_at AT TIME ZONE :tz AS date) AS day, count(*) AS sales,
               count(DISTINCT t.member_id) AS active_members
        FROM transactions AS t
        WHERE {_sale("t.")} AND {_in_period("t.")} {{sales_partner}}
        GROUP BY 1
    ), points AS (
        SELECT CAST(t.created_at AT TIME ZONE :tz AS date) AS day,
               -coalesce(sum(e.amount) FILTER (WHERE a.kind = 'partner_issued'), 0) AS issued,
               coalesce(sum(e.amount) FILTER (WHERE a.kind = 'partner_redeemed'), 0)
                   AS redeemed
        FROM transactions AS t
        JOIN entries AS e ON e.transaction_id = t.id
        JOIN accounts AS a ON a.id = e.account_id
        WHERE {_in_period("t.")} AND a.kind IN ('partner_issued', 'partner_redeemed')
              {{points_partner}}
        GROUP BY 1
    )
    SELECT days.day, coalesce(sales.sales, 0), coalesce(sales.active_members, 0),
           coalesce(points.issued, 0), coalesce(points.redeemed, 0)
    FROM days
    LEFT JOIN sales ON sales.day = days.day
    LEFT JOIN points ON points.day = days.day
    ORDER BY days.day
"""


def _variants(sql: str, **fragments: str) -> dict[bool, TextClause]:
    """The statement for every partner (False) and for one, `:partner_id` (True)."""
    return {
        False: text(sql.format(**{name: "" for name in fragments})),
        True: text(sql.format(**fragments)),
    }


_PERIOD_SALES_BY_PARTNER_SQL = _variants(
    _PERIOD_SALES_BY_PARTNER, partner="AND t.partner_id = :partner_id"
)
_LIFETIME_BY_PARTNER_SQL = _variants(
    _LIFETIME_BY_PARTNER, partner="AND t.partner_id = :partner_id"
)
_POINTS_BY_PARTNER_SQL = _variants(_POINTS_BY_PARTNER, partner="AND a.partner_id = :partner_id")
_REWARDS_BY_PARTNER_SQL = _variants(_REWARDS_BY_PARTNER, partner="AND s.partner_id = :partner_id")
_DAYS_SQL = _variants(
    _DAYS,
    sales_partner="AND t.partner_id = :partner_id",
    points_partner="AND a.partner_id = :partner_id",
)


# --------------------------------------------------------------------------- use cases


def _local_days(program: Program, start: datetime, end: datetime) -> tuple[date, date]:
    tz = ZoneInfo(program.program.timezone)
    first = start.astimezone(tz).date()
    last = (end - timedelta(microseconds=1)).astimezone(tz).date()
    return first, max(first, last)


async def _days(
    session: AsyncSession,
    program: Program,
    params: dict[str, Any],
    partner_id: int | None,
) -> tuple[DayFigures, ...]:
    first, last = _local_days(program, params["start"], params["end"])
    rows = await session.execute(
        _DAYS_SQL[partner_id is not None],
        {
            **params,
            "partner_id": partner_id,
            "first_day": first,
            "last_day": last,
            "tz": program.program.timezone,
        },
    )
    return tuple(DayFigures(r[0], int(r[1]), int(r[2]), int(r[3]), int(r[4])) for r in rows)


async def kpis(
    session: AsyncSession,
    program: Program,
    *,
    start: datetime,
    end: datetime,
    partner_id: int | None = None,
) -> Kpis:
    """The KPIs for [start, end): the coalition's, or one partner's with `partner_id`."""
    params: dict[str, Any] = {"start": start, "end": end}
    if partner_id is not None:
        rows = await _partner_kpis(session, params, [partner_id], one=True)
        days = await _days(session, program, params, partner_id)
        await session.rollback()
        return replace(
            rows[0],
            points_issued=sum(d.points_issued for d in days),
            points_redeemed=sum(d.points_redeemed for d in days),
            days=days,
        )
    members = (await session.execute(_MEMBERS, params)).one()
    sales = (await session.execute(_PERIOD_SALES, params)).one()
    lifetime = (await session.execute(_LIFETIME, params)).one()
    days = await _days(session, program, params, None)
    await session.rollback()
    return Kpis(
        start=start,
        end=end,
        partner_id=None,
        members=int(members.members),
        new_members=int(members.new_members),
        active_members=int(sales.active_members),
        sales=int(sales.sales),
        sales_total=Decimal(sales.sales_total),
        sales_paid=Decimal(sales.sales_paid),
        refunds_total=Decimal(lifetime.refunds),
        repeat_members=int(sales.repeat_members),
        customers=int(lifetime.customers),
        lifetime_spend=Decimal(lifetime.spend),
        points_issued=sum(d.points_issued for d in days),
        points_redeemed=sum(d.points_redeemed for d in days),
        invited=int(members.invited),
        invited_rewarded=int(members.rewarded),
        cross_partner_members=int(sales.cross_partner_members),
        days=days,
    )


async def kpis_by_partner(
    session: AsyncSession, program: Program, *, start: datetime, end: datetime
) -> list[PartnerKpis]:
    """Every partner's KPIs for [start, end) (without the daily series), in partner order."""
    params: dict[str, Any] = {"start": start, "end": end}
    partners = (
        await session.execute(text("SELECT id, slug, name FROM partners ORDER BY id"))
    ).all()
    rows = await _partner_kpis(session, params, [p.id for p in partners])
    await session.rollback()
    return [PartnerKpis(p.id, p.slug, p.name, k) for p, k in zip(partners, rows, strict=True)]


async def _partner_kpis(
    session: AsyncSession, params: dict[str, Any], ids: list[int], *, one: bool = False
) -> list[Kpis]:
    """Kpis of the partners `ids`, in that order; one query per figure, grouped by partner.
    With `one`, the queries are restricted to the single partner in `ids` and points are
    left at 0 (the caller sums them from the days)."""
    args = {**params, "partner_id": ids[0] if one else None}

    async def by_partner(statements: dict[bool, TextClause]) -> dict[int, Any]:
        return {row.partner_id: row for row in await session.execute(statements[one], args)}

    sales = await by_partner(_PERIOD_SALES_BY_PARTNER_SQL)
    lifetime = await by_partner(_LIFETIME_BY_PARTNER_SQL)
    rewards = await by_partner(_REWARDS_BY_PARTNER_SQL)
    points = {} if one else await by_partner(_POINTS_BY_PARTNER_SQL)
    invited = (await session.execute(_MEMBERS, params)).one().invited
    result = []
    for pid in ids:  # a handful of partners, not members: the figures are the SQL's
        s, life, pts = sales.get(pid), lifetime.get(pid), points.get(pid)
        result.append(
            Kpis(
                start=params["start"],
                end=params["end"],
                partner_id=pid,
                members=int(life.customers) if life else 0,
                new_members=int(life.new_customers) if life else 0,
                active_members=int(s.active_members) if s else 0,
                sales=int(s.sales) if s else 0,
                sales_total=Decimal(s.sales_total) if s else Decimal(0),
                sales_paid=Decimal(s.sales_paid) if s else Decimal(0),
                refunds_total=Decimal(life.refunds) if life else Decimal(0),
                repeat_members=int(s.repeat_members) if s else 0,
                customers=int(life.customers) if life else 0,
                lifetime_spend=Decimal(life.spend) if life else Decimal(0),
                points_issued=int(pts.issued) if pts else 0,
                points_redeemed=int(pts.redeemed) if pts else 0,
                invited=int(invited),
                invited_rewarded=int(rewards[pid].rewarded) if pid in rewards else 0,
                cross_partner_members=int(s.cross_partner_members) if s else 0,
            )
        )
    return result


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


# --------------------------------------------------------------------------- periods

MAX_DAYS = 3 * 366
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
    except ValueError as exc:  # 2026-13, 2026-02-30
        raise BadPeriod(arg) from exc
    if last < first or (last - first).days >= MAX_DAYS:
        raise BadPeriod(arg)
    return _days_period(first, last, tz)
