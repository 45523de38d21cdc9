"""Tokens carried in `t.me/<bot>?start=<token>` links.

Telegram allows 64 characters of `A-Za-z0-9_-` there. A card token names the member, expires
after card_ttl_seconds and is signed with HMAC-SHA256, so it can be neither forged nor
enumerated; a referral token is signed but permanent (it is the member's own link to share).

    card:     "c" + base64url(member_id:6 | expires:5 | mac:16)   = 37 characters
    referral: "r" + base64url(member_id:6 | mac:9)                = 21 characters
    voucher:  "v" + base64url(voucher_id:6 | expires:5 | mac:16)  = 37 characters
    source:   "src-" + the source, 1 to 60 of [a-z0-9_-]          (a poster's, an ad's)

A source is not signed: it only says where someone found the link ("poster-coffee"), which
anyone may write, and it is counted, never paid. Staff invites start with "s" too
(db/usecases/staff.py), and never with "src-".
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from db.rules.errors import DomainError


class InvalidToken(DomainError):
    """Forged, truncated, or meant for something else."""

    code = "invalid_token"


class CardExpired(DomainError):
    code = "card_expired"


CARD, REFERRAL, VOUCHER, SOURCE = "c", "r", "v", "src-"
REFERRAL_SOURCE = "referral"  # the source of a join through a friend's invitation
_SOURCE = re.compile(r"^[a-z0-9_-]{1,60}$")
_CARD_MAC, _REFERRAL_MAC = 16, 9


@dataclass(frozen=True, slots=True)
class CardToken:
    member_id: int
    expires_at: datetime


def derive_secret(bot_token: str, signing_secret: str | None = None) -> bytes:
    """The HMAC key: SIGNING_SECRET if given, else derived from the bot token (rotating the
    token then also retires outstanding card tokens, which live minutes anyway)."""
    material = signing_secret or bot_token
    return hashlib.sha256(b"loyalty-card-tokens\x00" + material.encode()).digest()


def identity_hash(secret: bytes, telegram_id: int) -> str:
    """A keyed hash of a Telegram id (HMAC-SHA256 under a key derived from the signing
    secret): all that is kept of someone who deleted their account, to pay welcome and
    invitation rewards once per person. Without the secret it cannot be turned back into an
    id, nor an id tried against it."""
    key = hmac.new(secret, b"rewarded-identity", hashlib.sha256).digest()
    return hmac.new(key, str(telegram_id).encode(), hashlib.sha256).hexdigest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise InvalidToken() from None


def _mac(secret: bytes, kind: str, body: bytes, size: int) -> bytes:
    return hmac.new(secret, kind.encode() + body, hashlib.sha256).digest()[:size]


def card_token(secret: bytes, member_id: int, expires_at: datetime) -> str:
    body = member_id.to_bytes(6, "big") + int(expires_at.timestamp()).to_bytes(5, "big")
    return CARD + _b64(body + _mac(secret, CARD, body, _CARD_MAC))


def read_card_token(secret: bytes, token: str, now: datetime | None = None) -> CardToken:
    """The member a card token names; InvalidToken if forged, CardExpired if too old."""
    if not token.startswith(CARD):
        raise InvalidToken()
    raw = _unb64(token[1:])
    body, mac = raw[:11], raw[11:]
    if len(raw) != 11 + _CARD_MAC or not hmac.compare_digest(
        mac, _mac(secret, CARD, body, _CARD_MAC)
    ):
        raise InvalidToken()
    member_id = int.from_bytes(body[:6], "big")
    expires_at = datetime.fromtimestamp(int.from_bytes(body[6:], "big"), UTC)
    if expires_at <= (now or datetime.now(UTC)):
        raise CardExpired(member_id=member_id)
    return CardToken(member_id, expires_at)


@dataclass(frozen=True, slots=True)
class VoucherToken:
    voucher_id: int
    expires_at: datetime


def voucher_token(secret: bytes, voucher_id: int, expires_at: datetime) -> str:
    """A voucher's QR link: it names the voucher and carries its expiry (the voucher row
    decides whether it may still be claimed; the token only proves it is ours)."""
    body = voucher_id.to_bytes(6, "big") + int(expires_at.timestamp()).to_bytes(5, "big")
    return VOUCHER + _b64(body + _mac(secret, VOUCHER, body, _CARD_MAC))


def read_voucher_token(secret: bytes, token: str) -> VoucherToken:
    """The voucher a token names; InvalidToken if forged or truncated. Not refused when
    past its expiry: the till says when the voucher expired, from the voucher itself."""
    if not token.startswith(VOUCHER):
        raise InvalidToken()
    raw = _unb64(token[1:])
    body, mac = raw[:11], raw[11:]
    if len(raw) != 11 + _CARD_MAC or not hmac.compare_digest(
        mac, _mac(secret, VOUCHER, body, _CARD_MAC)
    ):
        raise InvalidToken()
    return VoucherToken(
        int.from_bytes(body[:6], "big"),
        datetime.fromtimestamp(int.from_bytes(body[6:], "big"), UTC),
    )


def referral_token(secret: bytes, member_id: int) -> str:
    body = member_id.to_bytes(6, "big")
    return REFERRAL + _b64(body + _mac(secret, REFERRAL, body, _REFERRAL_MAC))


def read_referral_token(secret: bytes, token: str) -> int:
    if not token.startswith(REFERRAL):
        raise InvalidToken()
    raw = _unb64(token[1:])
    body, mac = raw[:6], raw[6:]
    if len(raw) != 6 + _REFERRAL_MAC or not hmac.compare_digest(
        mac, _mac(secret, REFERRAL, body, _REFERRAL_MAC)
    ):
        raise InvalidToken()
    return int.from_bytes(body, "big")


def clean_source(text: str) -> str:
    """A source as stored: lower case, 1 to 60 of `a-z0-9_-`; InvalidToken otherwise."""
    source = text.strip().lower()
    if not _SOURCE.match(source):
        raise InvalidToken()
    return source


def source_param(source: str) -> str:
    """The start parameter that records `source` when someone joins through it."""
    return SOURCE + clean_source(source)


def read_source(param: str) -> str:
    if not param.startswith(SOURCE):
        raise InvalidToken()
    return clean_source(param[len(SOURCE) :])
