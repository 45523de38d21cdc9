"""Pure loyalty arithmetic: money is Decimal, points are integers, rounding always explicit."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_FLOOR, ROUND_HALF_UP, Decimal, InvalidOperation, localcontext
from functools import lru_cache

from babel.numbers import get_currency_symbol

from db.rules.errors import (
    AmountTooLarge,
    InvalidAmount,
    InvalidPoints,
    InvalidReceipt,
    RedeemLimitExceeded,
)

CENT = Decimal("0.01")
MAX_POINTS = 10**12  # far beyond any real wallet, well inside bigint


_TYPED_AMOUNT = re.compile(r"^-?\d{1,30}(?:\.\d{1,6})?$")


def parse_money(text: str) -> Decimal:
    """What a cashier types: `12.50`, `12,50`, `12`, ` 1 250,00 `. Plain digits only: no
    exponents (`1e3`), no `NaN`; the sign is kept so that `-5` is refused as negative."""
    cleaned = text.strip().replace("\u00a0", "").replace(" ", "").replace(",", ".")
    if not _TYPED_AMOUNT.match(cleaned):
        raise InvalidAmount(amount=text.strip()[:40])
    try:
        return Decimal(cleaned)
    except InvalidOperation:
        raise InvalidAmount(amount=text.strip()[:40]) from None


# What a cashier types for a sale: digits with at most one separator and two decimals, a
# currency sign or code before or after them, and a receipt number only after `#`.
_TILL_AMOUNT = re.compile(
    r"^(?:(?P<before>[^0-9\s]+)\s*)?"
    r"(?P<number>[0-9]{1,30}(?:[.,][0-9]{1,2})?)"
    r"(?:\s*(?P<after>[^0-9\s]+))?$"
)
MAX_RECEIPT = 40


@dataclass(frozen=True, slots=True)
class TypedSale:
    amount: Decimal
    receipt: str | None


@lru_cache(maxsize=16)
def _signs(currency: str, locales: tuple[str, ...]) -> frozenset[str]:
    signs = {currency} | {get_currency_symbol(currency, locale=loc) for loc in locales}
    return frozenset(sign.casefold() for sign in signs)


def currency_signs(currency: str, locales: Iterable[str]) -> frozenset[str]:
    """The ISO code and the sign each of `locales` writes for it (`PLN`, `zł`), casefolded."""
    return _signs(currency, tuple(sorted(locales)))


def parse_till_amount(text: str, signs: frozenset[str]) -> TypedSale:
    """`12`, `12.50`, `12,50`, `12.50 PLN`, `zł 5`, `12.50 #A-1043`. Nothing is guessed:
    `12 50`, `1 250`, `1e3`, `12.505` or an unknown word are InvalidAmount; an empty, too
    long or unprintable receipt number is InvalidReceipt. The amount is not yet checked as a
    purchase (check_purchase)."""
    head, hash_sign, receipt = text.partition("#")
    match = _TILL_AMOUNT.match(head.strip())
    refused = InvalidAmount(amount=text.strip()[:40])
    if match is None or (match["before"] and match["after"]):
        raise refused
    sign = match["before"] or match["after"]
    if sign is not None and sign.casefold() not in signs:
        raise refused
    return TypedSale(
        Decimal(match["number"].replace(",", ".")), check_receipt(receipt) if hash_sign else None
    )


def check_receipt(text: str) -> str:
    """A receipt number as the ledger keeps it, typed after `#` at the till or sent by a
    till's software as its document number: read in capitals ("#a-1043" is the receipt
    "A-1043"), printable, at most MAX_RECEIPT characters (else InvalidReceipt)."""
    receipt = text.strip().upper()
    if not printable(receipt, MAX_RECEIPT):
        raise InvalidReceipt(receipt=receipt[:40], max=MAX_RECEIPT)
    return receipt


def printable(text: str, limit: int) -> bool:
    return 0 < len(text) <= limit and all(
        unicodedata.category(ch)[0] not in "CZ" or ch == " " for ch in text
    )


def check_purchase(amount: object, max_purchase: Decimal) -> Decimal:
    """A purchase amount the till may post: positive, at most cents, not absurdly large."""
    if not isinstance(amount, Decimal) or not amount.is_finite():
        raise InvalidAmount(amount=str(amount))
    exponent = amount.as_tuple().exponent
    if amount <= 0 or (isinstance(exponent, int) and exponent < -2):
        raise InvalidAmount(amount=str(amount))
    if amount > max_purchase:
        raise AmountTooLarge(amount=amount, max=max_purchase)
    return amount.quantize(CENT)


def check_points(points: object, *, allow_negative: bool = False) -> int:
    if isinstance(points, bool) or not isinstance(points, int):
        raise InvalidPoints(points=str(points))
    if points == 0 or abs(points) > MAX_POINTS or (points < 0 and not allow_negative):
        raise InvalidPoints(points=points)
    return points


def _floor(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_FLOOR))


def earned_points(
    paid: Decimal, earn_percent: Decimal, multiplier: Decimal, point_value: Decimal
) -> int:
    """floor(money paid × earn_percent / 100 × tier multiplier / point_value)."""
    with localcontext() as ctx:
        ctx.prec = 50
        return max(0, _floor(paid * earn_percent * multiplier / (100 * point_value)))


def max_redeemable(amount: Decimal, max_redeem_percent: Decimal, point_value: Decimal) -> int:
    """How many points may pay for this purchase, before looking at the balance."""
    with localcontext() as ctx:
        ctx.prec = 50
        return max(0, _floor(amount * max_redeem_percent / (100 * point_value)))


def points_money(points: int, point_value: Decimal) -> Decimal:
    """Money value of points, rounded down to the cent (never in the member's disfavour
    by more than a cent, never more than the points are worth)."""
    return (points * point_value).quantize(CENT, rounding=ROUND_DOWN)


def expected_money(points: Decimal, point_value: Decimal) -> Decimal:
    """Money value of an expected (fractional) number of points, to the cent, half up: an
    estimate (the simulator's expected cost), never a sum paid or handed back."""
    return (points * point_value).quantize(CENT, rounding=ROUND_HALF_UP)


def points_worth(points: int | Decimal, point_value: Decimal) -> Decimal:
    """The exact money value of points, not rounded: for figures that add several values up
    before rounding once (the simulator's positions and expected costs, whose points may be
    weighted by a rate)."""
    return points * point_value


def check_redeem(points: int, amount: Decimal, max_redeem_percent: Decimal, pv: Decimal) -> None:
    limit = max_redeemable(amount, max_redeem_percent, pv)
    if points > limit:
        raise RedeemLimitExceeded(points=points, max=limit)


def share_kept(total: int, amount: Decimal, remaining: Decimal) -> int:
    """Of `total` points tied to a purchase of `amount`, the part that belongs to the money
    still not refunded (`remaining`). Refunds claw back or return `total - share_kept`."""
    if remaining >= amount:
        return total
    with localcontext() as ctx:
        ctx.prec = 50
        return _floor(total * remaining / amount)
