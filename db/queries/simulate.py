"""A proposed program replayed over the recorded sales of a period, writing nothing
(`python -m bot simulate`, `/simulate`): per partner and per promotion, the points and
vouchers it would have issued, their expected cost at the program's own observed rates,
and each partner's settlement position against what really happened.

The reading streams: the sales and refunds of the period's buyers, from the window the tier
at the period's start depends on (db/rules/simulation.py `history_start`) to its end,
ordered by member and time, in batches through server-side cursors, so memory holds one
member's sales at a time whatever the period's size. All of it is read in one READ ONLY,
REPEATABLE READ transaction: one snapshot, nothing written.

What is compared ("actual") is the ledger: the points the period's sales earned, net of the
claw-backs of their refunds posted before the period's end, and the promotion postings
(TxKind.PROMOTION) related to those sales or refunds. What the simulation changes is only
what a sale earns; redemptions, welcome and invitation points, stamp cards and gifts are as
recorded, and so is who was in the club when (club_payments; the club's welcome points are
not a sale's). What points paid for stays what it was, so the money of what a partner redeemed
(its settlement's points redeemed, at the current point value) does not change; what it
issues (its settlement's points issued, changed by the simulated points) is priced at the
proposed point value:
simulated position = points redeemed × current point value
                     − (points issued + simulated − actual points it issued) × proposed value,
rounded as settlement rounds. With the point value unchanged this is the actual position less
the points change × the point value.
Vouchers are settled when claimed, not in the period: their expected cost is shown apart.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_DOWN, Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from db.ledger.models import TxKind
from db.queries.settlement import Settlement, settlement
from db.rules.points import CENT, expected_money, points_worth
from db.rules.program import Program, Promotion, Text
from db.rules.simulation import (
    MemberFacts,
    Simulator,
    Tally,
    club_spans,
    history_start,
    use_counts,
)

BATCH = 20_000  # rows per round trip of each cursor


@dataclass(frozen=True, slots=True)
class Rate:
    """An observed rate: `part` of `whole`; None when there is nothing to measure (then the
    cost is counted in full, the cautious assumption)."""

    part: int
    whole: int

    @property
    def value(self) -> Decimal:
        if self.whole <= 0:
            return Decimal(1)
        return min(Decimal(max(self.part, 0)) / Decimal(self.whole), Decimal(1))

    @property
    def measured(self) -> bool:
        return self.whole > 0


@dataclass(frozen=True, slots=True)
class PartnerLine:
    slug: str
    name: str
    sales: int
    actual_points: int  # the sales' own points, net of refunds, as posted
    simulated_points: int
    actual_promotion_points: int  # promotion points it funded, as posted
    promotion_points: int  # promotion points it would fund
    vouchers: int  # vouchers its sales would give
    voucher_points: int  # the value of the vouchers it would fund
    position: Decimal  # its settlement position for the period, as it was
    simulated_position: Decimal
    point_value: Decimal
    actual_voucher_points: int = 0  # the value of the promotion vouchers it funded, as given

    @property
    def actual_issued(self) -> int:
        return self.actual_points + self.actual_promotion_points

    @property
    def simulated_issued(self) -> int:
        return self.simulated_points + self.promotion_points

    @property
    def points_change(self) -> int:
        return self.simulated_issued - self.actual_issued

    @property
    def position_change(self) -> Decimal:
        return self.simulated_position - self.position


@dataclass(frozen=True, slots=True)
class PromotionLine:
    slug: str
    title: Text
    funded_by: str  # "bakery 50 %, books 50 %", "program", or "" (the selling partner)
    sales: int  # sales it applied to
    points: int
    vouchers: int
    stamps: int
    voucher_points: int
    actual_points: int | None  # as posted; None: the ledger has no posting of it
    actual_voucher_points: int = 0  # the value of the vouchers it gave, as given


@dataclass(frozen=True, slots=True)
class Simulation:
    start: datetime
    end: datetime
    point_value: Decimal  # the proposed program's
    currency: str
    partners: list[PartnerLine]
    promotions: list[PromotionLine]
    program_points: int  # promotion points the program itself would fund
    program_voucher_points: int
    actual_program_points: int  # promotion points the program funded, as posted
    sales: int
    refunds: int
    members: int
    unknown_partner_sales: int
    points_rate: Rate  # points redeemed of points issued, over the program's history
    voucher_rate: Rate  # funded vouchers claimed of those claimed or expired
    actual_point_value: Decimal = Decimal("0.01")  # the current program's
    actual_program_voucher_points: int = 0  # promotion vouchers the program funded, as given

    def cost(
        self, points: int, voucher_points: int = 0, point_value: Decimal | None = None
    ) -> Decimal:
        """Expected money cost: points at the redemption rate, vouchers' value at the claim
        rate, at the proposed point value (or `point_value`), to the cent."""
        weighted = points * self.points_rate.value + voucher_points * self.voucher_rate.value
        return expected_money(weighted, self.point_value if point_value is None else point_value)

    def actual_cost(self, points: int, voucher_points: int = 0) -> Decimal:
        """The same for what was issued as it was, at the current point value."""
        return self.cost(points, voucher_points, self.actual_point_value)

    def partner_cost(self, line: PartnerLine) -> Decimal:
        """Of every point the partner would issue (its sales' own and the promotion points
        it funds) and the vouchers it funds."""
        return self.cost(line.simulated_issued, line.voucher_points)

    def partner_actual_cost(self, line: PartnerLine) -> Decimal:
        return self.actual_cost(line.actual_issued, line.actual_voucher_points)

    def promotion_cost(self, line: PromotionLine) -> Decimal:
        return self.cost(line.points, line.voucher_points)

    def promotion_actual_cost(self, line: PromotionLine) -> Decimal | None:
        """None when the ledger has nothing of it."""
        if line.actual_points is None and not line.actual_voucher_points:
            return None
        return self.actual_cost(line.actual_points or 0, line.actual_voucher_points)

    @property
    def program_cost(self) -> Decimal:
        return self.cost(self.program_points, self.program_voucher_points)

    @property
    def program_actual_cost(self) -> Decimal:
        return self.actual_cost(self.actual_program_points, self.actual_program_voucher_points)

    @property
    def position(self) -> Decimal:
        """The partners' settlement positions as they were, added up."""
        return sum((p.position for p in self.partners), Decimal(0))

    @property
    def simulated_position(self) -> Decimal:
        return sum((p.simulated_position for p in self.partners), Decimal(0))

    @property
    def position_change(self) -> Decimal:
        return self.simulated_position - self.position

    @property
    def vouchers(self) -> int:
        return sum(p.vouchers for p in self.partners)

    @property
    def actual_points(self) -> int:
        return sum(p.actual_issued for p in self.partners) + self.actual_program_points

    @property
    def simulated_points(self) -> int:
        return sum(p.simulated_issued for p in self.partners) + self.program_points

    @property
    def total_cost(self) -> Decimal:
        return sum((self.partner_cost(p) for p in self.partners), self.program_cost)

    @property
    def total_actual_cost(self) -> Decimal:
        return sum((self.partner_actual_cost(p) for p in self.partners), self.program_actual_cost)


