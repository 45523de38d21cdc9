"""The program file: the shipped demo loads; a bad file names the key and the problem."""

from __future__ import annotations

import copy
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from db.rules.program import ProgramError, load_program, parse_program
from tests.conftest import ROOT, TEST_PROGRAM


def test_demo_program_is_a_real_coalition() -> None:
    program = load_program(ROOT / "program.toml")
    assert len(program.partners) >= 4
    assert len({p.category for p in program.partners}) >= 4
    assert len(program.tiers) == 3
    assert program.referral.inviter_points > 0 and program.referral.invitee_points > 0
    assert sum(len(p.offers) for p in program.partners) >= 3
    assert program.program.point_value == Decimal("0.01")
    assert program.partner("coffee") is not None and program.partner("nope") is None
    # A Polish coalition (PLN): its days, hours and birthdays are Warsaw's, as the docs say.
    assert program.program.currency == "PLN" and program.program.zone.key == "Europe/Warsaw"


def _broken(path: list[str | int], value: Any) -> dict[str, Any]:
    data = copy.deepcopy(TEST_PROGRAM)
    target: Any = data
    for step in path[:-1]:
        target = target[step]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (["partners", 2, "earn_pct"], "5", "partners[2] (gym).earn_pct: unknown key"),
        (
            ["partners", 1, "earn_percent"],
            "-1",
            "partners[1] (books).earn_percent: Input should be greater",
        ),
        (["program", "point_value"], "zero", "program.point_value: not a decimal number: 'zero'"),
        (["program", "max_purchase"], KeyError, "program.max_purchase: required key is missing"),
        (["partners", 3, "slug"], "coffee", "partners[3].slug: duplicate slug 'coffee'"),
        (
            ["program", "max_redeem_percent"],
            150,
            "program.max_redeem_percent: Input should be less",
        ),
        (["tiers", 1, "min_spend"], "5000", "tiers: tiers must be listed by strictly increasing"),
        (["program", "currency"], "zloty", "program.currency: String should match pattern"),
        (["program", "welcome_points"], True, "program.welcome_points"),
        (
            ["program", "timezone"],
            "Warsaw",
            "program.timezone: 'Warsaw' is not an IANA time zone name",
        ),
        (["program", "timezone"], "Europe", "program.timezone: 'Europe' is not an IANA"),
        (["program", "timezone"], "", "program.timezone: '' is not an IANA"),
        (
            ["partners", 0, "name"],
            {"english": "Café"},
            "partners[0] (coffee).name: 'english' is not a language code",
        ),
        (
            ["partners", 0, "name"],
            {"pl": ""},
            "partners[0] (coffee).name: the pl text must not be empty",
        ),
        (["partners", 0, "name"], {}, "partners[0] (coffee).name: must be a string or a table"),
        (["tiers", 0, "name"], {"en": 5}, "tiers[0].name: the en text must be a string"),
        (["program", "name"], "x" * 101, "program.name: is longer than 100 characters"),
    ],
)
def test_bad_file_names_the_key(path: list[str | int], value: Any, expected: str) -> None:
    with pytest.raises(ProgramError) as info:
        parse_program(_broken(path, value), "program.toml")
    message = str(info.value)
    assert message.startswith(f"program.toml: {expected}"), message
    assert "\n" not in message


