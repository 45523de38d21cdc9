"""Promotions, decided: which of the program's `[[promotions]]` a sale gets, and what each
gives. Pure: the till's posting (db/usecases/promotions.py), the member's `/offers`, the
personal offers' job and the simulator (`python -m bot simulate`) all decide here.

The order is fixed and documented (docs/owner.md, "Promotions"): every promotion that
matches applies once, in the program file's order within each kind of effect:

1. multipliers multiply the points the sale earns (at the member's tier):
   the sale gets floor(earned × m1 × m2 × …); each multiplier's part is what it added to the
   running product, so the parts add up to the total exactly;
2. bonus points add;
3. stamps add to the selling partner's stamp cards;
4. reward vouchers are issued.

A promotion with `when.categories` applies to a sale with itemised lines (db/rules/lines.py)
of those categories, and counts only their money, as its users would read "×2 on coffee
beans, from 30.00 of them": its `min_purchase` is compared with those lines' money charged
(their share of what the sale charged, after the member's discount: charged_on), and its
multiplier multiplies the points earned on those lines only (each line earns its share of the
sale's points: awards). A bonus, stamps or a voucher are given once, as by any promotion. A
sale without lines (a cashier's in the bot) gets no promotion with categories.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal, localcontext
from zoneinfo import ZoneInfo

from db.rules.discounts import ZERO
from db.rules.lines import Line, amount_in
from db.rules.points import CENT, share_kept
from db.rules.program import WEEKDAYS, Program, Promotion

BIRTHDAY_WEEK = 7  # the birthday and the six days after it


@dataclass(frozen=True, slots=True)
class Shopper:
    """What a promotion may ask about the member at a sale. `first_ever`,
    `first_at_partner` and `last_purchase_at` are about their purchases before this one
    (read only when a promotion at the partner asks: needs_history)."""

    tier: str
    joined_at: datetime
    birthday: date | None = None
    club: bool = False
    first_ever: bool = False
    first_at_partner: bool = False
    last_purchase_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Award:
    """What one promotion gives one sale: `points` (a multiplier's part or a bonus),
    `stamps`, or a voucher for `reward`."""

    promotion: Promotion
    points: int = 0
    stamps: int = 0
    reward: str | None = None

    @property
    def slug(self) -> str:
        return self.promotion.slug


def local(now: datetime, zone: ZoneInfo) -> datetime:
    return now.astimezone(zone)


def running(promo: Promotion, partner: str, at: datetime) -> bool:
    """Whether `promo` runs at `partner` at the local time `at` (its partners and `when`)."""
    if promo.partners and partner not in promo.partners:
        return False
    return runs_on(promo, at)


def runs_on(promo: Promotion, at: datetime) -> bool:
    """Whether `promo`'s `when` holds at the local time `at` (anywhere it applies)."""
    when = promo.when
    day = at.date()
    if when.from_ is not None and day < when.from_:
        return False
    if when.until is not None and day > when.until:
        return False
    if when.weekdays and WEEKDAYS[day.weekday()] not in when.weekdays:
        return False
    if when.minutes is not None:
        start, end = when.minutes
        minute = at.hour * 60 + at.minute
        if not start <= minute < end:
            return False
    return True


def upcoming(promo: Promotion, today: date) -> bool:
    """Whether `promo` has not ended by the local day `today` (it may not have started)."""
    return promo.when.until is None or today <= promo.when.until


def birthday_in(birthday: date, year: int) -> date:
    """The birthday in `year` (29 February is kept on 28 February in other years)."""
    try:
        return birthday.replace(year=year)
    except ValueError:
        return date(year, 2, 28)


def _week_year(birthday: date | None, today: date) -> int | None:
    """The year the birthday week that holds the local day `today` began in (None: `today`
    is in none): the birthday and the six days after it (a birthday on 30 December reaches
    into January)."""
    if birthday is None:
        return None
    for year in (today.year, today.year - 1):
        start = birthday_in(birthday, year)
        if start <= today < start + timedelta(days=BIRTHDAY_WEEK):
            return year
    return None


def birthday_week(birthday: date | None, today: date) -> bool:
    """Whether the local day `today` is in the birthday week: the birthday and the six days
    after it (a birthday on 30 December reaches into January)."""
    return _week_year(birthday, today) is not None


def full_years(since: date, today: date) -> int:
    years = today.year - since.year
    if (today.month, today.day) < (since.month, since.day):
        years -= 1
    return max(years, 0)


def eligible(promo: Promotion, shopper: Shopper, at: datetime, zone: ZoneInfo) -> bool:
    """Whether `shopper` is one of the members `promo` is for at the local time `at`."""
    who = promo.who
    if who.tiers and shopper.tier not in who.tiers:
        return False
    if who.club and not shopper.club:
        return False
    if who.first_ever and not shopper.first_ever:
        return False
    if who.first_at_partner and not shopper.first_at_partner:
        return False
    if who.inactive_days:
        since = shopper.last_purchase_at or shopper.joined_at
        if at - since.astimezone(zone) < timedelta(days=who.inactive_days):
            return False
    if who.birthday and not birthday_week(shopper.birthday, at.date()):
        return False
    if who.member_years:
        joined = shopper.joined_at.astimezone(zone).date()
        if full_years(joined, at.date()) < who.member_years:
            return False
    return True


def charged_on(promo: Promotion, charged: Decimal, lines: Sequence[Line] = ()) -> Decimal | None:
    """The money of a sale that charged `charged` (after the member's discount) that `promo`
    counts: all of it; for a promotion with categories, the money of the sale's lines in
    them less their share of the discount, half-up to the cent (None: the sale has no such
    line, and the promotion does not apply to it)."""
    categories = promo.when.categories
    if not categories:
        return charged
    mine = amount_in(lines, categories)
    if mine is None:
        return None
    whole = sum((line.amount for line in lines), ZERO)
    with localcontext() as ctx:
        ctx.prec = 50
        return (mine * charged / whole).quantize(CENT, rounding=ROUND_HALF_UP)


def in_sale(promo: Promotion, charged: Decimal, lines: Sequence[Line] = ()) -> bool:
    """Whether a sale that charged `charged`, with `lines`, is one `promo` is for: enough
    money (`min_purchase`) where the promotion counts it (charged_on)."""
    basis = charged_on(promo, charged, lines)
    return basis is not None and basis >= promo.min_purchase


def matching(
    program: Program,
    partner: str,
    charged: Decimal,
    now: datetime,
    shopper: Shopper,
    lines: Sequence[Line] = (),
) -> list[Promotion]:
    """The promotions a sale at `partner` of `charged` (the money charged, after a tier
    discount), with its itemised `lines` (if any), at `now` gets, in the file's order.
    `max_per_member` is not looked at here: it is counted where the sale is posted, under
    concurrency."""
    zone = program.program.zone
    at = local(now, zone)
    return [
        promo
        for promo in program.promotions_at(partner)
        if in_sale(promo, charged, lines)
        and runs_on(promo, at)
        and eligible(promo, shopper, at, zone)
    ]


def needs_history(program: Program, partner: str) -> bool:
    """Whether a promotion at `partner` asks about the member's earlier purchases."""
    return any(p.who.needs_history for p in program.promotions_at(partner))


def _floor(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_FLOOR))