def simulated_position(
    redeemed: int, issued: int, current_value: Decimal, proposed_value: Decimal
) -> Decimal:
    """A partner's settlement position under the proposed file: the money of the points it
    redeemed as it was (what points paid for stays what it was), less the points it would
    issue at the proposed point value; to the cent, rounded as settlement rounds
    (db.rules.points.points_money: towards zero), so an unchanged point value gives
    settlement's own figure."""
    exact = points_worth(redeemed, current_value) - points_worth(issued, proposed_value)
    return exact.quantize(CENT, rounding=ROUND_DOWN)


def currency_change(proposed: Program, current: Program) -> str:
    """Why `proposed` cannot be compared with `current` ("" if it can): a simulation puts the
    ledger's figures, in the current currency, next to the proposed file's."""
    before, after = current.program.currency, proposed.program.currency
    if before == after:
        return ""
    return (
        f"the proposed file changes the currency from {before} to {after}: "
        "a simulation compares figures in one currency"
    )


async def read_only(session: AsyncSession) -> None:
    """Make the session's transaction (it must not have begun) read only, on one snapshot."""
    await session.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"))
    # Compiling these few big statements costs more than it saves (half a second each on a
    # million rows, measured by benchmarks/simulate.py).
    await session.execute(text("SET LOCAL jit = off"))


