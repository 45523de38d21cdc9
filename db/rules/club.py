"""The club's rules, pure (db/usecases/club.py applies them): what one payment buys, when
a member is told their membership is ending or has ended, and the invoice payload that
ties a Telegram payment to a member.

A payment buys CLUB_PERIOD (30 days) after the present membership's end, or from now when
there is none: time already paid for is never lost, whichever way it was paid. A Telegram
Stars subscription says when it ends (`subscription_expiration_date`); the membership lasts
at least that long."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from decimal import Decimal

from babel.numbers import get_currency_precision

from db.rules.program import CLUB_PERIOD

# A membership ending within this is "ending soon": the member is told once (unless a
# Stars subscription will renew it).
REMIND_BEFORE = timedelta(days=3)
# A renewing Stars subscription is not told it lapsed until this long after its end:
# Telegram charges at the end, and the payment may reach the bot a little later.
RENEWAL_GRACE = timedelta(days=1)
METHODS = ("stars", "card", "till")
# Telegram's invoice payload (≤ 128 bytes): how it was sold and to whom.
_PAYLOAD = re.compile(r"^club:(stars|card):([0-9]{1,18})$")


def payload(method: str, member_id: int) -> str:
    assert method in ("stars", "card")
    return f"club:{method}:{member_id}"


def parse_payload(text: str) -> tuple[str, int] | None:
    """(method, member id) of a club invoice's payload; None for anything else."""
    match = _PAYLOAD.match(text)
    return (match[1], int(match[2])) if match else None


def minor_units(amount: Decimal, currency: str) -> int:
    """`amount` in the currency's smallest unit, as Telegram's invoices take prices (29.00
    PLN: 2900; 500 JPY: 500). Exact: a price finer than the currency's unit is refused."""
    scaled = amount.scaleb(get_currency_precision(currency))
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{amount} {currency} is finer than the currency's smallest unit")
    return int(scaled)


def from_minor(total: int, currency: str) -> Decimal:
    """The money of a `total_amount` Telegram reports in the currency's smallest unit."""
    precision = get_currency_precision(currency)
    return Decimal(total).scaleb(-precision).quantize(Decimal(1).scaleb(-precision))


def active(ends_at: datetime | None, now: datetime) -> bool:
    return ends_at is not None and ends_at > now


def period(
    ends_at: datetime | None, now: datetime, until: datetime | None = None
) -> tuple[datetime, datetime]:
    """The membership one payment made `now` buys: from the present end (or now, when
    there is none or it passed) for CLUB_PERIOD, and at least to `until` (a Stars
    subscription's own end)."""
    start = ends_at if active(ends_at, now) else now
    assert start is not None
    end = start + CLUB_PERIOD
    if until is not None and until > end:
        end = until
    return start, end


def remind_due(
    ends_at: datetime, renews: bool, reminded_for: datetime | None, now: datetime
) -> bool:
    """Whether the member should now be told their membership ends soon: it ends within
    REMIND_BEFORE, nothing will renew it, and they were not told about this end."""
    return not renews and now < ends_at <= now + REMIND_BEFORE and reminded_for != ends_at


def lapse_due(ends_at: datetime, renews: bool, told_for: datetime | None, now: datetime) -> bool:
    """Whether the member should now be told their membership ended (once per end; a
    renewing one after RENEWAL_GRACE)."""
    grace = RENEWAL_GRACE if renews else timedelta(0)
    return ends_at + grace <= now and told_for != ends_at
