"""The API's JSON shapes that several resources share: money as decimal strings, points as
integers, times as RFC 3339 in UTC, document numbers, a member's card.

An input that is not what its field takes is refused with the field's own code (a custom
pydantic error type named after a code of bot/api/problems.py: `invalid_amount`,
`invalid_receipt`, `invalid_token`, `invalid_card_number`, `invalid_points`,
`invalid_lines`), else `invalid_request`."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

from db.rules.cards import normalize_card_number
from db.rules.lines import Line
from db.rules.points import MAX_RECEIPT

# Above zero, at most two decimals after a dot, at most ten digits before it: "12.50".
AMOUNT_PATTERN = r"^(0\.(0[1-9]|[1-9][0-9]?)|[1-9][0-9]{0,9}(\.[0-9]{1,2})?)$"
_AMOUNT = re.compile(AMOUNT_PATTERN)
MONEY_PATTERN = r"^-?[0-9]+\.[0-9]{2}$"
PERCENT_PATTERN = r"^[0-9]{1,2}(\.[0-9]{1,2})?$"
_PERCENT = re.compile(PERCENT_PATTERN)
TOKEN_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
_TOKEN = re.compile(TOKEN_PATTERN)


def _amount(value: Any) -> Decimal:
    if not isinstance(value, str) or not _AMOUNT.fullmatch(value):
        raise PydanticCustomError(
            "invalid_amount",
            "an amount is a string of digits above zero, with at most two decimals after a "
            'dot: "12.50"',
        )
    return Decimal(value)


def _percent(value: Any) -> Decimal:
    if isinstance(value, Decimal) and 0 <= value < 100:  # the API's own answer
        return value
    if not isinstance(value, str) or not _PERCENT.fullmatch(value):
        raise PydanticCustomError(
            "invalid_request", 'a percent is a string from "0" to "99.99": "5"'
        )
    return Decimal(value)


def _document(value: Any) -> str:
    if (
        not isinstance(value, str)
        or len(value) > MAX_RECEIPT
        or not value.strip()
        or not value.isprintable()
    ):
        raise PydanticCustomError(
            "invalid_receipt",
            "a document number is 1 to {max} printable characters",
            {"max": MAX_RECEIPT},
        )
    return value.strip().upper()


def _card_token(value: Any) -> str:
    """The token a member card's QR holds, or the whole link it is
    (`https://t.me/<bot>?start=<token>`)."""
    if isinstance(value, str) and "start=" in value:
        value = value.rsplit("start=", 1)[1]
    if not isinstance(value, str) or not _TOKEN.fullmatch(value):
        raise PydanticCustomError(
            "invalid_token", "a card token is what the member's QR card holds"
        )
    return value


def _card_number(value: Any) -> str:
    number = normalize_card_number(value) if isinstance(value, str) else None
    if number is None:
        raise PydanticCustomError(
            "invalid_card_number", "a card number is 12 digits whose last checks the others"
        )
    return number


def _money_out(value: Decimal) -> str:
    return f"{value:.2f}"


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


Amount = Annotated[
    Decimal,
    BeforeValidator(_amount),
    PlainSerializer(_money_out, return_type=str),
    WithJsonSchema({"type": "string", "pattern": AMOUNT_PATTERN, "examples": ["12.50"]}),
]
Percent = Annotated[
    Decimal,
    BeforeValidator(_percent),
    PlainSerializer(lambda v: format(v.normalize(), "f"), return_type=str),
    WithJsonSchema({"type": "string", "pattern": PERCENT_PATTERN, "examples": ["5"]}),
]
Document = Annotated[
    str,
    BeforeValidator(_document),
    WithJsonSchema(
        {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_RECEIPT,
            "description": "The till's document (receipt) number: unique at the partner "
            "per business day; read in capitals",
            "examples": ["A-1043"],
        }
    ),
]
CardToken = Annotated[
    str,
    BeforeValidator(_card_token),
    WithJsonSchema(
        {
            "type": "string",
            "minLength": 1,
            "maxLength": 200,
            "description": "What the member's QR card holds: the token, or the whole "
            "https://t.me/<bot>?start=<token> link (valid minutes: card_ttl_seconds)",
        }
    ),
]
CardNumber = Annotated[
    str,
    BeforeValidator(_card_number),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^[0-9][0-9 -]{10,20}[0-9]$",
            "description": "The 12-digit number printed on the card (spaces and dashes "
            "allowed; the last digit checks the others)",
            "examples": ["4507 1667 1208"],
        }
    ),
]
# Money the API answers with: a decimal string with two decimals.
Money = Annotated[
    Decimal,
    PlainSerializer(_money_out, return_type=str),
    WithJsonSchema({"type": "string", "pattern": MONEY_PATTERN, "examples": ["12.50"]}),
]
Points = Annotated[int, Field(description="Whole points")]
Timestamp = Annotated[
    datetime,
    AfterValidator(_utc),
    PlainSerializer(lambda v: _utc(v).isoformat().replace("+00:00", "Z"), return_type=str),
    WithJsonSchema(
        {"type": "string", "format": "date-time", "examples": ["2026-12-10T09:15:00Z"]}
    ),
]


class Strict(BaseModel):
    """A request body: unknown fields are refused, not ignored (a typo is not a default)."""

    model_config = ConfigDict(extra="forbid")


class MemberRef(Strict):
    """The member's card: its QR token, or its number; one of them."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"minProperties": 1, "maxProperties": 1}
    )

    card_token: CardToken | None = Field(default=None, description="What the QR card holds")
    card_number: CardNumber | None = Field(default=None, description="The printed number")

    @model_validator(mode="after")
    def _one_of_them(self) -> MemberRef:
        if (self.card_token is None) == (self.card_number is None):
            raise PydanticCustomError(
                "invalid_request", "give card_token or card_number: one of them"
            )
        return self


