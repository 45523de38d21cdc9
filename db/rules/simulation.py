"""A proposed program replayed over recorded sales (`python -m bot simulate`, `/simulate`):
what each sale would have earned and which promotions it would have got. Pure: the
reading is db/queries/simulate.py's; the rules are the ones the till uses
(db/rules/points.py, db/rules/discounts.py, db/rules/promotions.py), restated here only as
exact integer arithmetic where a million sales make Decimal the slow part.

The member's tier at a sale is not stored with it; it is worked out as the bot decides it:
up at once when a sale leaves the member's trailing spend (TIER_WINDOW) at a higher tier's
min_spend (db/usecases/purchases.py `_tier_after_sale`), and set from the trailing spend
by the nightly recalculation (db/usecases/tiers.py, at NIGHTLY local time, bot/workers/
jobs.py), up or down. So the tier at any moment follows from the spend history alone, given
that the nightly job ran every night. The spend is the money members actually paid, as
recorded: a proposed discount does not change which tier the recorded money reached.

Money is handled in integer cents (the ledger's money has two decimals), points as ints.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from db.rules.program import TIER_WINDOW, Program, Promotion
from db.rules.promotions import Shopper, awards, funders, limit, matching, split, use_key

NIGHTLY = time(2, 30)  # the local time of the nightly tier recalculation (bot/workers/jobs.py)


def _scaled(value: Decimal, places: int) -> int:
    """`value` × 10^places as an exact int (the program file's decimals are validated)."""
    scaled = value.scaleb(places)
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{value} has more than {places} decimals")
    return int(scaled)


def cents(value: Decimal) -> int:
    return _scaled(value, 2)


def money(value: int) -> Decimal:
    """Cents back to money."""
    return Decimal(value).scaleb(-2)


@dataclass(frozen=True, slots=True)
class Earning:
    """db.rules.points.earned_points for one partner at one tier, as integers:
    floor(paid × earn_percent / 100 × multiplier / point_value) with paid in cents,
    earn_percent and multiplier in thousandths and point_value in millionths is
    floor(paid_cents × EP × M / (10^4 × PV))."""

    factor: int  # EP × M
    divisor: int  # 10^4 × PV

    @classmethod
    def of(cls, earn_percent: Decimal, multiplier: Decimal, point_value: Decimal) -> Earning:
        return cls(
            _scaled(earn_percent, 3) * _scaled(multiplier, 3), 10**4 * _scaled(point_value, 6)
        )

    def points(self, paid_cents: int) -> int:
        return max(0, paid_cents * self.factor // self.divisor)


def discount_cents(amount: int, percent_hundredths: int) -> int:
    """db.rules.discounts.discount_of in cents: half-up to the cent, at most amount − 1 cent."""
    if not percent_hundredths or amount <= 1:
        return 0
    off = (2 * amount * percent_hundredths + 10**4) // (2 * 10**4)
    return min(off, amount - 1)


def kept(points: int, charged: int, remaining: int) -> int:
    """db.rules.points.share_kept in cents: the part of `points` the money not refunded keeps."""
    if remaining >= charged:
        return points
    return points * max(remaining, 0) // charged


def last_nightly_run(at: datetime, program: Program) -> datetime:
    """The last nightly recalculation at or before `at`."""
    zone = program.program.zone
    local = at.astimezone(zone)
    run = datetime.combine(local.date(), NIGHTLY, tzinfo=zone)
    if run > at:
        run = datetime.combine(local.date() - timedelta(days=1), NIGHTLY, tzinfo=zone)
    return run


def history_start(start: datetime, program: Program) -> datetime:
    """The earliest moment whose spend the tier at `start` depends on: the window of the last
    nightly recalculation before it (spend after this moment, exclusive, is read)."""
    return last_nightly_run(start, program) - TIER_WINDOW


@dataclass(slots=True)
class MemberFacts:
    """What the simulation knows of a member before their first event in the stream."""

    id: int
    joined_at: datetime
    birthday: date | None
    partners_before: set[str] = field(default_factory=set)  # where they bought before
    last_purchase_at: datetime | None = None
    uses: dict[str, int] = field(default_factory=dict)  # promotion uses by use_key


@dataclass(slots=True)
class Tally:
    """What the proposed program gives, summed over the sales of one partner or one
    promotion."""

    sales: int = 0
    points: int = 0  # net of refunds
    vouchers: int = 0
    stamps: int = 0
    voucher_points: int = 0  # the vouchers' value (their reward's points)


@dataclass(slots=True)
class Totals:
    """The simulation's sums: per selling partner its base points; per promotion what it
    gave; per funder (a partner slug, None for the program) the promotion points and the
    voucher value it pays."""

    partners: dict[str, Tally] = field(default_factory=dict)
    promotions: dict[str, Tally] = field(default_factory=dict)
    funded_points: dict[str | None, int] = field(default_factory=dict)
    funded_voucher_points: dict[str | None, int] = field(default_factory=dict)
    sales: int = 0
    refunds: int = 0
    members: int = 0
    unknown_partner_sales: int = 0  # sold at a partner the proposed program no longer has


@dataclass(slots=True)
class _Sale:
    partner: str
    charged: int  # as recorded (refunds are of this money)
    refunded: int
    base: int
    awards: list[tuple[Promotion, int, int, str | None]]  # (promotion, points, stamps, reward)


class _Tiers:
    """One member's tier, as the bot decides it (see the module's docstring)."""

    __slots__ = ("_floors", "_program", "_window", "index", "next_run", "spend")

    def __init__(self, program: Program, floors: list[int], first: datetime) -> None:
        self._program = program
        self._floors = floors  # the tiers' min_spend in cents, lowest first
        self._window: deque[tuple[datetime, int]] = deque()
        self.spend = 0
        self.index = 0
        # Before the first nightly run after the stream's start no tier is read.
        self.next_run = last_nightly_run(first, program) + timedelta(days=1)

    def _for_spend(self) -> int:
        index = 0
        for i, floor in enumerate(self._floors):
            if floor <= self.spend:
                index = i
        return index

    def _drop_until(self, at: datetime) -> None:
        since = at - TIER_WINDOW
        window = self._window
        while window and window[0][0] <= since:
            self.spend -= window.popleft()[1]

    def advance(self, at: datetime) -> None:
        """Apply the nightly recalculation(s) between the last event and `at`: only the
        last counts (it sets the tier from the spend, whatever it was)."""
        if at < self.next_run:
            return
        run = last_nightly_run(at, self._program)
        self._drop_until(run)
        self.index = self._for_spend()
        self.next_run = run + timedelta(days=1)

    def spent(self, at: datetime, paid: int, *, sale: bool) -> None:
        """Money spent (a sale's paid part) or given back (a refund's money part, negative)
        at `at`; a sale may move the member up at once."""
        self._window.append((at, paid))
        self.spend += paid
        self._drop_until(at)
        if sale and self.index + 1 < len(self._floors):
            self.index = max(self.index, self._for_spend())


class Simulator:
    """Feed it members in order, each followed by their events in time order
    (`member`, then `sale`/`refund`), then `finish`. Only sales at or after `start` count;
    earlier events build the member's tier and history."""

    def __init__(self, program: Program, start: datetime) -> None:
        self.program = program
        self.start = start
        self.totals = Totals()
        pv = program.program.point_value
        self._tiers = program.tiers
        self._floors = [cents(t.min_spend) for t in program.tiers]
        self._discounts = [_scaled(t.discount_percent, 2) for t in program.tiers]
        self._earning = {
            p.slug: [Earning.of(p.earn_percent, t.multiplier, pv) for t in program.tiers]
            for p in program.partners
            if not p.charity
        }
        self._promoted = {
            slug for slug in self._earning if program.promotions_at(slug)
        }  # partners where a promotion may apply
        self._facts: MemberFacts | None = None
        self._tier: _Tiers | None = None
        self._sales: dict[int, _Sale] = {}

    def member(self, facts: MemberFacts, first_event: datetime) -> None:
        self._finish_member()
        self._facts = facts
        self._tier = _Tiers(self.program, self._floors, first_event)
        self.totals.members += 1

    def sale(
        self,
        tx_id: int,
        partner: str,
        at: datetime,
        amount: int,
        discount: int,
        paid: int,
    ) -> None:
        """A recorded sale (money in cents): `amount` typed, `discount` taken off it,
        `paid` in money after points."""
        facts, tiers = self._facts, self._tier
        assert facts is not None and tiers is not None
        tiers.advance(at)
        index = tiers.index
        if at >= self.start:
            self._simulate(tx_id, partner, at, amount, discount, paid, index, facts)
        tiers.spent(at, paid, sale=True)
        facts.partners_before.add(partner)
        facts.last_purchase_at = at

    def refund(self, at: datetime, sale_id: int, amount: int, paid: int) -> None:
        """A recorded refund of `amount` of the money the sale `sale_id` charged, `paid` of
        it in money."""
        tiers = self._tier
        assert tiers is not None
        tiers.advance(at)
        tiers.spent(at, -paid, sale=False)
        sale = self._sales.get(sale_id)
        if sale is not None:
            sale.refunded += amount
            self.totals.refunds += 1

    def _simulate(
        self,
        tx_id: int,
        partner: str,
        at: datetime,
        amount: int,
        discount: int,
        paid: int,
        index: int,
        facts: MemberFacts,
    ) -> None:
        totals = self.totals
        totals.sales += 1
        earning = self._earning.get(partner)
        if earning is None:
            totals.unknown_partner_sales += 1
            return
        charged = amount - discount
        # What points paid stays what it was: the member pays the rest in money.
        by_points = charged - paid
        new_discount = discount_cents(amount, self._discounts[index])
        new_charged = amount - new_discount
        new_paid = max(new_charged - by_points, 0)
        base = earning[index].points(new_paid)
        found: list[tuple[Promotion, int, int, str | None]] = []
        if partner in self._promoted:
            found = self._promotions(partner, at, new_charged, base, index, facts)
        self._sales[tx_id] = _Sale(partner, charged, 0, base, found)

    def _promotions(
        self,
        partner: str,
        at: datetime,
        charged: int,
        base: int,
        index: int,
        facts: MemberFacts,
    ) -> list[tuple[Promotion, int, int, str | None]]:
        program = self.program
        shopper = Shopper(
            tier=str(self._tiers[index].name),
            joined_at=facts.joined_at,
            birthday=facts.birthday,
            first_ever=facts.last_purchase_at is None,
            first_at_partner=partner not in facts.partners_before,
            last_purchase_at=facts.last_purchase_at,
        )
        local = at.astimezone(program.program.zone)
        chosen = []
        for promo in matching(program, partner, money(charged), at, shopper):
            allowed = limit(promo)
            if allowed:
                key = use_key(promo, partner, local, facts.birthday)
                if facts.uses.get(key, 0) >= allowed:
                    continue
            chosen.append(promo)
        given = awards(base, chosen)
        for award in given:
            promo = award.promotion
            if limit(promo):
                key = use_key(promo, partner, local, facts.birthday)
                facts.uses[key] = facts.uses.get(key, 0) + 1
        return [(a.promotion, a.points, a.stamps, a.reward) for a in given]

    def _finish_member(self) -> None:
        totals = self.totals
        for sale in self._sales.values():
            remaining = sale.charged - sale.refunded
            line = totals.partners.setdefault(sale.partner, Tally())
            line.sales += 1
            line.points += kept(sale.base, sale.charged, remaining)
            for promo, points, stamps, reward in sale.awards:
                tally = totals.promotions.setdefault(promo.slug, Tally())
                tally.sales += 1
                shares = funders(promo, sale.partner)
                if points:
                    net = kept(points, sale.charged, remaining)
                    tally.points += net
                    for who, part in split(net, shares):
                        totals.funded_points[who] = totals.funded_points.get(who, 0) + part
                tally.stamps += stamps
                rules = self.program.reward(reward) if reward is not None else None
                if rules is not None and remaining > 0:  # a sale refunded in full keeps none
                    tally.vouchers += 1
                    line.vouchers += 1
                    tally.voucher_points += rules.points
                    for who, part in split(rules.points, shares):
                        funded = totals.funded_voucher_points
                        funded[who] = funded.get(who, 0) + part
        self._sales = {}
        self._facts = None
        self._tier = None

    def finish(self) -> Totals:
        self._finish_member()
        return self.totals


def use_counts(
    program: Program, recorded: Iterable[tuple[str, str, datetime]], birthday: date | None
) -> dict[str, int]:
    """A member's promotion uses recorded before the period, by use_key: `recorded` are
    (promotion slug, selling partner, local time of the sale) of their promotion postings.
    Promotions the proposed program does not have count nothing."""
    uses: dict[str, int] = {}
    for slug, partner, at in recorded:
        promo = program.promotion(slug)
        if promo is not None and limit(promo):
            key = use_key(promo, partner, at, birthday)
            uses[key] = uses.get(key, 0) + 1
    return uses