def test_floats_read_as_written() -> None:
    data = copy.deepcopy(TEST_PROGRAM)
    data["tiers"][1]["multiplier"] = 1.1
    data["program"]["point_value"] = 0.01
    program = parse_program(data)
    assert program.tiers[1].multiplier == Decimal("1.1")
    assert program.program.point_value == Decimal("0.01")


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ProgramError, match="program file not found"):
        load_program(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[program\nname = 1\n")
    with pytest.raises(ProgramError, match="not valid TOML"):
        load_program(bad)


def test_check_program_refuses_a_time_zone_that_is_not_iana(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bot.__main__ import main

    text = (ROOT / "program.toml").read_text(encoding="utf-8")
    zone = 'timezone = "Europe/Warsaw"'  # the demo's
    assert text.count(zone) == 1
    good = tmp_path / "good.toml"
    good.write_text(text.replace(zone, 'timezone = "Asia/Kathmandu"'))
    assert main(["check-program", str(good)]) == 0
    assert load_program(good).program.zone.key == "Asia/Kathmandu"
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace(zone, 'timezone = "Warsaw"'))
    assert main(["check-program", str(bad)]) == 2
    assert "program.timezone: 'Warsaw' is not an IANA time zone name" in capsys.readouterr().err


def test_texts_in_several_languages() -> None:
    data = copy.deepcopy(TEST_PROGRAM)
    data["partners"][0]["name"] = {"pl": "Kawiarnia", "en": "Coffee House"}
    data["partners"][1]["name"] = {"ru": "Книги"}  # no English: the first one stands in
    data["tiers"][1]["name"] = {"en": "Silver", "uk": "Срібло"}
    program = parse_program(data)
    coffee, books = program.partners[0].name, program.partners[1].name
    assert coffee == "Coffee House" and coffee.in_language("pl") == "Kawiarnia"
    assert coffee.in_language("ru") == "Coffee House"
    assert books == "Книги" and books.in_language("en") == "Книги"
    # The English text is the tier's identity: members' stored tiers still match it.
    assert program.tier("Silver").name.in_language("uk") == "Срібло"


def test_the_demo_program_speaks_every_language() -> None:
    program = load_program(ROOT / "program.toml")
    texts = [program.program.name, *(t.name for t in program.tiers)]
    for partner in program.partners:
        texts += [partner.category, *(o.title for o in partner.offers)]
        texts += [o.text for o in partner.offers]
    for text in texts:
        assert set(text.translations) == {"en", "ru", "uk", "pl"}, text


def _with_card(partners: list[str], reward_points: int) -> dict[str, Any]:
    """The test program with a catalogue reward at the café (worth `reward_points`) that a
    stamp card of `partners` gives."""
    data = copy.deepcopy(TEST_PROGRAM)
    data["rewards"] = [
        {"slug": "free-coffee", "title": "A coffee", "partner": "coffee", "points": reward_points}
    ]
    data["stamp_cards"] = [
        {
            "slug": "tour",
            "name": "Tour",
            "partners": partners,
            "stamps": 2,
            "reward": "free-coffee",
        }
    ]
    return data


def test_a_zero_point_voucher_comes_only_from_its_own_partners_card() -> None:
    """A 0-point reward's voucher moves no points when claimed: the café bears it. So only a
    card of the café alone may give it; a tour card filling at the gym may not (it would
    give a café voucher nobody pays the café for)."""
    assert parse_program(_with_card(["coffee"], 0)).stamp_cards[0].reward == "free-coffee"
    # A reward with a price: the partner where the card fills funds it (its points move).
    assert parse_program(_with_card(["coffee", "gym"], 300)).stamp_cards[0].partners == [
        "coffee",
        "gym",
    ]
    for partners in (["coffee", "gym"], ["gym"], ["gym", "coffee"]):
        with pytest.raises(ProgramError) as info:
            parse_program(_with_card(partners, 0))
        message = str(info.value)
        assert message.startswith(
            "program.toml: stamp_cards[0] (tour).reward: 'free-coffee' is worth 0 points and "
            "honoured at 'coffee', so only a card of 'coffee' alone may give it"
        ), message


def test_a_program_needs_a_business() -> None:
    data = copy.deepcopy(TEST_PROGRAM)
    for partner in data["partners"]:
        partner["kind"] = "charity"
        partner["earn_percent"] = "0"
    with pytest.raises(ProgramError) as info:
        parse_program(data)
    assert str(info.value).startswith(
        "program.toml: partners: at least one partner must be a business"
    ), info.value
    data["partners"][2]["kind"] = "business"  # one is enough
    assert [p.slug for p in parse_program(data).partners if not p.charity] == ["gym"]


CARDS: dict[str, Any] = {
    **TEST_PROGRAM,
    "partners": [
        *TEST_PROGRAM["partners"],
        {"slug": "shelter", "name": "Happy Paws", "kind": "charity"},
    ],
    "rewards": [{"slug": "free-coffee", "title": "A coffee", "partner": "coffee"}],
    "stamp_cards": [
        {
            "slug": "coffee-10",
            "name": "Tenth coffee free",
            "partners": ["coffee"],
            "stamps": 9,
            "reward": "free-coffee",
        },
        {
            "slug": "city-tour",
            "name": "Tour",
            "partners": ["coffee", "books"],
            "stamps": 2,
            "distinct_partners": True,
            "reward_points": 100,
        },
    ],
}


def _cards(path: list[str | int], value: Any) -> dict[str, Any]:
    data = copy.deepcopy(CARDS)
    target: Any = data
    for step in path[:-1]:
        target = target[step]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (
            ["stamp_cards", 1, "partners"],
            ["coffee", "fox-caffe"],
            "stamp_cards[1] (city-tour).partners: no partner 'fox-caffe' "
            "(the partners are: coffee, books, gym, bakery)",
        ),
        (
            ["stamp_cards", 1, "partners"],
            ["shelter", "books"],
            "stamp_cards[1] (city-tour).partners: 'shelter' is a charity: it sells nothing",
        ),
        (
            ["rewards", 0, "partner"],
            "fox-caffe",
            "rewards[0] (free-coffee).partner: no partner 'fox-caffe' "
            "(the partners are: coffee, books, gym, bakery)",
        ),
        (
            ["rewards", 0, "partner"],
            "shelter",
            "rewards[0] (free-coffee).partner: 'shelter' is a charity: it sells nothing",
        ),
        (
            ["stamp_cards", 0, "reward"],
            "free-cofee",
            "stamp_cards[0] (coffee-10).reward: no reward 'free-cofee' "
            "(the rewards are: free-coffee)",
        ),
        (
            ["stamp_cards", 1, "reward_points"],
            0,
            "stamp_cards[1] (city-tour): give the card a reward (a catalogue slug) or "
            "reward_points greater than 0",
        ),
        (
            ["stamp_cards", 0, "reward_points"],
            5,
            "stamp_cards[0] (coffee-10): give the card only one of reward or reward_points",
        ),
        (["stamp_cards", 1, "stamps"], 1, "stamp_cards[1] (city-tour).stamps: Input should be"),
        (
            ["partners", 4, "earn_percent"],
            "1",
            "partners[4] (shelter): a charity takes donations, not sales",
        ),
        # A bad slug is not repeated as the entry's name; the message names it.
        (["stamp_cards", 1, "slug"], "City Tour", "stamp_cards[1].slug: String should match"),
        (["stamp_cards", 1, "slug"], "coffee-10", "stamp_cards[1].slug: duplicate slug"),
    ],
)
def test_stamp_cards_and_rewards_name_the_entry_and_the_problem(
    path: list[str | int], value: Any, expected: str
) -> None:
    parse_program(CARDS)  # the base is good
    with pytest.raises(ProgramError) as info:
        parse_program(_cards(path, value), "program.toml")
    message = str(info.value)
    assert message.startswith(f"program.toml: {expected}"), message