_SALES = TxKind.sql_in("kind", TxKind.SALES)  # the till's sales
_T_SALES = TxKind.sql_in("t.kind", TxKind.SALES)

# The period's buyers, with what is known of them before the stream's start ($3): where they
# bought, and their last purchase; the promotions their sales before the period ($1)
# got (promotion_awards: points, stamps or a voucher), for max_per_member; and the periods
# their club payments bought that reach into the period (a refunded one's until its refund).
_MEMBERS = f"""
WITH active AS (
    SELECT DISTINCT member_id AS id FROM transactions
    WHERE {_SALES} AND created_at >= $1 AND created_at < $2
)
SELECT m.id, m.joined_at, m.birthday,
    (SELECT array_agg(DISTINCT t.partner_id) FROM transactions AS t
     WHERE t.member_id = m.id AND {_T_SALES} AND t.created_at <= $3) AS partners,
    (SELECT max(t.created_at) FROM transactions AS t
     WHERE t.member_id = m.id AND {_T_SALES} AND t.created_at <= $3) AS last_at,
    (SELECT array_agg(ARRAY[pa.promotion, s.partner_id::text,
                            to_char(s.created_at AT TIME ZONE $4, 'YYYY-MM-DD"T"HH24:MI')]
                      ORDER BY s.id)
     FROM promotion_awards AS pa JOIN transactions AS s ON s.id = pa.sale_id
     WHERE s.member_id = m.id AND s.created_at < $1) AS uses,
    (SELECT array_agg(ARRAY[c.period_from, c.ends])
     FROM (SELECT period_from, least(period_until, coalesce(refunded_at, period_until)) AS ends
           FROM club_payments WHERE member_id = m.id AND period_from < $2) AS c
     WHERE c.ends > c.period_from AND c.ends > $1) AS club
FROM members AS m JOIN active AS a ON a.id = m.id
ORDER BY m.id
"""

# Their sales and refunds from the stream's start to the period's end, money in cents.
_EVENTS = f"""
SELECT t.member_id, t.id, t.partner_id, t.created_at,
       (t.amount * 100)::bigint, (t.paid * 100)::bigint,
       (coalesce(t.discount, 0) * 100)::bigint, t.reverses_id
FROM transactions AS t
WHERE {TxKind.sql_in("t.kind", TxKind.SPEND)} AND t.created_at > $3 AND t.created_at < $2
  AND t.amount IS NOT NULL  -- a refund of money, not the take-back of a promotion or stamp
  AND t.member_id IN (
      SELECT member_id FROM transactions
      WHERE {_SALES} AND created_at >= $1 AND created_at < $2)
ORDER BY t.member_id, t.created_at, t.id
"""

