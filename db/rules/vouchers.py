"""Voucher codes and the refusals of the rewards catalogue and of claiming a voucher.

A voucher's code is what a cashier types when the QR code cannot be scanned: 8 characters
of Crockford's base32 (no I, L, O or U, so nothing reads as a digit), always with at least
one letter, so a code is never mistaken for an amount or a card number. Codes of vouchers
taken from the catalogue are derived from the confirmation the member tapped (HMAC under the
bot's secret): a double tap names the same voucher, and nobody can choose or predict a code.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import timedelta
from itertools import count

from db.rules.errors import DomainError
from db.rules.points import parse_till_amount

CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_LENGTH = 8
# Typed at the till on its own: 8 characters that normalize_code reads (the alphabet, and O,
# I and L, read as 0 and 1: every letter but U; a space or a hyphen may split them in two, as
# the member's screen shows them), with at least one letter.
BARE_CODE = re.compile(
    r"^\s*(?=[0-9A-Za-z\s-]*[A-Za-z])[0-9A-TV-Za-tv-z]{4}[\s-]?[0-9A-TV-Za-tv-z]{4}\s*$"
)
# Typed text that reads as a voucher code gone wrong (see looks_like_code), and an amount
# with its currency ("100 PLN", "EUR100"), which never does.
_CODE_LIKE = re.compile(r"[0-9A-Za-z]+(?:[\s-][0-9A-Za-z]+)?")
_AMOUNT_LIKE = re.compile(r"[A-Za-z]{1,4}\s*\d+|\d+\s*[A-Za-z]{1,4}")
# What people misread, as Crockford's base32 reads it.
_LOOKALIKES = str.maketrans({"O": "0", "I": "1", "L": "1"})


# Vouchers that count against a reward's stock and per_member limit (module docstring of
# db/usecases/vouchers.py): an expired or voided one gave nothing.
STANDING = ("open", "claimed")

# A second Claim of a voucher by the cashier who claimed it, this soon after, is a double tap:
# it is answered with the first claim's result, not refused.
CLAIM_REPLAY = timedelta(minutes=5)


def _code(raw: bytes) -> str:
    # 256 is a multiple of 32: each byte picks a character uniformly.
    return "".join(CODE_ALPHABET[b % 32] for b in raw[:CODE_LENGTH])


def new_code() -> str:
    """A random code (40 bits), with at least one letter."""
    while True:
        code = _code(secrets.token_bytes(CODE_LENGTH))
        if not code.isdigit():
            return code


def derived_code(secret: bytes, member_id: int, operation: str) -> str:
    """The code of the voucher a member's confirmation `operation` takes: the same for the
    same confirmation, unpredictable without the secret."""
    key = hmac.new(secret, b"voucher-code", hashlib.sha256).digest()
    for n in count():
        raw = hmac.new(key, f"{member_id}:{operation}:{n}".encode(), hashlib.sha256).digest()
        code = _code(raw)
        if not code.isdigit():
            return code
    raise AssertionError("unreachable")


def normalize_code(text: str) -> str | None:
    """A typed code as stored (upper case, no separators, O read as 0 and I, L as 1), or
    None if it cannot be one."""
    code = re.sub(r"[\s-]", "", text).upper().translate(_LOOKALIKES)
    if len(code) != CODE_LENGTH or any(c not in CODE_ALPHABET for c in code):
        return None
    return code


def typed_code(text: str, currency_signs: frozenset[str]) -> bool:
    """Whether text typed alone at the till is a voucher code (BARE_CODE) and not an amount
    the till reads ("12345PLN": L reads as 1, but that is money)."""
    if not BARE_CODE.match(text):
        return False
    try:
        parse_till_amount(text, currency_signs)
    except DomainError:
        return True
    return False


def looks_like_code(text: str) -> bool:
    """Whether text that is not a code (normalize_code says None) was still meant as one: 6
    to 10 letters and digits, whole or in two parts split by a hyphen or a space, with a
    letter, and a digit or a hyphen; not an amount with its currency."""
    typed = text.strip()
    if not _CODE_LIKE.fullmatch(typed) or _AMOUNT_LIKE.fullmatch(typed):
        return False
    chars = re.sub(r"[\s-]", "", typed)
    return (
        6 <= len(chars) <= 10
        and any(c.isalpha() for c in chars)
        and (any(c.isdigit() for c in chars) or "-" in typed)
    )


def display_code(code: str) -> str:
    """`ABCD-EFGH`: two halves are easier to read out and type."""
    return f"{code[:4]}-{code[4:]}" if len(code) == CODE_LENGTH else code


# The catalogue.


class RewardUnavailable(DomainError):
    """Not in the catalogue (unknown, or only given by stamp cards and promotions)."""

    code = "reward_unavailable"


class PriceChanged(DomainError):
    """The program's price of the reward is not the one the member confirmed."""

    code = "reward_price_changed"


class OutOfStock(DomainError):
    code = "reward_out_of_stock"


class RewardLimit(DomainError):
    """The member already has `per_member` vouchers of this reward (open or claimed)."""

    code = "reward_limit"


class CodeTaken(DomainError):
    """An explicit voucher code already names another voucher (practically never by
    chance: 40 bits); the member confirms again and gets another."""

    code = "voucher_code_taken"


# At the till.


class UnknownVoucher(DomainError):
    code = "unknown_voucher"


class VoucherWrongPartner(DomainError):
    """Honoured at another partner (`partner`: its name)."""

    code = "voucher_wrong_partner"


class VoucherExpired(DomainError):
    code = "voucher_expired"  # `at`: when, in the program's time zone


class VoucherClaimed(DomainError):
    code = "voucher_claimed"  # `at`: when, in the program's time zone


class VoucherVoided(DomainError):
    """Cancelled: its member deleted their account."""

    code = "voucher_voided"


class OwnVoucher(DomainError):
    """Staff claiming a voucher of their own member account (refused and audited)."""

    code = "own_voucher"


class TooManyVoucherCodes(DomainError):
    """A cashier typed too many codes that name no voucher: a guess, not a typo."""

    code = "too_many_voucher_codes"
