"""When a scheduled campaign goes out: what a marketer types, read in the program's time
zone. Pure: no aiogram, no database."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

# "today" and "tomorrow" in each language the bot speaks; any of them is understood
# whatever the reader's language, as a marketer may type either.
TODAY = ("today", "сегодня", "сьогодні", "dziś", "dzis", "dzisiaj")
TOMORROW = ("tomorrow", "завтра", "jutro")

_CLOCK = r"(?P<h>[01]?\d|2[0-3])[:.](?P<m>[0-5]\d)"
_FORMS = (
    re.compile(r"(?P<y>\d{4})-(?P<mo>\d{1,2})-(?P<d>\d{1,2})\s+" + _CLOCK),
    re.compile(r"(?P<d>\d{1,2})\.(?P<mo>\d{1,2})\.(?P<y>\d{4})\s+" + _CLOCK),
    re.compile(r"(?P<word>\w+)\s+" + _CLOCK),
)


def parse_when(text: str, now: datetime, zone: ZoneInfo) -> datetime | None:
    """The moment `text` names, in UTC, or None if it is none of the forms understood:
    `2026-12-02 18:00`, `02.12.2026 18:00`, `tomorrow 10:00`, `today 18:00` (local time in
    `zone`). Whether it is in the future is the caller's question."""
    text = " ".join(text.strip().lower().split())
    for form in _FORMS:
        match = form.fullmatch(text)
        if match is None:
            continue
        parts = match.groupdict()
        if "word" in parts:
            today = now.astimezone(zone).date()
            if parts["word"] in TODAY:
                day = today
            elif parts["word"] in TOMORROW:
                day = today + timedelta(days=1)
            else:
                return None
        else:
            try:
                day = date(int(parts["y"]), int(parts["mo"]), int(parts["d"]))
            except ValueError:
                return None
        local = datetime.combine(day, time(int(parts["h"]), int(parts["m"])), tzinfo=zone)
        return local.astimezone(UTC)
    return None


def local_text(moment: datetime, zone: ZoneInfo) -> str:
    """`2026-12-02 18:00`: the form the prompt asks for, so what is shown can be typed."""
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M")


def in_an_hour(now: datetime) -> datetime:
    """The next whole minute an hour from now."""
    return (now + timedelta(hours=1, minutes=1)).replace(second=0, microsecond=0)


def tomorrow_at(now: datetime, zone: ZoneInfo, hour: int = 10) -> datetime:
    day = now.astimezone(zone).date() + timedelta(days=1)
    return datetime.combine(day, time(hour), tzinfo=zone).astimezone(UTC)