# What the ledger gave the period's sales: their own points (less the claw-backs of their
# refunds posted before the end) per partner, and the promotion postings related to them
# per funder (NULL: the program) and promotion.
_ACTUAL = text(
    f"""
    WITH sales AS (
        SELECT id FROM transactions
        WHERE {_SALES} AND created_at >= :start AND created_at < :end
    ), moves AS (
        SELECT id FROM sales
        UNION ALL
        SELECT r.id FROM transactions AS r JOIN sales AS s ON s.id = r.reverses_id
        WHERE r.kind = 'reverse' AND r.created_at >= :start AND r.created_at < :end
    ), given AS (
        SELECT p.id, p.reason FROM transactions AS p JOIN sales AS s ON s.id = p.related_id
        WHERE p.kind = 'promotion'
    ), promos AS (
        -- the promotions' points, less what refunds before the end took back
        SELECT id, reason FROM given
        UNION ALL
        SELECT b.id, b.reason FROM transactions AS b JOIN given AS g ON g.id = b.reverses_id
        WHERE b.kind = 'reverse' AND b.created_at >= :start AND b.created_at < :end
    )
    SELECT 'base' AS what, a.partner_id, NULL AS promotion, -sum(e.amount) AS points
    FROM moves AS m JOIN entries AS e ON e.transaction_id = m.id
    JOIN accounts AS a ON a.id = e.account_id
    WHERE a.kind = 'partner_issued'
    GROUP BY a.partner_id
    UNION ALL
    SELECT 'promotion', a.partner_id, p.reason, -sum(e.amount)
    FROM promos AS p JOIN entries AS e ON e.transaction_id = p.id
    JOIN accounts AS a ON a.id = e.account_id
    WHERE a.kind IN ('partner_issued', 'program')
    GROUP BY a.partner_id, p.reason
    UNION ALL
    -- the vouchers promotions gave them, per funder, less those a refund before the end voided
    SELECT 'voucher', v.funder_id, pa.promotion, sum(v.points)
    FROM promotion_awards AS pa JOIN sales AS s ON s.id = pa.sale_id
    JOIN vouchers AS v ON v.id = pa.voucher_id
    WHERE NOT (v.status = 'voided' AND v.resolved_at < :end)
    GROUP BY v.funder_id, pa.promotion
    """
)

# The program's own rates, over its whole history: points redeemed (at partners, donated
# included) of the points ever issued (by partners and by the program, net of claw-backs);
# funded vouchers (stamp cards, promotions) claimed of those that were claimed or expired.
_RATES = text(
    """
    SELECT
        (SELECT coalesce(sum(balance) FILTER (WHERE kind = 'partner_redeemed'), 0)
         FROM account_balances WHERE unit = 'points') AS redeemed,
        (SELECT coalesce(-sum(balance) FILTER (WHERE kind IN ('partner_issued', 'program')), 0)
         FROM account_balances WHERE unit = 'points') AS issued,
        (SELECT count(*) FROM vouchers
         WHERE source <> 'catalogue' AND status = 'claimed') AS claimed,
        (SELECT count(*) FROM vouchers
         WHERE source <> 'catalogue' AND status IN ('claimed', 'expired')) AS resolved
    """
)


def _facts(row: Any, slugs: dict[int, str], program: Program) -> MemberFacts:
    birthday = row[2]
    recorded = [
        (slug, slugs.get(int(partner), ""), datetime.fromisoformat(at).replace(tzinfo=zone))
        for slug, partner, at in (row[5] or [])
        for zone in (program.program.zone,)
    ]
    return MemberFacts(
        id=row[0],
        joined_at=row[1],
        birthday=birthday,
        partners_before={slugs[p] for p in (row[3] or []) if p in slugs},
        last_purchase_at=row[4],
        uses=use_counts(program, recorded, birthday),
        club=club_spans((begin, end) for begin, end in row[6])
        if row[6] and program.club is not None
        else [],
    )


async def _batches(cursor: Any, batch: int) -> AsyncGenerator[list[Any], None]:
    """The cursor's rows in batches, the next one asked for before this one is worked on,
    so the database reads while Python computes."""
    ahead = asyncio.ensure_future(cursor.fetch(batch))
    try:
        while rows := await ahead:
            ahead = asyncio.ensure_future(cursor.fetch(batch))
            await asyncio.sleep(0)  # the request leaves before the rows are worked on
            yield rows
    finally:
        if not ahead.done():
            ahead.cancel()
            await asyncio.gather(ahead, return_exceptions=True)


@asynccontextmanager
async def _in_snapshot(engine: AsyncEngine, snapshot: str) -> AsyncIterator[AsyncConnection]:
    """Another connection, read only, in the snapshot `snapshot` (pg_export_snapshot)."""
    if not re.fullmatch(r"[0-9A-Fa-f-]+", snapshot):  # PostgreSQL's own id, checked all the same
        raise ValueError(f"not a snapshot id: {snapshot!r}")
    async with engine.connect() as conn:
        await conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"))
        await conn.execute(text("SET LOCAL jit = off"))
        await conn.execute(text(f"SET TRANSACTION SNAPSHOT '{snapshot}'"))
        yield conn  # read only: closing the connection ends its transaction (rolled back)


