"""Promotions decided (db/rules/promotions.py), pure and on a fixed clock: each condition of
`when` and `who` at its boundaries (hours, weekdays, from/until included, a birthday week
across New Year and on 29 February, member_years, inactive_days), min_purchase against the
money charged after a discount, the documented order of effects (multipliers' parts adding
up exactly, then bonuses), and funders' splits to the point."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from db.rules import promotions as rules
from db.rules.discounts import charged
from db.rules.errors import InvalidLines, LinesDontAddUp
from db.rules.lines import Line, check_lines
from db.rules.program import Program, ProgramError, Promotion, parse_program
from db.rules.promotions import Shopper
from tests.conftest import TEST_PROGRAM

D = Decimal
WAW = ZoneInfo("Europe/Warsaw")
JOINED = datetime(2020, 1, 1, tzinfo=UTC)


def promo(**fields: Any) -> Promotion:
    return Promotion.model_validate({"slug": "p", "title": "P", **fields})


def program_of(*promotions: dict[str, Any]) -> Program:
    return parse_program(
        {
            **TEST_PROGRAM,
            "program": {**TEST_PROGRAM["program"], "timezone": "Europe/Warsaw"},
            "promotions": list(promotions),
        }
    )


def shopper(**facts: Any) -> Shopper:
    return Shopper(**{"tier": "Bronze", "joined_at": JOINED, **facts})


def at(y: int, m: int, d: int, hh: int = 12, mm: int = 0) -> datetime:
    """A local time in Warsaw."""
    return datetime(y, m, d, hh, mm, tzinfo=WAW)


@pytest.mark.parametrize(
    ("hour", "minute", "runs"),
    [(6, 59, False), (7, 0, True), (10, 59, True), (11, 0, False)],
)
def test_hours_from_the_start_up_to_not_including_the_end(
    hour: int, minute: int, runs: bool
) -> None:
    p = promo(when={"hours": "07:00-11:00"}, effect={"multiplier": "2"})
    assert rules.runs_on(p, at(2027, 3, 6, hour, minute)) is runs


def test_hours_to_midnight_and_the_program_time_zone() -> None:
    late = promo(when={"hours": "22:00-24:00"}, effect={"bonus_points": 1})
    assert rules.runs_on(late, at(2027, 3, 6, 23, 59))
    assert not rules.runs_on(late, at(2027, 3, 7, 0, 0))
    # matching reads `now` (UTC) in the program's zone: 06:30 UTC is 07:30 in Warsaw.
    program = program_of(
        {
            "slug": "m",
            "title": "M",
            "when": {"hours": "07:00-11:00"},
            "effect": {"bonus_points": 1},
        }
    )
    now = datetime(2027, 3, 6, 6, 30, tzinfo=UTC)
    assert [p.slug for p in rules.matching(program, "coffee", D(1), now, shopper())] == ["m"]
    assert rules.matching(program, "coffee", D(1), now - timedelta(hours=1), shopper()) == []


def test_weekdays() -> None:
    p = promo(when={"weekdays": ["sat", "sun"]}, effect={"bonus_points": 1})
    assert [rules.runs_on(p, at(2027, 3, d)) for d in (5, 6, 7, 8)] == [False, True, True, False]


def test_from_and_until_are_both_included() -> None:
    p = promo(when={"from": "2027-03-01", "until": "2027-03-31"}, effect={"bonus_points": 1})
    assert not rules.runs_on(p, at(2027, 2, 28, 23, 59))
    assert rules.runs_on(p, at(2027, 3, 1, 0, 0))
    assert rules.runs_on(p, at(2027, 3, 31, 23, 59))
    assert not rules.runs_on(p, at(2027, 4, 1, 0, 0))
    assert rules.upcoming(p, date(2027, 3, 31)) and not rules.upcoming(p, date(2027, 4, 1))


def test_birthday_week_across_new_year() -> None:
    born = date(1990, 12, 30)
    assert not rules.birthday_week(born, date(2026, 12, 29))
    assert rules.birthday_week(born, date(2026, 12, 30))
    assert rules.birthday_week(born, date(2027, 1, 5))  # the seventh day
    assert not rules.birthday_week(born, date(2027, 1, 6))
    assert rules.birthday_year(born, date(2027, 1, 5)) == 2026  # one use per birthday
    p = promo(who={"birthday": True}, effect={"bonus_points": 200}, max_per_member=1)
    assert rules.use_key(p, "coffee", at(2027, 1, 5), born) == "p@2026"
    assert rules.use_key(p, "coffee", at(2027, 12, 30), born) == "p@2027"


def test_birthday_on_29_february() -> None:
    born = date(2000, 2, 29)
    assert not rules.birthday_week(born, date(2027, 2, 27))
    assert rules.birthday_week(born, date(2027, 2, 28))  # kept on 28 February
    assert rules.birthday_week(born, date(2027, 3, 6))
    assert not rules.birthday_week(born, date(2027, 3, 7))
    assert rules.birthday_week(born, date(2028, 2, 29))
    assert not rules.birthday_week(born, date(2028, 2, 28))
    assert not rules.birthday_week(None, date(2028, 2, 29))


def test_member_years_are_full_years_in_the_program_zone() -> None:
    p = promo(who={"member_years": 1}, effect={"bonus_points": 1})
    joined = datetime(2025, 3, 5, 23, 30, tzinfo=UTC)  # 6 March, 00:30 in Warsaw
    s = shopper(joined_at=joined)
    assert not rules.eligible(p, s, at(2026, 3, 5, 23, 59), WAW)
    assert rules.eligible(p, s, at(2026, 3, 6, 0, 0), WAW)


def test_inactive_days_count_from_the_last_purchase_or_joining() -> None:
    p = promo(who={"inactive_days": 60}, effect={"bonus_points": 150})
    now = at(2027, 3, 6, 12, 0)
    last = now - timedelta(days=60)
    assert rules.eligible(p, shopper(last_purchase_at=last.astimezone(UTC)), now, WAW)
    just = last + timedelta(minutes=1)
    assert not rules.eligible(p, shopper(last_purchase_at=just.astimezone(UTC)), now, WAW)
    # Never bought: from joining.
    assert rules.eligible(p, shopper(joined_at=last.astimezone(UTC)), now, WAW)
    assert not rules.eligible(p, shopper(joined_at=just.astimezone(UTC)), now, WAW)


def test_first_ever_first_at_partner_and_tiers() -> None:
    now = at(2027, 3, 6)
    first = promo(who={"first_ever": True}, effect={"bonus_points": 1})
    here = promo(who={"first_at_partner": True}, effect={"bonus_points": 1})
    gold = promo(who={"tiers": ["Gold"]}, effect={"bonus_points": 1})
    assert rules.eligible(first, shopper(first_ever=True), now, WAW)
    assert not rules.eligible(first, shopper(first_at_partner=True), now, WAW)
    assert rules.eligible(here, shopper(first_at_partner=True), now, WAW)
    assert rules.limit(here) == 1 and rules.limit(first) == 1
    assert rules.use_key(here, "gym", now) == "p@gym"
    assert rules.eligible(gold, shopper(tier="Gold"), now, WAW)
    assert not rules.eligible(gold, shopper(tier="Silver"), now, WAW)


def test_min_purchase_against_the_money_charged_after_a_discount() -> None:
    program = program_of(
        {
            "slug": "book",
            "title": "Book",
            "partners": ["books"],
            "min_purchase": "40.00",
            "effect": {"bonus_points": 10},
        }
    )
    now = datetime(2027, 3, 6, 12, tzinfo=UTC)
    # 42.00 less a 5% discount charges 39.90: under the minimum.
    assert rules.matching(program, "books", charged(D("42.00"), D("2.10")), now, shopper()) == []
    assert rules.matching(program, "books", D("40.00"), now, shopper())
    assert rules.matching(program, "coffee", D("40.00"), now, shopper()) == []  # not there


def test_the_order_multipliers_multiply_then_bonuses_stamps_vouchers() -> None:
    program = program_of(
        {"slug": "bonus", "title": "B", "effect": {"bonus_points": 100}},
        {"slug": "half", "title": "H", "effect": {"multiplier": "1.5"}},
        {"slug": "stamp", "title": "S", "effect": {"bonus_points": 7}},
        {"slug": "double", "title": "D", "effect": {"multiplier": "2"}},
    )
    given = rules.awards(101, program.promotions)
    # 101 × 1.5 × 2 = 303: ×1.5 adds floor(151.5) − 101 = 50, ×2 adds 303 − 151 = 152.
    assert [(a.slug, a.points) for a in given] == [
        ("half", 50),
        ("double", 152),
        ("bonus", 100),
        ("stamp", 7),
    ]
    assert sum(a.points for a in given[:2]) == 303 - 101
    # A sale that earned nothing: multipliers give nothing; bonuses still do.
    assert [(a.slug, a.points) for a in rules.awards(0, program.promotions)] == [
        ("bonus", 100),
        ("stamp", 7),
    ]


@pytest.mark.parametrize("earned", [0, 1, 7, 99, 101, 333, 12_345])
def test_multiplier_parts_sum_exactly(earned: int) -> None:
    ms = [
        promo(slug=f"m{i}", effect={"multiplier": m}) for i, m in enumerate(["1.1", "1.25", "3"])
    ]
    total = sum(a.points for a in rules.awards(earned, ms))
    with_product = int(earned * D("1.1") * D("1.25") * D("3"))
    assert total == with_product - earned


def test_split_to_the_point() -> None:
    four = [("coffee", 25), ("books", 25), ("gym", 25), ("bakery", 25)]
    assert rules.split(101, four) == [("coffee", 26), ("books", 25), ("gym", 25), ("bakery", 25)]
    assert rules.split(103, four) == [("coffee", 26), ("books", 26), ("gym", 26), ("bakery", 25)]
    assert rules.split(1, [("a", 50), ("b", 50)]) == [("a", 1)]  # a part of 0 is left out
    thirds = [("a", 33), ("b", 33), ("c", 34)]
    for points in range(0, 301):
        parts = rules.split(points, thirds)
        assert sum(p for _, p in parts) == points
    assert rules.split(100, [(None, 100)]) == [(None, 100)]
    assert rules.funders(promo(effect={"bonus_points": 1}), "gym") == [("gym", 100)]
    assert rules.funders(promo(effect={"bonus_points": 1}, funded_by="program"), "gym") == [
        (None, 100)
    ]


def test_refunded_part_as_the_sale_own_points() -> None:
    # Partial refunds add up to the full one: each step is from the totals.
    steps = [D("30"), D("20"), D("7.50"), D("0")]
    taken = [
        rules.refunded_part(101, D("30"), after) - rules.refunded_part(101, D("30"), before)
        for before, after in pairwise(steps)
    ]
    assert sum(taken) == 101 and all(t >= 0 for t in taken)


def test_refund_parts_add_up_to_the_whole_and_to_each_funders_payment() -> None:
    rng = random.Random(7)
    for _ in range(300):
        points = rng.randint(1, 500)
        shares = rng.choice([[25, 25, 25, 25], [50, 50], [70, 20, 10], [34, 33, 33]])
        paid = [p for _, p in rules.split(points, [(str(i), s) for i, s in enumerate(shares)])]
        total = D(rng.randint(100, 10_000)) / 100
        left, returned, back = total, [0] * len(paid), 0
        while left > 0:
            after = max(left - D(rng.randint(1, 5_000)) / 100, D(0))
            due = rules.refunded_part(points, total, after) - rules.refunded_part(
                points, total, left
            )
            parts = rules.refund_parts(due, paid, returned)
            assert sum(parts) == due and all(p >= 0 for p in parts)
            returned = [r + p for r, p in zip(returned, parts, strict=True)]
            back += due
            left = after
        assert returned == paid and back == points


# ------------------------------------------------------- categories (itemised lines)

BEANS = {
    "slug": "beans",
    "title": "Double points on coffee beans",
    "when": {"categories": ["coffee-beans"]},
    "effect": {"multiplier": "2"},
}
BASKET = (Line(D("30.00"), category="coffee-beans"), Line(D("70.00"), category="cups"))


def test_a_promotion_with_categories_needs_a_line_of_them() -> None:
    program = program_of(BEANS)
    now = datetime(2027, 3, 6, 12, tzinfo=UTC)
    assert rules.matching(program, "coffee", D("100.00"), now, shopper()) == []  # no lines
    cups = (Line(D("100.00"), category="cups"),)
    assert rules.matching(program, "coffee", D("100.00"), now, shopper(), cups) == []
    assert [p.slug for p in rules.matching(program, "coffee", D(100), now, shopper(), BASKET)] == [
        "beans"
    ]


def test_min_purchase_of_a_category_counts_its_lines_after_their_share_of_the_discount() -> None:
    beans = promo(
        when={"categories": ["coffee-beans"]}, min_purchase="30.00", effect=BEANS["effect"]
    )
    # 30.00 of beans in a 100.00 sale: the whole charged, they charged 30.00.
    assert rules.charged_on(beans, D("100.00"), BASKET) == D("30.00")
    assert rules.in_sale(beans, D("100.00"), BASKET)
    # At 5 % off the sale charged 95.00, the beans 28.50: under 30.00.
    assert rules.charged_on(beans, D("95.00"), BASKET) == D("28.50")
    assert not rules.in_sale(beans, D("95.00"), BASKET)
    # Shares are rounded half up to the cent: 10.00 of 30.00 at 29.99 charged is 9.996…
    thirds = (Line(D("10.00"), category="coffee-beans"), Line(D("20.00")))
    assert rules.charged_on(beans, D("29.99"), thirds) == D("10.00")
    # A promotion without categories counts everything charged, lines or not.
    assert rules.charged_on(promo(effect={"bonus_points": 1}), D("95.00"), BASKET) == D("95.00")


def test_a_category_multiplier_multiplies_the_points_of_its_lines_only() -> None:
    beans = promo(slug="beans", **{k: v for k, v in BEANS.items() if k in ("when", "effect")})
    everything = promo(slug="all", effect={"multiplier": "2"})
    triple = promo(
        slug="triple", when={"categories": ["coffee-beans"]}, effect={"multiplier": "3"}
    )
    # 100 points earned, 30 % of the money on beans: ×2 on them adds 30.
    assert [(a.slug, a.points) for a in rules.awards(100, [beans], BASKET)] == [("beans", 30)]
    # ×2 on all, then ×3 on beans: 70×2 + 30×2×3 = 320; the parts add up to it exactly.
    given = rules.awards(100, [everything, triple], BASKET)
    assert [(a.slug, a.points) for a in given] == [("all", 100), ("triple", 120)]
    # Multipliers without categories on a sale with lines: as on one without.
    assert rules.awards(101, [everything], BASKET) == rules.awards(101, [everything])
    # Rounded down once, on the total: 33 points × 2 on 10.00 of 30.00 is 33 + 11.
    thirds = (Line(D("10.00"), category="coffee-beans"), Line(D("20.00"), category="cups"))
    assert [a.points for a in rules.awards(33, [beans], thirds)] == [11]


@pytest.mark.parametrize(
    ("lines", "error", "params"),
    [
        ((Line(D("10.00")), Line(D("5.00"))), LinesDontAddUp, {"total": D("15.00")}),
        ((Line(D("-1.00")), Line(D("21.00"))), InvalidLines, {"line": 0, "field": "amount"}),
        ((Line(D("1.001")),), InvalidLines, {"line": 0, "field": "amount"}),
        ((Line(D("20.00"), quantity=D(0)),), InvalidLines, {"field": "quantity"}),
        ((Line(D("20.00"), category="Coffee Beans"),), InvalidLines, {"field": "category"}),
        ((Line(D("20.00"), sku="\x00"),), InvalidLines, {"field": "sku"}),
        ((Line(D("20.00"), sku="x" * 65),), InvalidLines, {"field": "sku"}),
    ],
)
def test_lines_are_checked_and_add_up_to_the_amount(
    lines: tuple[Line, ...], error: type[Exception], params: dict[str, Any]
) -> None:
    with pytest.raises(error) as info:
        check_lines(lines, D("20.00"))
    assert params.items() <= info.value.params.items()  # type: ignore[attr-defined]


def test_lines_kept_to_the_cent_and_the_gram() -> None:
    kept = check_lines((Line(D("12.5"), D("0.25"), "coffee-beans", "B-1"), Line(D("7.50"))), D(20))
    assert kept == (
        Line(D("12.50"), D("0.250"), "coffee-beans", "B-1"),
        Line(D("7.50"), D("1.000")),
    )
    assert check_lines((), D("20.00")) == ()  # a sale without lines


@pytest.mark.parametrize(
    ("categories", "expected"),
    [
        (["Coffee Beans"], "'Coffee Beans' is not a category"),
        (["beans", "beans"], "a category is listed twice"),
        ("beans", "Input should be a valid list"),
    ],
)
def test_categories_in_the_program_file_are_checked(categories: Any, expected: str) -> None:
    bad = {**BEANS, "when": {"categories": categories}}
    with pytest.raises(ProgramError) as info:
        program_of(bad)
    assert str(info.value).startswith(
        f"program.toml: promotions[0] (beans).when.categories: {expected}"
    ), str(info.value)
