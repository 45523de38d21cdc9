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

Club membership is as recorded: a member is in the club at a sale when one of their club
payments' periods holds it (a refunded payment's only until its refund). The proposed
program's club perks then apply as at the till: its discount on top of the tier's
(Program.discount_percent), its multiplier (Program.club_promotion, paid by the program)
and the promotions for club members (`who.club`). A proposed program without a [club]
gives members in the club nothing more than others.

Money is handled in integer cents (the ledger's money has two decimals), points as ints.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from db.rules.program import TIER_WINDOW, TIERS_NIGHTLY, Program, Promotion, When
from db.rules.promotions import (
    Award,
    Shopper,
    awards,
    eligible,
    funders,
    limit,
    refund_parts,
    runs_on,
    split,
    use_key,
)

NIGHTLY = TIERS_NIGHTLY  # the local time of the nightly tier recalculation


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


def next_nightly_run(run: datetime, program: Program) -> datetime:
    """The nightly recalculation after the one at `run`: the next local day's, at NIGHTLY in
    the program's zone (not `run` + 24 hours, which is an hour off across a DST change)."""
    zone = program.program.zone
    day = run.astimezone(zone).date() + timedelta(days=1)
    return datetime.combine(day, NIGHTLY, tzinfo=zone)


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
    # Their time in the club from the period's start on: [from, until) spans, in order,
    # not overlapping (club_spans).
    club: list[tuple[datetime, datetime]] = field(default_factory=list)


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
    awards: list[Award]
    # The money refunded after each of its refunds, in order (the till takes a promotion's
    # points back refund by refund: see Simulator._kept_parts).
    steps: tuple[int, ...] = ()


class _Nights:
    """The nightly recalculations' moments over a span, looked up by bisection (a million
    sales would otherwise convert a million times to local time)."""

    __slots__ = ("_program", "_runs")

    def __init__(self, program: Program, first: datetime, last: datetime) -> None:
        self._program = program
        run, self._runs = last_nightly_run(first, program), []
        zone = program.program.zone
        day = run.date()
        while run <= last + timedelta(days=1):
            # In UTC, the driver's zone: aware datetimes of one tzinfo compare fast.
            self._runs.append(run.astimezone(UTC))
            day += timedelta(days=1)
            run = datetime.combine(day, NIGHTLY, tzinfo=zone)

    def last(self, at: datetime) -> datetime:
        """The last run at or before `at`."""
        i = bisect_right(self._runs, at)
        if 0 < i < len(self._runs):
            return self._runs[i - 1]
        return last_nightly_run(at, self._program)

    def after(self, run: datetime) -> datetime:
        """The run after the run `run`."""
        i = bisect_right(self._runs, run)
        if 0 < i < len(self._runs):
            return self._runs[i]
        return next_nightly_run(run, self._program).astimezone(UTC)


class _Tiers:
    """One member's tier, as the bot decides it (see the module's docstring)."""

    __slots__ = ("_floors", "_nights", "_window", "index", "next_run", "spend")

    def __init__(self, nights: _Nights, floors: list[int], first: datetime) -> None:
        self._nights = nights
        self._floors = floors  # the tiers' min_spend in cents, lowest first
        # (the moment it leaves the trailing window, money) of each spend in it
        self._window: deque[tuple[datetime, int]] = deque()
        self.spend = 0
        self.index = 0
        # Before the first nightly run after the stream's start no tier is read.
        self.next_run = nights.after(nights.last(first))

    def _for_spend(self) -> int:
        index = 0
        for i, floor in enumerate(self._floors):
            if floor <= self.spend:
                index = i
        return index

    def _drop_until(self, at: datetime) -> None:
        window = self._window
        while window and window[0][0] <= at:
            self.spend -= window.popleft()[1]

    def advance(self, at: datetime) -> None:
        """Apply the nightly recalculation(s) between the last event and `at`: only the
        last counts (it sets the tier from the spend, whatever it was)."""
        if at < self.next_run:
            return
        run = self._nights.last(at)
        self._drop_until(run)
        self.index = self._for_spend()
        self.next_run = self._nights.after(run)

    def spent(self, at: datetime, paid: int, *, sale: bool) -> None:
        """Money spent (a sale's paid part) or given back (a refund's money part, negative)
        at `at`; a sale may move the member up at once."""
        self._window.append((at + TIER_WINDOW, paid))
        self.spend += paid
        self._drop_until(at)
        up = self.index + 1
        if sale and up < len(self._floors) and self.spend >= self._floors[up]:
            self.index = self._for_spend()


class Simulator:
    """Feed it members in order, each followed by their events in time order
    (`member`, then `sale`/`refund`), then `finish`. Only sales in [start, end) count;
    earlier events build the member's tier and history."""

    def __init__(self, program: Program, start: datetime, end: datetime) -> None:
        self.program = program
        self.start = start.astimezone(UTC)
        self.totals = Totals()
        pv = program.program.point_value
        self._zone = program.program.zone
        self._nights = _Nights(program, history_start(start, program), end)
        self._tiers = program.tiers
        self._floors = [cents(t.min_spend) for t in program.tiers]
        self._discounts = [_scaled(t.discount_percent, 2) for t in program.tiers]
        # Members in the club: the tier's discount and the club's together.
        self._club_discounts = [
            _scaled(program.discount_percent(t.name, True), 2) for t in program.tiers
        ]
        self._has_club = program.club is not None
        self._earning = {
            p.slug: [Earning.of(p.earn_percent, t.multiplier, pv) for t in program.tiers]
            for p in program.partners
            if not p.charity
        }
        # matching()'s candidates, looked up once: each partner's promotions in the file's
        # order, with their min_purchase in cents, whether their `when` can say no (else
        # runs_on is not asked) and what max_per_member allows (0: no limit); and a quicker
        # first look at them (gates): (min_purchase, only a first purchase here, only a first
        # purchase ever), a sale none of them lets through getting no promotion. Both twice:
        # for members in the club, and for the others without the promotions only members get.
        self._candidates, self._gates = self._looked_up(program, members=False)
        self._club_candidates, self._club_gates = self._looked_up(program, members=True)
        # awards() of promotions without a multiplier do not depend on the points earned.
        self._fixed: dict[tuple[str, ...], list[Award]] = {}
        self._funders: dict[tuple[str, str], list[tuple[str | None, int]]] = {}
        self._facts: MemberFacts | None = None
        self._tier: _Tiers | None = None
        self._club: list[tuple[datetime, datetime]] = []  # the member's club spans to come
        self._sales: dict[int, _Sale] = {}

    def _looked_up(
        self, program: Program, *, members: bool
    ) -> tuple[
        dict[str, list[tuple[Promotion, int, bool, int]]], dict[str, list[tuple[int, bool, bool]]]
    ]:
        """Each partner's candidates and gates, for members in the club or the others."""
        # A replayed sale has no itemised lines: a promotion with categories never applies.
        promotions = {
            slug: [
                p
                for p in program.promotions_at(slug)
                if (members or not p.who.club) and not p.when.categories
            ]
            for slug in self._earning
        }
        candidates = {
            slug: [(p, cents(p.min_purchase), p.when != When(), limit(p)) for p in promos]
            for slug, promos in promotions.items()
        }
        gates = {
            slug: [
                (cents(p.min_purchase), p.who.first_at_partner, p.who.first_ever) for p in promos
            ]
            for slug, promos in promotions.items()
        }
        return candidates, gates

    def member(self, facts: MemberFacts, first_event: datetime) -> None:
        self._finish_member()
        self._facts = facts
        self._tier = _Tiers(self._nights, self._floors, first_event)
        self._club = facts.club[::-1] if self._has_club else []  # the next one last
        self.totals.members += 1

    def _in_club(self, at: datetime) -> bool:
        """Whether the member is in the club at `at` (their sales come in time order)."""
        spans = self._club
        while spans and spans[-1][1] <= at:
            spans.pop()
        return bool(spans) and spans[-1][0] <= at

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
        if at >= self.start:
            totals = self.totals
            totals.sales += 1
            earning = self._earning.get(partner)
            if earning is None:
                totals.unknown_partner_sales += 1
            else:
                index = tiers.index
                club = bool(self._club) and self._in_club(at)
                charged = amount - discount
                # What points paid stays what it was: the member pays the rest in money.
                by_points = charged - paid
                percent = (self._club_discounts if club else self._discounts)[index]
                new_charged = amount - discount_cents(amount, percent) if percent else amount
                base = earning[index].points(max(new_charged - by_points, 0))
                found = _NONE
                first_here = partner not in facts.partners_before
                first_ever = facts.last_purchase_at is None
                for minimum, here, ever in (self._club_gates if club else self._gates)[partner]:
                    if (
                        new_charged >= minimum
                        and (first_here or not here)
                        and (first_ever or not ever)
                    ):
                        found = self._promotions(
                            (self._club_candidates if club else self._candidates)[partner],
                            partner,
                            at,
                            new_charged,
                            base,
                            index,
                            facts,
                            club,
                        )
                        break
                self._sales[tx_id] = _Sale(partner, charged, 0, base, found)
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
            sale.steps = (*sale.steps, sale.refunded)
            self.totals.refunds += 1

    def _promotions(
        self,
        candidates: list[tuple[Promotion, int, bool, int]],
        partner: str,
        at: datetime,
        charged: int,
        base: int,
        index: int,
        facts: MemberFacts,
        club: bool,
    ) -> list[Award]:
        """db.rules.promotions.matching over the partner's candidates (the same tests in
        the same order: min_purchase, runs_on, eligible), less those max_per_member has
        used up; then awards, and the uses they count."""
        zone = self._zone
        local = at.astimezone(zone)
        shopper = None
        first_here = partner not in facts.partners_before
        chosen: list[tuple[Promotion, str | None]] = []
        for promo, minimum, timed, allowed in candidates:
            if charged < minimum or (timed and not runs_on(promo, local)):
                continue
            who = promo.who
            # Two of eligible()'s tests first, without building a Shopper: most sales are
            # neither a first purchase nor the first at the partner.
            if (who.first_at_partner and not first_here) or (
                who.first_ever and facts.last_purchase_at is not None
            ):
                continue
            if shopper is None:
                shopper = Shopper(
                    tier=str(self._tiers[index].name),
                    joined_at=facts.joined_at,
                    birthday=facts.birthday,
                    club=club,
                    first_ever=facts.last_purchase_at is None,
                    first_at_partner=first_here,
                    last_purchase_at=facts.last_purchase_at,
                )
            if not eligible(promo, shopper, local, zone):
                continue
            key = None
            if allowed:
                key = use_key(promo, partner, local, facts.birthday)
                if facts.uses.get(key, 0) >= allowed:
                    continue
            chosen.append((promo, key))
        if not chosen:
            return _NONE
        promos = [promo for promo, _key in chosen]
        if any(p.effect.multiplier is not None for p in promos):
            given = awards(base, promos)
        else:
            slugs = tuple(p.slug for p in promos)
            given = self._fixed.get(slugs)  # type: ignore[assignment]
            if given is None:
                given = self._fixed[slugs] = awards(base, promos)
        for promo, key in chosen:
            if key is not None and any(a.promotion is promo for a in given):
                facts.uses[key] = facts.uses.get(key, 0) + 1
        return given

    def _split(self, promo: Promotion, seller: str, points: int) -> list[tuple[str | None, int]]:
        shares = self._funders.get((promo.slug, seller))
        if shares is None:
            shares = self._funders[promo.slug, seller] = funders(promo, seller)
        if len(shares) == 1:
            return [(shares[0][0], points)] if points else []
        return split(points, shares)

    def _kept_parts(
        self, promo: Promotion, sale: _Sale, points: int
    ) -> list[tuple[str | None, int]]:
        """What each funder of an award of `points` still pays after the sale's refunds, as
        the till takes them back (db/usecases/promotions.py, refund_claws): refund by refund,
        each refund's part of the whole award shared among the funders as they paid
        (db.rules.promotions.refund_parts), so the ledger's split is reproduced to the point."""
        paid = self._split(promo, sale.partner, points)
        if not sale.steps:
            return paid
        weights = [part for _, part in paid]
        returned = [0] * len(paid)
        before = 0
        for after in sale.steps:
            due = kept(points, sale.charged, sale.charged - before) - kept(
                points, sale.charged, sale.charged - after
            )
            back = refund_parts(due, weights, returned)
            returned = [r + b for r, b in zip(returned, back, strict=True)]
            before = after
        return [(who, part - r) for (who, part), r in zip(paid, returned, strict=True) if part > r]

    def _finish_member(self) -> None:
        totals = self.totals
        partners, funded = totals.partners, totals.funded_points
        for sale in self._sales.values():
            remaining = sale.charged - sale.refunded
            line = partners.get(sale.partner)
            if line is None:
                line = partners[sale.partner] = Tally()
            line.sales += 1
            line.points += kept(sale.base, sale.charged, remaining) if sale.refunded else sale.base
            if not sale.awards:
                continue
            for award in sale.awards:
                promo, points, stamps, reward = (
                    award.promotion,
                    award.points,
                    award.stamps,
                    award.reward,
                )
                tally = totals.promotions.setdefault(promo.slug, Tally())
                tally.sales += 1
                if points:
                    net = kept(points, sale.charged, remaining)
                    tally.points += net
                    for who, part in self._kept_parts(promo, sale, points):
                        funded[who] = funded.get(who, 0) + part
                tally.stamps += stamps
                rules = self.program.reward(reward) if reward is not None else None
                if rules is not None and remaining > 0:  # a sale refunded in full keeps none
                    tally.vouchers += 1
                    line.vouchers += 1
                    tally.voucher_points += rules.points
                    for who, part in self._split(promo, sale.partner, rules.points):
                        values = totals.funded_voucher_points
                        values[who] = values.get(who, 0) + part
        self._sales = {}
        self._facts = None
        self._tier = None
        self._club = []

    def finish(self) -> Totals:
        self._finish_member()
        return self.totals


_NONE: list[Award] = []  # shared: never appended to


def club_spans(
    periods: Iterable[tuple[datetime, datetime]],
) -> list[tuple[datetime, datetime]]:
    """A member's club payments' [from, until) periods (a refunded one's until its refund)
    as the spans they were in the club: in order, empty ones left out, overlapping or
    touching ones joined."""
    spans: list[tuple[datetime, datetime]] = []
    for begin, end in sorted(periods):
        if end <= begin:
            continue
        if spans and begin <= spans[-1][1]:
            if end > spans[-1][1]:
                spans[-1] = (spans[-1][0], end)
        else:
            spans.append((begin, end))
    return spans


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
