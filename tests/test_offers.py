"""Personal offers and birthdays on real PostgreSQL: the birthday as typed and kept (day and
month), changed once a year, removed, erased with the account; the daily job telling each
member who newly qualifies once per occasion (run twice, and twice at once), never those
without consent, deleted or unreachable, again after a new lapse or in the next birthday
week; what `/offers` lists for members in different situations, on a fixed clock."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.ledger.models import Member, Outbox, PromotionNotice
from db.queries.offers import member_facts
from db.rules.birthdays import BadBirthday, may_change, next_change, parse_birthday
from db.rules.offers import birthday_starts, open_offers, run_days
from db.rules.program import Program, parse_program
from db.rules.promotions import birthday_week, birthday_year
from db.usecases.birthdays import BirthdayLocked, get_birthday, remove_birthday, set_birthday
from db.usecases.members import get_member, register_member
from db.usecases.personal_offers import tell_personal_offers
from db.usecases.privacy import delete_member, export_member_data
from db.usecases.purchases import Sale, record_sale
from tests.conftest import TEST_PROGRAM

D = Decimal
Sessions = async_sessionmaker[AsyncSession]
WARSAW = ZoneInfo("Europe/Warsaw")
# Wednesday 10 March 2027, 10:10 in Warsaw: when the daily job runs.
NOW = datetime(2027, 3, 10, 9, 10, tzinfo=UTC)

OFFERS_PROGRAM: dict[str, Any] = {
    **TEST_PROGRAM,
    "program": {**TEST_PROGRAM["program"], "timezone": "Europe/Warsaw"},
    "partners": [
        *TEST_PROGRAM["partners"],
        {"slug": "shelter", "name": "Paws Shelter", "kind": "charity"},
    ],
    "promotions": [
        {
            "slug": "welcome-back",
            "title": {"en": "We missed you: 150 points", "pl": "Tęskniliśmy: 150 punktów"},
            "who": {"inactive_days": 60},
            "effect": {"bonus_points": 150},
            "funded_by": "program",
            "personal": True,
        },
        {
            "slug": "birthday",
            "title": "200 points in your birthday week",
            "who": {"birthday": True},
            "effect": {"bonus_points": 200},
            "funded_by": "program",
            "personal": True,
            "max_per_member": 1,
        },
        {
            "slug": "new-partner",
            "title": "100 points for a first visit",
            "partners": ["gym", "bakery"],
            "who": {"first_at_partner": True},
            "min_purchase": "10.00",
            "effect": {"bonus_points": 100},
            "personal": True,
        },
        {
            "slug": "gold-spring",
            "title": "Gold spring: double points",
            "who": {"tiers": ["Gold"]},
            "when": {"from": "2027-03-15", "until": "2027-04-15"},
            "effect": {"multiplier": "2"},
            "personal": True,
            "max_per_member": 2,
        },
        {
            "slug": "summer",  # personal, but starts in June: not told in March
            "title": "Summer bonus",
            "when": {"from": "2027-06-01", "until": "2027-08-31"},
            "effect": {"bonus_points": 10},
            "personal": True,
        },
        {
            "slug": "bakery-weekend",  # not personal: listed in /offers, never told
            "title": "Double points at the bakery on weekend mornings",
            "partners": ["bakery"],
            "when": {"weekdays": ["sat", "sun"], "hours": "07:00-11:00"},
            "effect": {"multiplier": "2"},
        },
        {
            "slug": "winter",  # ended
            "title": "Winter bonus",
            "when": {"until": "2027-02-28"},
            "effect": {"bonus_points": 10},
            "personal": True,
        },
    ],
}


def offers_program() -> Program:
    return parse_program(OFFERS_PROGRAM)


@pytest.fixture
def program() -> Program:
    return offers_program()


# ---- pure rules -----------------------------------------------------------------------


def test_birthday_starts_are_exactly_the_birthdays_whose_week_holds_the_day() -> None:
    birthdays = [date(2000, 1, 1) + timedelta(days=n) for n in range(366)]  # 2000: leap
    day = date(2027, 1, 1)
    while day < date(2029, 1, 10):  # 2028 is leap: 29 February both ways
        starts = {(mo, dy): (yr, until) for mo, dy, yr, until in birthday_starts(day)}
        for b in birthdays:
            assert ((b.month, b.day) in starts) == birthday_week(b, day), (b, day)
            if (b.month, b.day) in starts:
                yr, until = starts[(b.month, b.day)]
                assert yr == birthday_year(b, day)
                assert day <= until < day + timedelta(days=7)
        day += timedelta(days=1)


def test_birthday_typed() -> None:
    today = date(2027, 3, 10)
    assert parse_birthday("14.03", today) == date(2000, 3, 14)
    assert parse_birthday(" 1/12 ", today) == date(2000, 12, 1)
    assert parse_birthday("29.02", today) == date(2000, 2, 29)
    assert parse_birthday("14.03.1990", today) == date(2000, 3, 14)  # the year is not kept
    assert parse_birthday("1990-03-14", today) == date(2000, 3, 14)
    assert parse_birthday("10.03.2027", today) == date(2000, 3, 10)  # born today
    for typed, reason in [
        ("31.02", "no_such_day"),
        ("29.02.2001", "no_such_day"),
        ("00.05", "no_such_day"),
        ("14.13", "no_such_day"),
        ("hello", "format"),
        ("14 March", "format"),
        ("", "format"),
        ("14.03.27", "format"),
        ("11.03.2027", "future"),
        ("01.01.2999", "future"),
        ("01.01.1800", "too_old"),
    ]:
        with pytest.raises(BadBirthday) as bad:
            parse_birthday(typed, today)
        assert bad.value.reason == reason, typed


def test_a_birthday_changes_once_a_year_from_the_same_local_day() -> None:
    set_at = datetime(2027, 3, 9, 23, 30, tzinfo=UTC)  # 10 March after midnight in Warsaw
    assert next_change(set_at, WARSAW) == date(2028, 3, 10)
    assert not may_change(set_at, datetime(2028, 3, 9, 22, 59, tzinfo=UTC), WARSAW)
    assert may_change(set_at, datetime(2028, 3, 9, 23, 0, tzinfo=UTC), WARSAW)
    assert next_change(datetime(2028, 2, 29, 12, tzinfo=UTC), WARSAW) == date(2029, 3, 1)
    assert may_change(None, set_at, WARSAW)


def test_run_days_follow_dates_and_weekdays(program: Program) -> None:
    weekend = program.promotion("bakery-weekend")
    assert weekend is not None
    assert run_days(weekend, date(2027, 3, 10), date(2027, 3, 17)) == [
        date(2027, 3, 13),
        date(2027, 3, 14),
    ]
    gold = program.promotion("gold-spring")
    assert gold is not None
    assert run_days(gold, date(2027, 4, 14), date(2027, 4, 20)) == [
        date(2027, 4, 14),
        date(2027, 4, 15),
    ]


# ---- birthdays ------------------------------------------------------------------------


async def join(
    sessions: Sessions,
    program: Program,
    telegram_id: int,
    *,
    consent: bool = True,
    joined: datetime = NOW - timedelta(days=400),
    language: str = "en",
) -> int:
    async with sessions() as s:
        member = await register_member(
            s,
            program,
            telegram_id=telegram_id,
            first_name=f"M{telegram_id}",
            marketing_consent=consent,
            language=language,
            now=joined,
        )
    return member.id


async def buy(
    sessions: Sessions, program: Program, member: int, partner: str, at: datetime
) -> None:
    async with sessions() as s:
        await record_sale(
            s,
            program,
            Sale(
                member_id=member,
                partner=partner,
                amount=D("20.00"),
                key=f"{member}-{partner}-{at.isoformat()}",
                now=at,
            ),
        )


async def set_column(sessions: Sessions, member: int, **values: Any) -> None:
    async with sessions() as s, s.begin():
        await s.execute(update(Member).where(Member.id == member).values(**values))


async def test_birthday_given_changed_once_a_year_and_removed(
    sessions: Sessions, program: Program
) -> None:
    ann = await join(sessions, program, 101)
    async with sessions() as s:
        assert (await get_birthday(s, ann, NOW, WARSAW)).day is None
        given = await set_birthday(s, ann, date(2000, 3, 14), NOW, WARSAW)
        assert given.day == date(2000, 3, 14) and given.locked_until == date(2028, 3, 10)
        # The same day again: nothing changes, no new year starts.
        later = NOW + timedelta(days=30)
        again = await set_birthday(s, ann, date(2000, 3, 14), later, WARSAW)
        assert again.locked_until == date(2028, 3, 10)
        with pytest.raises(BirthdayLocked) as locked:
            await set_birthday(s, ann, date(2000, 7, 1), later, WARSAW)
        assert locked.value.until == date(2028, 3, 10)
        assert (await get_birthday(s, ann, later, WARSAW)).day == date(2000, 3, 14)
        # Removing is always possible, and does not open a new change.
        removed = await remove_birthday(s, ann, later, WARSAW)
        assert removed.day is None and removed.locked_until == date(2028, 3, 10)
        with pytest.raises(BirthdayLocked):
            await set_birthday(s, ann, date(2000, 7, 1), later, WARSAW)
        # A year after it was given, it may change.
        next_year = datetime(2028, 3, 9, 23, 0, tzinfo=UTC)  # 10 March 2028 in Warsaw
        changed = await set_birthday(s, ann, date(2000, 7, 1), next_year, WARSAW)
        assert changed.day == date(2000, 7, 1) and changed.locked_until == date(2029, 3, 10)


async def test_deleting_the_account_erases_the_birthday_and_the_offers_told(
    sessions: Sessions, program: Program
) -> None:
    ann = await join(sessions, program, 102)
    await buy(sessions, program, ann, "gym", NOW - timedelta(days=1))
    await buy(sessions, program, ann, "bakery", NOW - timedelta(days=1))
    async with sessions() as s:
        await set_birthday(s, ann, date(2000, 3, 8), NOW - timedelta(days=3), WARSAW)
        member = await get_member(s, ann)
        exported = await export_member_data(s, member)
    assert exported["member"]["birthday"] == "--03-08"
    assert exported["personal_offers_told"] == []
    async with sessions() as s:
        assert await tell_personal_offers(s, program, NOW) == 1  # her birthday week
        member = await get_member(s, ann)
        exported = await export_member_data(s, member)
    assert exported["personal_offers_told"] == [
        {"promotion": "birthday", "occasion": "birthday:2027", "at": NOW.isoformat()}
    ]
    async with sessions() as s:
        await delete_member(s, member)
        row = await s.get_one(Member, ann)
        assert row.birthday is None and row.birthday_set_at is None
        assert (await s.scalars(select(PromotionNotice))).all() == []
        assert (await s.scalars(select(Outbox))).all() == []


# ---- the personal offers' job -----------------------------------------------------------


async def told(sessions: Sessions) -> list[tuple[str, int, str]]:
    async with sessions() as s:
        rows = (
            await s.execute(
                select(
                    PromotionNotice.promotion, PromotionNotice.member_id, PromotionNotice.occasion
                ).order_by(PromotionNotice.member_id, PromotionNotice.promotion)
            )
        ).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]


async def outbox(sessions: Sessions) -> list[tuple[int, str, dict[str, Any]]]:
    async with sessions() as s:
        rows = (
            await s.execute(
                select(Outbox.member_id, Outbox.promotion, Outbox.params).order_by(
                    Outbox.member_id, Outbox.promotion
                )
            )
        ).all()
    return [(r.member_id, r.promotion, r.params) for r in rows]


async def cast(sessions: Sessions, program: Program) -> dict[str, int]:
    """Members in every situation the job tells apart."""
    m: dict[str, int] = {}
    # Away for 70 days: win-back.
    m["away"] = await join(sessions, program, 201)
    await buy(sessions, program, m["away"], "coffee", NOW - timedelta(days=70))
    # Away as long, but no consent / deleted / blocked the bot: nobody tells them.
    m["silent"] = await join(sessions, program, 202, consent=False)
    await buy(sessions, program, m["silent"], "coffee", NOW - timedelta(days=70))
    m["gone"] = await join(sessions, program, 203)
    await buy(sessions, program, m["gone"], "coffee", NOW - timedelta(days=70))
    m["blocked"] = await join(sessions, program, 204)
    await buy(sessions, program, m["blocked"], "coffee", NOW - timedelta(days=70))
    await set_column(sessions, m["blocked"], reachable=False)
    # A regular at the coffee shop (10 days ago): the cross-sell (gym and bakery).
    m["regular"] = await join(sessions, program, 205)
    await buy(sessions, program, m["regular"], "coffee", NOW - timedelta(days=10))
    # Bought at the gym lately and at the bakery long ago: the cross-sell no longer applies.
    m["everywhere"] = await join(sessions, program, 206)
    await buy(sessions, program, m["everywhere"], "bakery", NOW - timedelta(days=50))
    await buy(sessions, program, m["everywhere"], "gym", NOW - timedelta(days=5))
    # Birthday on 8 March (week 8–14 March): told; on 2 March (week over): not.
    m["birthday"] = await join(sessions, program, 207)
    await buy(sessions, program, m["birthday"], "gym", NOW - timedelta(days=1))
    await buy(sessions, program, m["birthday"], "bakery", NOW - timedelta(days=1))
    await set_column(sessions, m["birthday"], birthday=date(2000, 3, 8))
    m["was_birthday"] = await join(sessions, program, 208)
    await buy(sessions, program, m["was_birthday"], "gym", NOW - timedelta(days=1))
    await buy(sessions, program, m["was_birthday"], "bakery", NOW - timedelta(days=1))
    await set_column(sessions, m["was_birthday"], birthday=date(2000, 3, 2))
    # Gold, active everywhere: the Gold promotion starting in five days.
    m["gold"] = await join(sessions, program, 209)
    await buy(sessions, program, m["gold"], "gym", NOW - timedelta(days=1))
    await buy(sessions, program, m["gold"], "bakery", NOW - timedelta(days=1))
    await set_column(sessions, m["gold"], tier="Gold")
    async with sessions() as s:
        await delete_member(s, await get_member(s, m["gone"]))
    return m


async def test_the_job_tells_each_member_who_qualifies_once(
    sessions: Sessions, program: Program
) -> None:
    m = await cast(sessions, program)
    async with sessions() as s:
        assert await tell_personal_offers(s, program, NOW, batch=3) == 4
    # "away" bought at the coffee shop 70 days ago: not lately enough for the cross-sell.
    expected = sorted(
        [
            ("welcome-back", m["away"], "inactive:2026-12-30"),
            ("new-partner", m["regular"], "once"),
            ("birthday", m["birthday"], "birthday:2027"),
            ("gold-spring", m["gold"], "once"),
        ],
        key=lambda r: (r[1], r[0]),
    )
    assert await told(sessions) == expected
    assert await outbox(sessions) == sorted(
        [
            (m["away"], "welcome-back", {"occasion": "inactive:2026-12-30"}),
            (m["regular"], "new-partner", {"occasion": "once", "partners": ["gym", "bakery"]}),
            (m["birthday"], "birthday", {"occasion": "birthday:2027", "until": "2027-03-14"}),
            (m["gold"], "gold-spring", {"occasion": "once"}),
        ],
        key=lambda r: (r[0], r[1]),
    )
    # Again the same day, and the next day: nobody is told twice.
    async with sessions() as s:
        assert await tell_personal_offers(s, program, NOW) == 0
        assert await tell_personal_offers(s, program, NOW + timedelta(days=1)) == 0
    assert len(await outbox(sessions)) == 4


async def test_two_runs_at_once_tell_each_member_once(
    sessions: Sessions, program: Program
) -> None:
    m = await cast(sessions, program)

    async def run() -> int:
        async with sessions() as s:
            return await tell_personal_offers(s, program, NOW, batch=2)

    counts = await asyncio.gather(run(), run(), run())
    assert sum(counts) == 4
    rows = await outbox(sessions)
    assert len(rows) == 4 and len({(r[0], r[1]) for r in rows}) == 4
    assert {r[0] for r in rows} == {m["away"], m["regular"], m["birthday"], m["gold"]}


async def test_win_back_again_after_a_new_lapse_and_birthday_again_next_year(
    sessions: Sessions, program: Program
) -> None:
    ann = await join(sessions, program, 301)
    await buy(sessions, program, ann, "coffee", NOW - timedelta(days=61))
    await buy(sessions, program, ann, "gym", NOW - timedelta(days=61))
    await buy(sessions, program, ann, "bakery", NOW - timedelta(days=61))
    await set_column(sessions, ann, birthday=date(2000, 3, 10))
    async with sessions() as s:
        assert await tell_personal_offers(s, program, NOW) == 2  # win-back and birthday
    # She comes back (the win-back's purpose), then stays away again for 60 days.
    await buy(sessions, program, ann, "coffee", NOW + timedelta(days=1))
    later = NOW + timedelta(days=40)
    async with sessions() as s:
        assert await tell_personal_offers(s, program, later) == 0
    lapse = NOW + timedelta(days=62)
    async with sessions() as s:
        assert await tell_personal_offers(s, program, lapse) == 1
    next_birthday = NOW + timedelta(days=366)  # 11 March 2028: in her birthday week
    await buy(sessions, program, ann, "coffee", next_birthday - timedelta(days=1))
    async with sessions() as s:
        assert await tell_personal_offers(s, program, next_birthday) == 1
    assert [(p, o) for p, _, o in await told(sessions)] == [
        ("birthday", "birthday:2027"),
        ("birthday", "birthday:2028"),
        ("welcome-back", "inactive:2027-01-08"),
        ("welcome-back", "inactive:2027-03-11"),
    ]


async def test_used_up_or_ended_promotions_are_not_told(
    sessions: Sessions, program: Program
) -> None:
    ann = await join(sessions, program, 401)
    await buy(sessions, program, ann, "gym", NOW - timedelta(days=1))
    await buy(sessions, program, ann, "bakery", NOW - timedelta(days=1))
    await set_column(sessions, ann, birthday=date(2000, 3, 9), tier="Gold")
    async with sessions() as s, s.begin():
        # This year's birthday bonus is taken already; the Gold one twice (its limit).
        await s.execute(
            text(
                "INSERT INTO promotion_uses (promotion, member_id, uses) VALUES"
                " ('birthday@2027', :m, 1), ('gold-spring', :m, 2)"
            ),
            {"m": ann},
        )
    async with sessions() as s:
        assert await tell_personal_offers(s, program, NOW) == 0
    # The summer one is told from a week before it starts; the winter one never.
    await buy(sessions, program, ann, "coffee", datetime(2027, 5, 20, 9, tzinfo=UTC))
    async with sessions() as s:
        assert await tell_personal_offers(s, program, datetime(2027, 5, 24, 9, tzinfo=UTC)) == 0
        assert await tell_personal_offers(s, program, datetime(2027, 5, 25, 9, tzinfo=UTC)) == 1
    assert [p for p, _, _ in await told(sessions)] == ["summer"]


# ---- /offers --------------------------------------------------------------------------


async def test_offers_open_to_members_in_different_situations(
    sessions: Sessions, program: Program
) -> None:
    m = await cast(sessions, program)
    newcomer = await join(sessions, program, 501, joined=NOW - timedelta(days=3))

    async def slugs(member: int, at: datetime = NOW) -> dict[str, Any]:
        async with sessions() as s:
            facts = await member_facts(s, member)
        return {o.promotion.slug: o for o in open_offers(program, facts, at)}

    away = await slugs(m["away"])
    assert list(away) == ["welcome-back", "birthday", "new-partner", "summer", "bakery-weekend"]
    assert away["birthday"].needs_birthday
    assert away["new-partner"].partners == ("gym", "bakery")
    assert away["welcome-back"].uses_left is None

    everywhere = await slugs(m["everywhere"])
    assert list(everywhere) == ["birthday", "summer", "bakery-weekend"]

    birthday = await slugs(m["birthday"])
    assert birthday["birthday"].birthday_from == date(2027, 3, 8)
    assert birthday["birthday"].birthday_until == date(2027, 3, 14)
    assert birthday["birthday"].uses_left == 1
    # The week after: the next birthday week, in 2028.
    after = await slugs(m["birthday"], NOW + timedelta(days=5))
    assert after["birthday"].birthday_from == date(2028, 3, 8)

    gold = await slugs(m["gold"])
    assert list(gold) == ["birthday", "gold-spring", "summer", "bakery-weekend"]
    assert gold["gold-spring"].uses_left == 2

    fresh = await slugs(newcomer)
    assert list(fresh) == ["birthday", "new-partner", "summer", "bakery-weekend"]
    assert fresh["new-partner"].partners == ("gym", "bakery")


WEEKEND_BIRTHDAY = {
    "slug": "birthday-weekend",
    "title": "A birthday weekend",
    "who": {"birthday": True},
    "when": {"weekdays": ["sat", "sun"]},
    "effect": {"bonus_points": 200},
    "funded_by": "program",
    "personal": True,
    "max_per_member": 1,
}


@pytest.mark.parametrize(
    "program", [parse_program({**OFFERS_PROGRAM, "promotions": [WEEKEND_BIRTHDAY]})]
)
async def test_a_birthday_offer_only_in_a_week_it_runs_in_and_dropped_with_the_birthday(
    sessions: Sessions, program: Program
) -> None:
    # Wednesday 10 March: Ann's week (4–10 March) has no weekend day left, though the
    # promotion runs on Saturday 13th, within the job's week ahead; Bob's (8–14) has it.
    ann, bob = await join(sessions, program, 501), await join(sessions, program, 502)
    await set_column(sessions, ann, birthday=date(2000, 3, 4))
    await set_column(sessions, bob, birthday=date(2000, 3, 8))
    async with sessions() as s:
        assert await tell_personal_offers(s, program, NOW) == 1
        assert open_offers(program, await member_facts(s, ann), NOW) == []
    assert [(m, p["until"]) for m, _, p in await outbox(sessions)] == [(bob, "2027-03-14")]
    # Bob takes his birthday away before the message goes: it is not sent.
    async with sessions() as s:
        await remove_birthday(s, bob, NOW + timedelta(minutes=1), WARSAW)
    assert await outbox(sessions) == []