def _money_by_category(lines: Sequence[Line]) -> dict[str | None, Decimal]:
    """The sale's money by its lines' categories (None: lines without one); a sale without
    lines is one part, of weight 1."""
    if not lines:
        return {None: Decimal(1)}
    money: dict[str | None, Decimal] = {}
    for line in lines:
        money[line.category] = money.get(line.category, ZERO) + line.amount
    return money


def awards(
    earned: int, promotions: Iterable[Promotion], lines: Sequence[Line] = ()
) -> list[Award]:
    """What each of `promotions` (that matched one sale, in the file's order) gives the sale
    that earned `earned` points, with its itemised `lines` (if any), in the documented order:
    multipliers, bonuses, stamps, vouchers. A multiplier that adds nothing (a sale that
    earned 0) gives no award.

    Each line earns its share of `earned` by its money, and a multiplier multiplies the
    share of the lines it counts (all of them; for a promotion with categories, those in
    them): the sale gets floor(Σ share × the product of its multipliers) in all, which is
    floor(earned × m1 × m2 × …) when every multiplier counts every line."""
    promos = list(promotions)
    result: list[Award] = []
    money = _money_by_category(lines)
    whole = sum(money.values(), ZERO)
    products = dict.fromkeys(money, Decimal(1))
    before = earned
    with localcontext() as ctx:
        ctx.prec = 50
        for promo in promos:
            multiplier = promo.effect.multiplier
            if multiplier is not None:
                categories = promo.when.categories
                for category in products:
                    if not categories or category in categories:
                        products[category] *= multiplier
                weighted = sum((money[c] * products[c] for c in money), ZERO)
                total = _floor(earned * weighted / whole)
                if total > before:
                    result.append(Award(promo, points=total - before))
                before = total
    result += [Award(p, points=p.effect.bonus_points) for p in promos if p.effect.bonus_points]
    result += [Award(p, stamps=p.effect.stamps) for p in promos if p.effect.stamps]
    result += [Award(p, reward=p.effect.reward) for p in promos if p.effect.reward]
    return result


