"""A member's birthday, as they type it in /privacy, and how often they may change it. Pure.

Birthday promotions need only the day and the month, so only those are kept: the birthday
is stored as a date in the year 2000 (a leap year, so 29 February can be kept). A member
may type the year too; it is checked (no such day, a day to come) and then left out.

A birthday may be changed once a year (so a birthday week cannot be moved around for its
promotions): from the same day a year after it was last given. Removing it is always
possible and does not reset that: giving it again after removing it is a change."""

from __future__ import annotations

import re
from datetime import date, datetime
from zoneinfo import ZoneInfo

KEPT_YEAR = 2000  # the year every kept birthday is stored in: only day and month matter
OLDEST = 120  # years: an earlier year is a typo

_FORMS = (
    re.compile(r"(?P<d>\d{1,2})[./-](?P<m>\d{1,2})(?:[./-](?P<y>\d{4}))?"),
    re.compile(r"(?P<y>\d{4})-(?P<m>\d{1,2})-(?P<d>\d{1,2})"),
)


class BadBirthday(ValueError):
    """What was typed is not a birthday: `reason` is "format" (not a date as asked),
    "no_such_day" (31.02), "future" (a day to come) or "too_old"."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_birthday(text: str, today: date) -> date:
    """The birthday `text` names (`31.12`, `31.12.1990`, `31/12`, `1990-12-31`) as kept:
    in the year 2000. Raises BadBirthday."""
    typed = text.strip()
    for form in _FORMS:
        match = form.fullmatch(typed)
        if match is None:
            continue
        day, month, year = int(match["d"]), int(match["m"]), match["y"]
        try:
            kept = date(KEPT_YEAR, month, day)
            born = date(int(year), month, day) if year else None
        except ValueError:
            raise BadBirthday("no_such_day") from None
        if born is not None:
            if born > today:
                raise BadBirthday("future")
            if born.year < today.year - OLDEST:
                raise BadBirthday("too_old")
        return kept
    raise BadBirthday("format")


def next_change(set_at: datetime | None, zone: ZoneInfo) -> date | None:
    """The first local day the birthday may be changed again (None: it never was given)."""
    if set_at is None:
        return None
    day = set_at.astimezone(zone).date()
    try:
        return day.replace(year=day.year + 1)
    except ValueError:  # given on 29 February: from 1 March
        return date(day.year + 1, 3, 1)


def may_change(set_at: datetime | None, now: datetime, zone: ZoneInfo) -> bool:
    after = next_change(set_at, zone)
    return after is None or now.astimezone(zone).date() >= after
