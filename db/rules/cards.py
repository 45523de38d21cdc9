"""Permanent card numbers: twelve digits, the last a Luhn check digit, so a mistyped digit
or two swapped neighbours at the till are caught before any lookup."""

from __future__ import annotations

import secrets

CARD_DIGITS = 12


def luhn_digit(payload: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(payload)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def new_card_number() -> str:
    # Random, not sequential: a card number must not reveal or enumerate other members.
    payload = str(secrets.randbelow(9 * 10 ** (CARD_DIGITS - 2)) + 10 ** (CARD_DIGITS - 2))
    return payload + luhn_digit(payload)


def normalize_card_number(text: str) -> str | None:
    """The card number if `text` is one with a valid check digit, else None."""
    digits = "".join(ch for ch in text if not ch.isspace() and ch != "-")
    if len(digits) != CARD_DIGITS or not (digits.isascii() and digits.isdigit()):
        return None
    return digits if luhn_digit(digits[:-1]) == digits[-1] else None


def format_card_number(number: str) -> str:
    return " ".join(number[i : i + 4] for i in range(0, len(number), 4))
