"""The club's rules, pure (db/usecases/club.py applies them): what one payment buys, when
a member is told their membership is ending or has ended, and the invoice payload that
ties a Telegram payment to a member.

A payment buys CLUB_PERIOD (30 days) after the present membership's end, or from now when
there is none: time already paid for is never lost, whichever way it was paid. A Telegram
Stars subscription says when it ends (`subscription_expiration_date`); the membership lasts
at least that long. That date is kept (`subscription_until`): it is when Telegram charges
again, which is earlier than the membership's end when the subscription began during time
paid another way.

Whether a member is in the club (`active`) and whether a Stars subscription still renews
their membership (`renewing`) are decided here only: the bot's screens, the pre-checkout
and the daily job ask these."""

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
    """Whether a membership that ends at `ends_at` is in the club at `now`."""
    return ends_at is not None and ends_at > now


def renewing(renews: bool, subscription_until: datetime | None, now: datetime) -> bool:
    """Whether a Telegram Stars subscription still renews the membership: its renewal is on
    and Telegram's charge, due at `subscription_until`, may still come (it may reach the
    bot up to RENEWAL_GRACE late). Past that the subscription is over, whatever `renews`
    says (Telegram could not charge, or the member cancelled it in Telegram)."""
    return renews and subscription_until is not None and now < subscription_until + RENEWAL_GRACE


def overdue(renews: bool, subscription_until: datetime | None, now: datetime) -> bool:
    """Telegram's renewal charge is due (`subscription_until` passed) and may still reach
    the bot (within RENEWAL_GRACE): nothing to stop or start now."""
    return (
        renewing(renews, subscription_until, now)
        and subscription_until is not None
        and (subscription_until <= now)
    )


def renewable(
    subscription_charge_id: str | None,
    renews: bool,
    subscription_until: datetime | None,
    now: datetime,
) -> bool:
    """Whether the member may switch their Stars subscription's renewal: stop one that is
    renewing, or resume one they stopped while the time it paid for runs."""
    if subscription_charge_id is None or subscription_until is None:
        return False
    return renewing(renews, subscription_until, now) or now < subscription_until


def after_refund(
    ends_at: datetime, period_from: datetime, period_until: datetime, now: datetime
) -> datetime:
    """The membership's end once one of its payments is refunded at `now`: earlier by the
    part of that payment's period still unused (none when it is over), never before now,
    and never later than it was (a membership that ended already stays ended)."""
    unused = max(timedelta(0), period_until - max(period_from, now))
    return min(ends_at, max(now, ends_at - unused))


def joins(ends_at: datetime | None, now: datetime, *, recurring: bool) -> bool:
    """Whether a payment made `now` starts a membership (a first one, or back after a
    lapse) rather than extending one. A Stars renewal (`recurring`) is charged as the
    period ends and may reach the bot a little later: within RENEWAL_GRACE it continues the
    membership."""
    late_renewal = recurring and ends_at is not None and now < ends_at + RENEWAL_GRACE
    return not active(ends_at, now) and not late_renewal


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
    ends_at: datetime, renewing: bool, reminded_for: datetime | None, now: datetime
) -> bool:
    """Whether the member should now be told their membership ends soon: it ends within
    REMIND_BEFORE, no Stars subscription is `renewing` it, and they were not told about
    this end."""
    return (
        not renewing
        and active(ends_at, now)
        and ends_at <= now + REMIND_BEFORE
        and reminded_for != ends_at
    )


def lapse_due(ends_at: datetime, renewing: bool, told_for: datetime | None, now: datetime) -> bool:
    """Whether the member should now be told their membership ended (once per end): it
    ended, and no Stars subscription is `renewing` it (its charge, due as it ended, may
    still come within RENEWAL_GRACE)."""
    return not renewing and not active(ends_at, now) and told_for != ends_at