def card_of(ref: MemberRef) -> dict[str, str]:
    """The ref as lookup_member's keyword arguments."""
    if ref.card_token is not None:
        return {"card_token": ref.card_token}
    assert ref.card_number is not None
    return {"card_number": ref.card_number}


def _points_asked(value: Any) -> int | str:
    if value == "max" or (
        isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_POINTS
    ):
        return value  # type: ignore[no-any-return]
    raise PydanticCustomError(
        "invalid_points",
        'points are a whole number from 0 to {max}, or "max"',
        {"max": MAX_POINTS},
    )


MAX_POINTS = 1_000_000_000


def _points_in(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_POINTS:
        return value
    raise PydanticCustomError(
        "invalid_points", "points are a whole number from 0 to {max}", {"max": MAX_POINTS}
    )


PointsIn = Annotated[
    int,
    BeforeValidator(_points_in),
    WithJsonSchema({"type": "integer", "minimum": 0, "maximum": MAX_POINTS}),
]
PointsAsked = Annotated[
    int | Literal["max"],
    BeforeValidator(_points_asked),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 0, "maximum": MAX_POINTS},
                {"const": "max"},
            ],
            "examples": [200, "max"],
        }
    ),
]


def _line_text(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= 64:
        raise PydanticCustomError("invalid_lines", "at most 64 characters")
    return value


def _line_decimal(pattern: re.Pattern[str], what: str) -> Any:
    def read(value: Any) -> Decimal:
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise PydanticCustomError("invalid_lines", what)
        return Decimal(value)

    return read


LINE_AMOUNT_PATTERN = r"^[0-9]{1,10}(\.[0-9]{1,2})?$"
QUANTITY_PATTERN = r"^[0-9]{1,7}(\.[0-9]{1,3})?$"
LineText = Annotated[
    str | None,
    BeforeValidator(_line_text),
    WithJsonSchema(
        {"anyOf": [{"type": "string", "minLength": 1, "maxLength": 64}, {"type": "null"}]}
    ),
]


class LineIn(Strict):
    """One line of a sale, before the member's discount."""

    amount: Annotated[
        Decimal,
        BeforeValidator(
            _line_decimal(re.compile(LINE_AMOUNT_PATTERN), 'a line\'s money: "12.50"')
        ),
        WithJsonSchema({"type": "string", "pattern": LINE_AMOUNT_PATTERN, "examples": ["30.00"]}),
    ] = Field(description="The line's money (its quantity's price)")
    quantity: Annotated[
        Decimal,
        BeforeValidator(
            _line_decimal(re.compile(QUANTITY_PATTERN), 'a quantity above zero: "1", "0.25"')
        ),
        WithJsonSchema({"type": "string", "pattern": QUANTITY_PATTERN, "examples": ["1"]}),
    ] = Field(default=Decimal(1), description="Up to three decimals (1.5 kg)")
    category: LineText = Field(
        default=None,
        description="What it is, for promotions with categories: a slug like coffee-beans",
    )
    sku: LineText = Field(default=None, description="The till's article number (kept)")


def lines_of(lines: list[LineIn]) -> tuple[Line, ...]:
    return tuple(Line(li.amount, li.quantity, li.category, li.sku) for li in lines)