async def _driver(conn: AsyncConnection) -> Any:
    return (await conn.get_raw_connection()).driver_connection


async def _replay(
    session: AsyncSession,
    snapshot: str,
    program: Program,
    start: datetime,
    end: datetime,
    slugs: dict[int, str],
    batch: int,
) -> Simulator:
    """The events stream on the session's connection, the members' facts on another (each
    reads ahead on its own), merged by member."""
    simulator = Simulator(program, start, end)
    since = history_start(start, program)
    pg = await _driver(await session.connection())
    engine = (await session.connection()).engine
    async with _in_snapshot(engine, snapshot) as other:
        facts_pg = await _driver(other)
        zone = program.program.timezone
        members = _batches(await facts_pg.cursor(_MEMBERS, start, end, since, zone), batch)
        events = _batches(await pg.cursor(_EVENTS, start, end, since), batch)
        pending: list[Any] = []
        current = None
        sale, refund = simulator.sale, simulator.refund
        async for rows in events:
            for row in rows:
                member_id = row[0]
                if member_id != current:
                    while True:  # both are ordered by member: the facts keep up
                        if not pending:
                            pending = list(reversed(await anext(members)))
                        facts = pending.pop()
                        if facts[0] == member_id:
                            break
                    simulator.member(_facts(facts, slugs, program), row[3])
                    current = member_id
                if row[7] is not None:  # a refund: of the sale row[7]
                    refund(row[3], row[7], row[4], row[5])
                else:
                    sale(row[1], slugs.get(row[2], ""), row[3], row[4], row[6], row[5])
        await members.aclose()
    simulator.finish()
    return simulator


async def _ledger(
    engine: AsyncEngine, snapshot: str, current: Program, start: datetime, end: datetime
) -> tuple[list[Any], Any, Settlement]:
    """What really happened, read in the snapshot `snapshot`: the period's sales' points,
    the program's rates, and settlement's positions."""
    async with (
        _in_snapshot(engine, snapshot) as conn,
        AsyncSession(bind=conn) as session,
    ):
        actual = list((await session.execute(_ACTUAL, {"start": start, "end": end})).all())
        rates = (await session.execute(_RATES)).one()
        report = await settlement(session, current, start=start, end=end)
    return actual, rates, report


def _promotions(program: Program) -> list[Promotion]:
    """The report's promotions: the file's, in its order, then the club's multiplier (its
    own line, under the club's name)."""
    club = program.club_promotion
    return [*program.promotions, *([club] if club is not None else [])]


def _funded(promo_funded_by: Any) -> str:
    if promo_funded_by is None:
        return ""
    if promo_funded_by == "program":
        return "program"
    return ", ".join(f"{slug} {share} %" for slug, share in promo_funded_by.items())


