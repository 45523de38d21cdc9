"""The program file: the shipped demo loads; a bad file names the key and the problem."""

from __future__ import annotations

import copy
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
        (["partners", 2, "earn_pct"], "5", "partners[2].earn_pct: unknown key"),
        (
            ["partners", 1, "earn_percent"],
            "-1",
            "partners[1].earn_percent: Input should be greater",
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
            "partners[0].name: 'english' is not a language code",
        ),
        (["partners", 0, "name"], {"pl": ""}, "partners[0].name: the pl text must not be empty"),
        (["partners", 0, "name"], {}, "partners[0].name: must be a string or a table"),
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
    good = tmp_path / "good.toml"
    good.write_text(text.replace("[program]\n", '[program]\ntimezone = "Europe/Warsaw"\n', 1))
    assert main(["check-program", str(good)]) == 0
    assert load_program(good).program.zone.key == "Europe/Warsaw"
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace("[program]\n", '[program]\ntimezone = "Warsaw"\n', 1))
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
            "program.toml: stamp_cards[0].reward: 'free-coffee' is worth 0 points and "
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
