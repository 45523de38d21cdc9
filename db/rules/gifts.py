"""Gifts and donations: the pure rules (codes, what a member types, the refusals).

A gift's code goes in `t.me/<bot>?start=g<code>`: 16 characters of base64url, 96 bits from
an HMAC under the bot's secret of the giver and the random id of the confirmation they were
shown. So it is unguessable, and a second tap on that one confirmation names the same gift
(one gift, whatever the taps), while a forged button cannot choose a code of its own.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from datetime import timedelta

from db.rules.errors import DomainError, InvalidPoints
from db.rules.points import MAX_POINTS

GIFT = "g"  # the start parameter's prefix of a gift link (cards "c", referrals "r", staff "s")
GIFT_TTL = timedelta(days=7)  # an unaccepted gift returns to its giver after this
CODE_BYTES = 12  # 96 bits
_CODE = re.compile(r"^[A-Za-z0-9_-]{16}$")
_POINTS = re.compile(r"^[0-9]{1,13}$")


class GiftingOff(DomainError):
    """The program gives no daily allowance for gifts (`[gifts] max_points_per_day = 0`)."""

    code = "gifting_off"


class GiftLimit(DomainError):
    """The gift would pass the giver's daily allowance (`left` of `max` still to give)."""

    code = "gift_limit"


class GiftClosed(DomainError):
    """The gift cannot be accepted or cancelled: `status` says why (unknown, accepted,
    accepted_by_you, returned, expired)."""

    code = "gift_closed"


class OwnGift(DomainError):
    """The giver opened their own gift's link: nobody gifts points to themself."""

    code = "own_gift"


class NotACharity(DomainError):
    """Donations go only to partners of kind "charity"."""

    code = "not_a_charity"


class CharityTakesNoSales(DomainError):
    """A charity partner takes donated points, never sales: its staff cannot post one."""

    code = "charity_takes_no_sales"


def gift_code(secret: bytes, member_id: int, dialog: str) -> str:
    """The code of the gift the member confirms on the confirmation `dialog`."""
    mac = hmac.new(secret, f"gift\x00{member_id}\x00{dialog}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()[:CODE_BYTES]).decode()


def gift_param(code: str) -> str:
    """The start parameter of a gift's link (17 characters)."""
    return GIFT + code


def read_gift_param(param: str) -> str | None:
    """The code a gift link carries; None when it is not one of ours in shape."""
    code = param[len(GIFT) :] if param.startswith(GIFT) else ""
    return code if _CODE.match(code) else None


def hold_key(code: str) -> str:
    """The key of the hold that keeps a gift's points, and of the posting that gives them."""
    return f"gift:{code}"


def parse_points(text: str) -> int:
    """What a member types as a number of points: a positive whole number (`200`), nothing
    else (`-5`, `2.5`, `1e3`, `200 points` are refused, not guessed)."""
    cleaned = text.strip()
    if not _POINTS.match(cleaned) or not 0 < int(cleaned) <= MAX_POINTS:
        raise InvalidPoints(points=cleaned[:20])
    return int(cleaned)
