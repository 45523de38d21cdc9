"""Which promotions are open to one member (their `/offers`), and when a personal promotion
is worth telling (the daily personal offers' job, db/usecases/personal_offers.py). Pure:
decided from the program and a few facts about the member; what the till gives is decided
in db/rules/promotions.py, whose rules these follow."""

from __future__ import annotations

from calendar import isleap
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from db.rules.program import WEEKDAYS, Program, Promotion
from db.rules.promotions import (
    BIRTHDAY_WEEK,
    birthday_in,
    birthday_week,
    birthday_year,
    full_years,
    limit,
    upcoming,
)

# A personal promotion is told when it runs now or on one of the next days: a member told
# on Monday of a weekend offer has the week to plan it.
HORIZON_DAYS = 7
# The coalition's cross-sell tells members who bought somewhere in the program lately.
ACTIVE_DAYS = 60


@dataclass(frozen=True, slots=True)
class MemberFacts:
    """What /offers needs to know about a member: their tier, when they joined, their
    birthday (if given), the partners they bought at (slug → their last purchase there) and
    their uses of promotions with a limit (db.rules.promotions.use_key → uses)."""

    tier: str
    joined_at: datetime
    birthday: date | None = None
    bought_at: dict[str, datetime] = field(default_factory=dict)
    uses: dict[str, int] = field(default_factory=dict)

    @property
    def last_purchase_at(self) -> datetime | None:
        return max(self.bought_at.values(), default=None)


@dataclass(frozen=True, slots=True)
class OpenOffer:
    """A promotion open to the member: `partners` where it applies to them (for a first
    visit, the partners they have not bought at yet; else the promotion's own, empty for
    everywhere); for a birthday promotion, their birthday week's first and last day (or
    `needs_birthday` when they have not given it); `uses_left` when it is limited (a first
    visit's promotion is once at each of its `partners`)."""

    promotion: Promotion
    partners: tuple[str, ...] = ()
    birthday_from: date | None = None
    birthday_until: date | None = None
    needs_birthday: bool = False
    uses_left: int | None = None
    # The birthday week shown is next year's: this year's uses are taken.
    next_year: bool = False


def run_days(promo: Promotion, first: date, last: date) -> list[date]:
    """The local days from `first` through `last` on which `promo` runs (its dates and
    weekdays; its hours are not looked at)."""
    when = promo.when
    start = max(first, when.from_) if when.from_ else first
    end = min(last, when.until) if when.until else last
    days = []
    day = start
    while day <= end:
        if not when.weekdays or WEEKDAYS[day.weekday()] in when.weekdays:
            days.append(day)
        day += timedelta(days=1)
    return days


def runs_soon(promo: Promotion, today: date, days: int = HORIZON_DAYS) -> bool:
    """Whether `promo` runs today or within the next `days` days."""
    return bool(run_days(promo, today, today + timedelta(days=days)))


def business_partners(program: Program, promo: Promotion) -> tuple[str, ...]:
    """Where `promo` applies: its partners, or every partner that sells."""
    if promo.partners:
        return tuple(promo.partners)
    return tuple(p.slug for p in program.partners if not p.charity)


def next_birthday_week(birthday: date, today: date) -> tuple[date, date]:
    """The birthday week `today` is in, else the next one: its first and last day."""
    if birthday_week(birthday, today):
        start = birthday_in(birthday, birthday_year(birthday, today))
    else:
        start = birthday_in(birthday, today.year)
        if start < today:
            start = birthday_in(birthday, today.year + 1)
    return start, start + timedelta(days=BIRTHDAY_WEEK - 1)


def years_ago(today: date, years: int) -> date:
    """The latest day someone may have joined to be a member for `years` full years today
    (db.rules.promotions.full_years: 29 February counts from 28 February)."""
    try:
        return today.replace(year=today.year - years)
    except ValueError:
        return date(today.year - years, 2, 28)


def birthday_starts(today: date) -> list[tuple[int, int, int, date]]:
    """Birthdays (month, day) whose birthday week holds `today`, with the year that week
    began in and its last day: the birthdays of the last seven days, and 29 February with
    28 February in a year without it (db.rules.promotions.birthday_week)."""
    starts = []
    for back in range(BIRTHDAY_WEEK):
        start = today - timedelta(days=back)
        last = start + timedelta(days=BIRTHDAY_WEEK - 1)
        starts.append((start.month, start.day, start.year, last))
        if (start.month, start.day) == (2, 28) and not isleap(start.year):
            starts.append((2, 29, start.year, last))
    return starts


def open_offers(program: Program, facts: MemberFacts, now: datetime) -> list[OpenOffer]:
    """The promotions open to the member now or later (not ended), in the program file's
    order: those whose `who` they meet now (a birthday promotion: in their birthday week,
    now or to come before it ends; once this birthday's uses are taken, their next birthday
    week, a year on) and that they have not used up."""
    zone = program.program.zone
    at = now.astimezone(zone)
    today = at.date()
    last_purchase = facts.last_purchase_at
    joined = facts.joined_at.astimezone(zone).date()
    offers = []
    for promo in program.promotions:
        who = promo.who
        if not upcoming(promo, today) or who.club:
            continue
        if who.tiers and facts.tier not in {str(t) for t in who.tiers}:
            continue
        if who.first_ever and facts.bought_at:
            continue
        if who.inactive_days:
            since = last_purchase or facts.joined_at
            if now - since < timedelta(days=who.inactive_days):
                continue
        if who.member_years and full_years(joined, today) < who.member_years:
            continue
        partners = tuple(promo.partners)
        if who.first_at_partner:
            partners = tuple(
                p for p in business_partners(program, promo) if p not in facts.bought_at
            )
            if not partners:
                continue
        offer = OpenOffer(promo, partners)
        key = promo.slug
        if who.birthday:
            if facts.birthday is None:
                offers.append(OpenOffer(promo, partners, needs_birthday=True))
                continue
            first, last = next_birthday_week(facts.birthday, today)
            most = limit(promo)
            if most and facts.uses.get(f"{key}@{first.year}", 0) >= most:
                # This year's are taken: the member's next birthday week, a year on.
                first, last = next_birthday_week(facts.birthday, last + timedelta(days=1))
                if not run_days(promo, first, last):
                    continue
                offers.append(
                    OpenOffer(promo, partners, first, last, uses_left=most, next_year=True)
                )
                continue
            if not run_days(promo, max(first, today), last):
                continue
            key += f"@{first.year}"
            offer = OpenOffer(promo, partners, birthday_from=first, birthday_until=last)
        most = limit(promo)  # a first_ever promotion's is 1
        if most and not who.first_at_partner:
            left = most - facts.uses.get(key, 0)
            if left <= 0:
                continue
            offer = OpenOffer(
                promo,
                offer.partners,
                offer.birthday_from,
                offer.birthday_until,
                uses_left=left,
            )
        offers.append(offer)
    return offers
