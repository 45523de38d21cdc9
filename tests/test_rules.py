"""Pure loyalty arithmetic and card numbers."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from db.rules import errors
from db.rules.cards import format_card_number, luhn_digit, new_card_number, normalize_card_number
from db.rules.points import (
    check_purchase,
    currency_signs,
    earned_points,
    max_redeemable,
    parse_money,
    parse_till_amount,
    points_money,
    share_kept,
)

D = Decimal


@pytest.mark.parametrize(
    ("text", "value"),
    [("12.50", D("12.50")), ("12,50", D("12.50")), ("12", D("12")), (" 1 250,00 ", D("1250.00"))],
)
def test_parse_money_accepts_till_formats(text: str, value: Decimal) -> None:
    assert parse_money(text) == value


@pytest.mark.parametrize(
    "text", ["", "abc", "1.2.3", "12,5,0", "--1", "1e", "1e3", "NaN", "Infinity", "0x10", "+-1"]
)
def test_parse_money_refuses_garbage(text: str) -> None:
    with pytest.raises(errors.InvalidAmount):
        parse_money(text)


LOCALES = ("en_GB", "ru_RU", "uk_UA", "pl_PL")
PLN = currency_signs("PLN", LOCALES)


def test_currency_signs_come_from_every_locale() -> None:
    assert currency_signs("PLN", LOCALES) == {"pln", "zł"}
    assert {"€", "eur"} <= currency_signs("EUR", LOCALES)
    assert {"₴", "uah"} <= currency_signs("UAH", LOCALES)


@pytest.mark.parametrize(
    ("text", "amount", "receipt"),
    [
        ("12", D("12"), None),
        ("12.50", D("12.50"), None),
        ("12,50", D("12.50"), None),
        (" 7.5 ", D("7.5"), None),
        ("12.50 PLN", D("12.50"), None),
        ("12.50pln", D("12.50"), None),
        ("5 zł", D("5"), None),
        ("5 ZŁ", D("5"), None),
        ("PLN 5", D("5"), None),
        ("zł\u00a05,10", D("5.10"), None),
        ("12.50 #A-1043", D("12.50"), "A-1043"),
        ("12.50#A-1043", D("12.50"), "A-1043"),
        ("12,50 PLN # A 1043 ", D("12.50"), "A 1043"),
        ("0", D("0"), None),  # a number; check_purchase refuses it as a purchase
    ],
)
def test_till_amount_accepted(text: str, amount: Decimal, receipt: str | None) -> None:
    typed = parse_till_amount(text, PLN)
    assert (typed.amount, typed.receipt) == (amount, receipt)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "12 50",  # a receipt number after a space used to be glued on: 1,250.00
        "8 42",
        "20 15",
        "1 250",
        "1e3",
        "12.505",
        "12.",
        ".50",
        "1.2.3",
        "12,5,0",
        "-5",
        "+5",
        "12.50 A-1043",  # a receipt only after #
        "12.50 EUR",  # not the program's currency
        "PLN 5 zł",
        "$5",
        "١٢",  # digits of another script
        "NaN",
        "Infinity",
        "0x10",
    ],
)
def test_till_amount_refused(text: str) -> None:
    with pytest.raises(errors.InvalidAmount):
        parse_till_amount(text, PLN)


@pytest.mark.parametrize("text", ["12 #", "12 #\x00", "12 #" + "x" * 41, "12 # "])
def test_bad_receipt_numbers_are_told_apart_from_bad_amounts(text: str) -> None:
    with pytest.raises(errors.InvalidReceipt):
        parse_till_amount(text, PLN)


def test_receipt_numbers_are_read_in_capitals() -> None:
    assert parse_till_amount("12.50 #a-1043", PLN).receipt == "A-1043"


def test_purchase_checks() -> None:
    assert check_purchase(D("12.5"), D("100")) == D("12.50")
    with pytest.raises(errors.AmountTooLarge):
        check_purchase(D("100.01"), D("100"))
    for bad in (D("0"), D("-1"), D("0.001"), D("sNaN"), D("-Infinity")):
        with pytest.raises(errors.InvalidAmount):
            check_purchase(bad, D("100"))


def test_earning_formula_floors() -> None:
    # 12.39 × 5 % × 1.25 / 0.01 = 77.4375
    assert earned_points(D("12.39"), D("5"), D("1.25"), D("0.01")) == 77
    assert earned_points(D("0.01"), D("5"), D("1"), D("0.01")) == 0
    assert max_redeemable(D("10.01"), D("50"), D("0.01")) == 500
    assert points_money(333, D("0.01")) == D("3.33")
    assert points_money(5, D("0.001")) == D("0.00")


@given(
    total=st.integers(min_value=0, max_value=10**6),
    cents=st.integers(min_value=1, max_value=10**7),
    cuts=st.lists(st.integers(min_value=1, max_value=10**7), max_size=5),
)
def test_partial_shares_sum_to_the_whole(total: int, cents: int, cuts: list[int]) -> None:
    amount = D(cents) / 100
    remaining = amount
    given_back = 0
    for cut in cuts:
        part = min(D(cut) / 100, remaining)
        after = remaining - part
        given_back += share_kept(total, amount, remaining) - share_kept(total, amount, after)
        remaining = after
    given_back += share_kept(total, amount, remaining) - share_kept(total, amount, D(0))
    assert given_back == total


def test_card_numbers_check_digit() -> None:
    for _ in range(200):
        number = new_card_number()
        assert len(number) == 12 and normalize_card_number(number) == number
        assert normalize_card_number(format_card_number(number)) == number
        wrong = number[:-1] + str((int(number[-1]) + 1) % 10)
        assert normalize_card_number(wrong) is None
        swapped = number[1] + number[0] + number[2:]
        # Luhn catches every swap of neighbours except 09 <-> 90.
        if swapped != number and {number[0], number[1]} != {"0", "9"}:
            assert normalize_card_number(swapped) is None
    assert luhn_digit("7992739871") == "3"
    assert normalize_card_number("12345") is None
