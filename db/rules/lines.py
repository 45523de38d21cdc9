"""A sale's itemised lines: what a till's software may send with a sale (`sku`, `category`,
`quantity`, `amount`), so that promotions can name categories (`when.categories` in the
program file: db/rules/promotions.py decides what they give).

The lines' amounts are the sale's money line by line, before the member's discount (a
discount is a percent of the whole sale, so each line bears its share of it) and add up to
the sale's amount exactly: a sale whose lines say otherwise is refused, nothing posted. A
sale without lines is a sale as the bot's cashiers post it: no promotion with categories
applies to it. Pure."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from decimal import Decimal

from db.rules.errors import InvalidLines, LinesDontAddUp
from db.rules.points import CENT, printable
from db.rules.program import CATEGORY

MAX_LINES = 200
MAX_SKU = 64
MAX_QUANTITY = Decimal(1_000_000)
MILLI = Decimal("0.001")  # quantities are kept to three decimals (1.5 kg, 0.250 l)


@dataclass(frozen=True, slots=True)
class Line:
    """One line of a sale: `amount` is its money (the quantity's price, before the member's
    discount); `category` names what it is for promotions (a slug like "coffee-beans"),
    `sku` the till's article number (kept, never decided on)."""

    amount: Decimal
    quantity: Decimal = Decimal(1)
    category: str | None = None
    sku: str | None = None


def _money(value: object) -> bool:
    if not isinstance(value, Decimal) or not value.is_finite() or value < 0:
        return False
    exponent = value.as_tuple().exponent
    return isinstance(exponent, int) and exponent >= -2


def _quantity(value: object) -> bool:
    if not isinstance(value, Decimal) or not value.is_finite():
        return False
    exponent = value.as_tuple().exponent
    return 0 < value <= MAX_QUANTITY and isinstance(exponent, int) and exponent >= -3


def check_line(index: int, line: Line) -> Line:
    """The line as it is kept (its amount to the cent), or InvalidLines naming the field."""
    if not _money(line.amount):
        raise InvalidLines(line=index, field="amount")
    if not _quantity(line.quantity):
        raise InvalidLines(line=index, field="quantity")
    if line.category is not None and not CATEGORY.match(line.category):
        raise InvalidLines(line=index, field="category")
    if line.sku is not None and not printable(line.sku, MAX_SKU):
        raise InvalidLines(line=index, field="sku")
    return Line(line.amount.quantize(CENT), line.quantity.quantize(MILLI), line.category, line.sku)


def check_lines(lines: Sequence[Line], amount: Decimal) -> tuple[Line, ...]:
    """A sale's lines (none: a sale without lines), each checked (check_line), that add up to
    the sale's `amount` (already a checked purchase amount): else LinesDontAddUp."""
    if len(lines) > MAX_LINES:
        raise InvalidLines(lines=len(lines), max=MAX_LINES)
    checked = tuple(check_line(i, line) for i, line in enumerate(lines))
    total = sum((line.amount for line in checked), Decimal("0.00"))
    if checked and total != amount:
        raise LinesDontAddUp(total=total, amount=amount)
    return checked


def amount_in(lines: Sequence[Line], categories: Collection[str]) -> Decimal | None:
    """The money of the lines in `categories` (None: the sale has no line in them)."""
    mine = [line.amount for line in lines if line.category in categories]
    return sum(mine, Decimal("0.00")) if mine else None


def line_digest(lines: Sequence[Line]) -> list[list[str | None]]:
    """The lines as a sale's digest (db.ledger.writer.fingerprint) holds them: the same sale
    sent again with other lines is another sale, not a replay."""
    return [[line.sku, line.category, str(line.quantity), str(line.amount)] for line in lines]