async def simulate(
    session: AsyncSession,
    proposed: Program,
    current: Program,
    *,
    start: datetime,
    end: datetime,
    batch: int = BATCH,
) -> Simulation:
    """Replay [start, end) through `proposed`; `current` is the program the ledger was
    posted under (its point value prices the actual settlement positions). The caller
    makes the session read only (`read_only`) before anything else runs in it. A proposed
    file in another currency is refused (ValueError; the callers say so first): the figures
    as they were are in the current one."""
    if currency_change(proposed, current):
        raise ValueError(currency_change(proposed, current))
    partners = {
        int(row[0]): (row[1], row[2])
        for row in (await session.execute(text("SELECT id, slug, name FROM partners"))).all()
    }
    slugs = {pid: slug for pid, (slug, _name) in partners.items()}
    by_slug = {slug: pid for pid, slug in slugs.items()}
    # The ledger's sums run on a second connection in the same snapshot while the replay
    # streams: the database works on them while Python works on the sales.
    snapshot = await session.scalar(text("SELECT pg_export_snapshot()"))
    engine = (await session.connection()).engine
    ledger = asyncio.create_task(_ledger(engine, str(snapshot), current, start, end))
    try:
        simulator = await _replay(session, str(snapshot), proposed, start, end, slugs, batch)
    except BaseException:
        ledger.cancel()
        await asyncio.gather(ledger, return_exceptions=True)
        raise
    actual, rates, report = await ledger
    totals = simulator.totals
    actual_base: dict[int | None, int] = {}
    actual_funded: dict[int | None, int] = {}
    actual_promotions: dict[str, int] = {}
    actual_vouchers: dict[int | None, int] = {}
    promotion_vouchers: dict[str, int] = {}
    for row in actual:
        points = int(row.points)
        if row.what == "voucher":
            actual_vouchers[row.partner_id] = actual_vouchers.get(row.partner_id, 0) + points
            promotion_vouchers[row.promotion] = promotion_vouchers.get(row.promotion, 0) + points
        elif row.what == "base":
            actual_base[row.partner_id] = actual_base.get(row.partner_id, 0) + points
        else:
            actual_funded[row.partner_id] = actual_funded.get(row.partner_id, 0) + points
            if row.promotion:
                actual_promotions[row.promotion] = actual_promotions.get(row.promotion, 0) + points
    positions = {p.slug: p for p in report.partners}
    pv = proposed.program.point_value
    lines = []
    names = {p.slug: str(p.name) for p in proposed.partners}
    shown = [p.slug for p in proposed.partners if not p.charity]
    shown += sorted(slug for slug in totals.partners if slug not in shown)
    shown += sorted(slugs[pid] for pid in actual_base if pid in slugs and slugs[pid] not in shown)
    for slug in shown:
        tally = totals.partners.get(slug, Tally())
        pid = by_slug.get(slug)
        position = positions.get(slug)
        net = position.net_points if position is not None else 0
        actual_issued = actual_base.get(pid, 0) + actual_funded.get(pid, 0)
        simulated_issued = tally.points + totals.funded_points.get(slug, 0)
        redeemed = position.points_redeemed if position is not None else 0
        issued = position.points_issued if position is not None else 0
        lines.append(
            PartnerLine(
                slug=slug,
                name=names.get(slug) or (partners[pid][1] if pid in partners else slug),
                sales=tally.sales,
                actual_points=actual_base.get(pid, 0),
                simulated_points=tally.points,
                actual_promotion_points=actual_funded.get(pid, 0),
                promotion_points=totals.funded_points.get(slug, 0),
                vouchers=tally.vouchers,
                voucher_points=totals.funded_voucher_points.get(slug, 0),
                position=report.money(net),
                simulated_position=simulated_position(
                    redeemed,
                    issued + simulated_issued - actual_issued,
                    report.point_value,
                    pv,
                ),
                point_value=pv,
                actual_voucher_points=actual_vouchers.get(pid, 0),
            )
        )
    promotions = [
        PromotionLine(
            slug=promo.slug,
            title=promo.title,
            funded_by=_funded(promo.funded_by),
            sales=(tally := totals.promotions.get(promo.slug, Tally())).sales,
            points=tally.points,
            vouchers=tally.vouchers,
            stamps=tally.stamps,
            voucher_points=tally.voucher_points,
            actual_points=actual_promotions.get(promo.slug),
            actual_voucher_points=promotion_vouchers.get(promo.slug, 0),
        )
        for promo in _promotions(proposed)
    ]
    return Simulation(
        start=start,
        end=end,
        point_value=pv,
        currency=proposed.program.currency,
        partners=lines,
        promotions=promotions,
        program_points=totals.funded_points.get(None, 0),
        program_voucher_points=totals.funded_voucher_points.get(None, 0),
        actual_program_points=actual_funded.get(None, 0),
        sales=totals.sales,
        refunds=totals.refunds,
        members=totals.members,
        unknown_partner_sales=totals.unknown_partner_sales,
        points_rate=Rate(int(rates.redeemed), int(rates.issued)),
        voucher_rate=Rate(int(rates.claimed), int(rates.resolved)),
        actual_point_value=current.program.point_value,
        actual_program_voucher_points=actual_vouchers.get(None, 0),
    )