def test_a_tour_card_has_no_daily_limit_unless_it_sets_one() -> None:
    """Each stamp of a distinct_partners card comes from another partner: a tour walked in
    one afternoon fills it. An ordinary card keeps one stamp a day."""
    program = parse_program(CARDS)
    coffee, tour = program.stamp_cards
    assert (coffee.per_day, tour.per_day) == (1, 0)
    data = _cards(["stamp_cards", 1, "per_day"], 2)
    assert parse_program(data).stamp_cards[1].per_day == 2
    demo = load_program(ROOT / "program.toml").stamp_card("town-tour")
    assert demo is not None and demo.distinct_partners and demo.per_day == 0


def test_the_demo_coffee_card_counts_as_its_name_says() -> None:
    """ "Tenth coffee free": the ninth paid coffee fills the card, its voucher pays the tenth."""
    program = load_program(ROOT / "program.toml")
    card = program.stamp_card("coffee-10")
    assert card is not None and card.name == "Tenth coffee free"
    assert card.stamps == 9 and card.reward == "free-coffee"


def test_check_program_counts_what_an_owner_wrote(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bot.__main__ import main

    assert main(["check-program", str(ROOT / "program.toml")]) == 0
    assert capsys.readouterr().out == (
        "City Bonus: 4 partners and 1 charity, 2 stamp cards, 4 rewards, 6 promotions,"
        " a club (250 Stars or PLN 29.00 a month), OK\n"
    )
    one = tmp_path / "one.toml"
    text = (ROOT / "program.toml").read_text(encoding="utf-8")
    one.write_text(text.split('\n[[partners]]\nslug = "books"', 1)[0], encoding="utf-8")
    assert main(["check-program", str(one)]) == 0
    assert capsys.readouterr().out == (
        "City Bonus: 1 partner, 0 stamp cards, 0 rewards, 0 promotions, OK\n"
    )


def _with_stamps_promotion(partners: list[str] | None) -> dict[str, Any]:
    """The test program with the café's ordinary card, a tour card of all four partners,
    and a "+2 stamps" promotion at `partners` (None: everywhere)."""
    data = copy.deepcopy(TEST_PROGRAM)
    data["stamp_cards"] = [
        {"slug": "coffee-5", "name": "C", "partners": ["coffee"], "stamps": 5, "reward_points": 9},
        {
            "slug": "tour",
            "name": "T",
            "partners": ["coffee", "books", "gym", "bakery"],
            "stamps": 4,
            "distinct_partners": True,
            "reward_points": 10,
        },
    ]
    promo: dict[str, Any] = {"slug": "stamps", "title": "+2", "effect": {"stamps": 2}}
    if partners is not None:
        promo["partners"] = partners
    data["promotions"] = [promo]
    return data


def test_a_stamps_promotion_needs_an_ordinary_card_wherever_it_applies() -> None:
    """A promotion's stamps go on the selling partner's ordinary cards only: at a partner
    with a tour card alone it would be told and put nowhere, so the file is refused."""
    program = parse_program(_with_stamps_promotion(["coffee"]))
    assert [c.slug for c in program.promotion_cards_at("coffee")] == ["coffee-5"]
    for partners, bare in ((None, "'books', 'gym', 'bakery'"), (["coffee", "books"], "'books'")):
        with pytest.raises(ProgramError) as info:
            parse_program(_with_stamps_promotion(partners))
        assert str(info.value) == (
            f"program.toml: promotions[0] (stamps).effect.stamps: {bare} has no ordinary stamp "
            "card (a distinct_partners card takes no promotion's stamps): list in partners "
            "only partners with one"
        ), str(info.value)


def _with_reward_promotion(points: int, **promo: Any) -> dict[str, Any]:
    data = copy.deepcopy(TEST_PROGRAM)
    data["rewards"] = [
        {"slug": "free-coffee", "title": "A coffee", "partner": "coffee", "points": points}
    ]
    data["promotions"] = [
        {"slug": "coffee-gift", "title": "Gift", "effect": {"reward": "free-coffee"}, **promo}
    ]
    return data


def test_a_zero_point_voucher_comes_only_from_its_own_partners_promotion() -> None:
    """As for a stamp card: a 0-point reward's voucher moves no points when claimed, so the
    café bears it; only a promotion at the café alone, funded by it, may give it."""
    for ok in ({"partners": ["coffee"]}, {"partners": ["coffee"], "funded_by": {"coffee": 100}}):
        assert parse_program(_with_reward_promotion(0, **ok)).promotions[0].effect.reward
    # With a price, anyone may give it: its funder's points move when it is claimed.
    assert parse_program(_with_reward_promotion(300, partners=["books"], funded_by="program"))
    for bad in (
        {},  # everywhere
        {"partners": ["books"]},
        {"partners": ["coffee", "books"]},
        {"partners": ["coffee"], "funded_by": "program"},
        {"partners": ["coffee"], "funded_by": {"books": 100}},
    ):
        with pytest.raises(ProgramError) as info:
            parse_program(_with_reward_promotion(0, **bad))
        assert str(info.value) == (
            "program.toml: promotions[0] (coffee-gift).effect.reward: 'free-coffee' is worth 0 "
            "points and honoured at 'coffee', so only a promotion at 'coffee' alone "
            '(partners = ["coffee"]), funded by it, may give it: give the reward a price in '
            "points"
        ), (bad, str(info.value))


PROMOTED: dict[str, Any] = {
    **TEST_PROGRAM,
    "promotions": [
        {
            "slug": "bakery-weekend",
            "title": "Double points at the bakery on weekend mornings",
            "partners": ["bakery"],
            "when": {"weekdays": ["sat", "sun"]},
            "effect": {"multiplier": "2"},
        }
    ],
}


def _promoted(**changes: Any) -> dict[str, Any]:
    return {**PROMOTED, "promotions": [{**PROMOTED["promotions"][0], **changes}]}


def test_a_true_or_false_is_not_a_string() -> None:
    for value in ("yes", "no", "false"):
        with pytest.raises(
            ProgramError, match=re.escape(f"who.first_ever: '{value}' is not true")
        ):
            parse_program(_promoted(who={"first_ever": value}))


def test_club_mistakes_name_the_key() -> None:
    for club, message in [
        ({"name": "Friends", "price": "29.999"}, "club.price: Decimal input should have no"),
        ({"name": "Friends", "stars_per_month": 250, "multiplier": "0.5"}, "club.multiplier:"),
        ({"name": "Friends", "stars_per_month": 10_001}, "club.stars_per_month:"),
        ({"name": "Friends", "price": "9", "owner": 1}, "club.owner: unknown key"),
        ({"name": "The Extraordinarily Good City Club", "price": "9"}, "club.name: is longer"),
    ]:
        with pytest.raises(ProgramError, match=re.escape(message)):
            parse_program({**PROMOTED, "club": club})
    yen = {**PROMOTED, "program": {**PROMOTED["program"], "currency": "JPY"}}
    with pytest.raises(ProgramError, match=re.escape("club.price: 3000.50 JPY is finer than")):
        parse_program({**yen, "club": {"name": "Friends", "price": "3000.50"}})
    assert parse_program({**yen, "club": {"name": "Friends", "price": "3000"}}).club
    assert parse_program({**yen, "club": {"name": "Friends", "price": "3000.00"}}).club


def test_a_club_multiplier_is_a_promotion_paid_by_the_program() -> None:
    program = parse_program(
        {
            **PROMOTED,
            "club": {
                "name": "Friends",
                "price": "29.00",
                "multiplier": "1.5",
                "discount_percent": "5",
            },
        }
    )
    club = program.promotion("club")
    assert club is not None and club.funded_by == "program" and club.who.club
    assert club.effect.multiplier == Decimal("1.5") and str(club.title) == "Friends"
    assert [p.slug for p in program.promotions_at("bakery")] == ["bakery-weekend", "club"]
    assert [p.slug for p in program.promotions] == ["bakery-weekend"]
    assert program.discount_percent(str(program.tiers[0].name), club=True) == Decimal(5)
    assert program.discount_percent(str(program.tiers[0].name), club=False) == Decimal(0)
    plain = parse_program({**PROMOTED, "club": {"name": "Friends", "stars_per_month": 100}})
    assert plain.club_promotion is None and plain.promotion("club") is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            _promoted(who={"club": True}),
            "promotions[0] (bakery-weekend).who.club: the program has no [club]",
        ),
        (
            {**PROMOTED, "club": {"name": "Friends"}},
            "club: give the club a price: stars_per_month (Telegram Stars), price",
        ),
        (
            {
                **PROMOTED,
                "club": {"name": "Friends", "price": "29.00", "discount_percent": "99.5"},
                "tiers": [
                    {"name": "All", "min_spend": "0", "multiplier": "1", "discount_percent": "1"}
                ],
            },
            "club.discount_percent: with the 1 % of the top tier it would take 100.5 % off",
        ),
        (
            _promoted(slug="club"),
            'promotions[0] (club).slug: "club" is the club\'s own multiplier: choose another',
        ),
        (
            _promoted(funded_by="bakery"),
            "promotions[0] (bakery-weekend).funded_by: 'bakery' is not a funder: write "
            '"program", or percents per partner like { bakery = 100 }',
        ),
        (
            _promoted(funded_by={"bakery": "100"}),
            'funded_by: this is not a funder: write "program", or percents per partner',
        ),
        (
            _promoted(when={"weekdays": ["Sat", "snu"]}),
            "promotions[0] (bakery-weekend).when.weekdays[0]: 'Sat' is not one of 'mon', "
            "'tue', 'wed', 'thu', 'fri', 'sat' or 'sun' (and 1 more problem)",
        ),
    ],
)
def test_promotion_mistakes_are_named_plainly(data: dict[str, Any], message: str) -> None:
    parse_program(PROMOTED)  # the base is good
    with pytest.raises(ProgramError) as info:
        parse_program(data, "program.toml")
    assert message in str(info.value)
    assert "literal" not in str(info.value) and "Input should be" not in str(info.value)