def funders(promo: Promotion, seller: str) -> list[tuple[str | None, int]]:
    """Who pays for `promo` and their percent: partner slugs, or None for the program.
    By default the selling partner pays it all."""
    if promo.funded_by is None:
        return [(seller, 100)]
    if promo.funded_by == "program":
        return [(None, 100)]
    return list(promo.funded_by.items())


def split(points: int, shares: Sequence[tuple[str | None, int]]) -> list[tuple[str | None, int]]:
    """`points` split by percent `shares`, to the point: each gets the floor of its share,
    and the points left over go one each to the largest remainders (the earlier-listed
    first on a tie). Funders whose part is 0 are left out."""
    exact = [(who, points * pct) for who, pct in shares]
    parts = [(who, value // 100) for who, value in exact]
    left = points - sum(p for _, p in parts)
    order = sorted(range(len(exact)), key=lambda i: (-(exact[i][1] % 100), i))
    bumped = set(order[:left])
    result = [(who, part + (1 if i in bumped else 0)) for i, (who, part) in enumerate(parts)]
    return [(who, part) for who, part in result if part]


def refunded_part(points: int, amount: Decimal, remaining: Decimal) -> int:
    """Of `points` a promotion gave a sale of `amount`, the part the refunded money took
    back when `remaining` is left: as the sale's own points (db.rules.points.share_kept)."""
    return points - share_kept(points, amount, remaining)


def use_key(promo: Promotion, partner: str, at: datetime, birthday: date | None = None) -> str:
    """What `max_per_member` counts a member's uses of `promo` under: the promotion, and
    for a birthday promotion the year its birthday week began (at most so many per
    birthday), for a first-at-partner one the partner (once per partner even when two first
    sales race)."""
    key = promo.slug
    if promo.who.birthday:
        key += f"@{birthday_year(birthday, at.date())}"
    elif promo.who.first_at_partner:
        key += f"@{partner}"
    return key


def birthday_year(birthday: date | None, today: date) -> int:
    """The year of the birthday week `today` is in (else today's year)."""
    year = _week_year(birthday, today)
    return today.year if year is None else year


def limit(promo: Promotion) -> int:
    """Uses allowed per use_key (0: no limit). A first-at-partner promotion is once per
    partner whatever its max_per_member says (it asks for the first purchase there)."""
    if promo.who.first_at_partner or promo.who.first_ever:
        return 1
    return promo.max_per_member


def refund_parts(due: int, paid: Sequence[int], returned: Sequence[int]) -> list[int]:
    """`due` points a refund takes back of a promotion's award (refunded_part of the whole
    award), shared among its funders in proportion to what each `paid`, to the point (the
    floor of each share, the points left over one each to the largest remainders, the
    earlier-listed first on a tie, as `split`), none getting more than it has still to
    get back (`paid` less what earlier refunds `returned` to it; the points over go, one
    each, to the others in the same order). A full refund's due is what is left of the
    award: each funder then gets back all it has left, so partial refunds add up to a
    full one."""
    room = [p - r for p, r in zip(paid, returned, strict=True)]
    whole = sum(paid)
    if not whole or due <= 0:
        return [0] * len(paid)
    parts = [due * p // whole for p in paid]
    order = sorted(range(len(paid)), key=lambda i: (-(due * paid[i] % whole), i))
    for i in order[: due - sum(parts)]:
        parts[i] += 1
    over = sum(max(part - r, 0) for part, r in zip(parts, room, strict=True))
    parts = [min(part, max(r, 0)) for part, r in zip(parts, room, strict=True)]
    while over:
        moved = over
        for i in order:
            if over and parts[i] < room[i]:
                parts[i] += 1
                over -= 1
        if over == moved:
            break  # nobody has room left: the ledger gave more back than the award
    return parts
