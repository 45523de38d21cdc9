"""A member's discount at the till: money off the amount the cashier typed, their tier's and,
while they are in the club, the club's on top (Program.discount_percent: the two add up).

discount = amount × discount_percent / 100, rounded half-up to the cent (the usual shop rule:
10.10 at 5 % is 0.505, so 0.51 off), and never the whole amount: at least one cent is left to
pay, as the ledger requires (discount < amount). The customer pays `to_pay` = amount − discount,
points may pay up to max_redeem_percent of `to_pay`, and points are earned on the money paid
after that. The discount is at the selling partner's cost: settlement does not move it."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, localcontext

from db.rules.errors import DiscountChanged
from db.rules.points import CENT
from db.rules.program import Program, Tier

ZERO = Decimal("0.00")


def discount_of(amount: Decimal, percent: Decimal) -> Decimal:
    """The money off `amount` at `percent` (half-up to the cent, at most amount − 0.01)."""
    if not percent or amount <= CENT:
        return ZERO
    with localcontext() as ctx:
        ctx.prec = 50
        off = (amount * percent / 100).quantize(CENT, rounding=ROUND_HALF_UP)
    return min(off, amount - CENT)


def check_shown(percent: object) -> Decimal:
    """A discount percent a till says it charged, as a sale carries it: a number from 0 up
    to, not including, 100; anything else is no member's discount (DiscountChanged: the
    till shows the sale again)."""
    if not isinstance(percent, Decimal) or not percent.is_finite() or not 0 <= percent < 100:
        raise DiscountChanged(percent=str(percent))
    return percent


def charged(amount: Decimal, discount: Decimal | None) -> Decimal:
    """What a sale charged: its amount less its discount. Refunds are of this money (the
    discount was never paid, so it is never handed back), and a stamp card's min_purchase
    is compared with it, by the sale and by its refunds alike (db/usecases/stamps.py)."""
    return amount - (discount or ZERO)


@dataclass(frozen=True, slots=True)
class Priced:
    """A typed amount with the member's discount, as the till shows it."""

    amount: Decimal
    tier: str  # the member's tier (its English name, the tier's identity)
    percent: Decimal  # all of it, the tier's and the club's: 0, no discount
    discount: Decimal
    club_percent: Decimal = Decimal(0)  # of `percent`, the club's (the rest is the tier's)

    @property
    def to_pay(self) -> Decimal:
        return self.amount - self.discount

    @property
    def tier_percent(self) -> Decimal:
        return self.percent - self.club_percent


def club_part(program: Program, club: bool) -> Decimal:
    """The club's share of a member's discount: its discount_percent while they are in it."""
    return program.club.discount_percent if club and program.club is not None else Decimal(0)


def price(amount: Decimal, tier: Tier, club_percent: Decimal = Decimal(0)) -> Priced:
    percent = tier.discount_percent + club_percent
    return Priced(amount, tier.name, percent, discount_of(amount, percent), club_percent)


def has_discounts(program: Program) -> bool:
    """Whether any tier, or the club, gives a discount (else the till never looks for one)."""
    return any(t.discount_percent for t in program.tiers) or bool(club_part(program, True))


def discounts_by_tier(program: Program, amount: Decimal, club: bool = False) -> list[Decimal]:
    """The discount `amount` gets at each tier, in the program's order, for a member in the
    club or not (the database picks the member's tier: ledger_sale, migration 0013)."""
    return [discount_of(amount, program.discount_percent(t.name, club)) for t in program.tiers]
