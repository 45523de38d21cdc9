"""Every inline button's callback data, typed. Never build callback strings by hand; and
never trust them either: handlers check again what a button asks for.

Anyone can send any 64 bytes as callback data, so every field is bounded here: data that
does not fit a factory matches no handler and gets the fallback's "no longer active"."""

from __future__ import annotations

from typing import Annotated, Literal

from aiogram.filters.callback_data import CallbackData
from pydantic import Field

# A database id (PostgreSQL bigint); anything larger is not a row of ours.
DbId = Annotated[int, Field(ge=1, le=2**63 - 1)]
# The random ids the bot puts in buttons (secrets.token_urlsafe).
PublicId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,43}$")]


class JoinCb(CallbackData, prefix="join"):
    action: Literal["accept"]


class LanguageCb(CallbackData, prefix="lang"):
    code: Annotated[str, Field(max_length=8)]  # a language code, or "menu"


class ConsentCb(CallbackData, prefix="consent"):
    marketing: bool


class CardCb(CallbackData, prefix="card"):
    action: Literal["refresh"]


class HistoryCb(CallbackData, prefix="hist"):
    offset: Annotated[int, Field(ge=0, le=1_000_000_000)]


class PrivacyCb(CallbackData, prefix="priv"):
    # "offers_on"/"offers_off" say what the member asked for, so a double tap is one answer.
    # "birthday": give or change it (a prompt follows); "no_birthday": remove it
    action: Literal[
        "export",
        "offers_on",
        "offers_off",
        "delete",
        "confirm",
        "cancel",
        "birthday",
        "no_birthday",
    ]


class OffersCb(CallbackData, prefix="offers"):
    action: Literal["stop"] = "stop"  # under every campaign message: consent off


class TillCb(CallbackData, prefix="till"):
    # again: post a repeated sale; pay: post a discounted sale as its amount to pay was shown
    action: Literal["earn", "redeem", "max", "cancel", "again", "pay"]
    dialog: PublicId  # the sale dialog this button belongs to; stale buttons are refused


class ClubSaleCb(CallbackData, prefix="csale"):
    """A month of the club sold at the till (bot/handlers/staff/club_sale.py): "offer" asks the
    cashier to take the money, "taken" records it, "drop" leaves it. `minor`: the price the
    button showed, in the currency's smallest unit (db/rules/club.py minor_units: cents, or
    yen), so a price changed in the program file meanwhile is refused."""

    action: Literal["offer", "taken", "drop"]
    dialog: PublicId  # the till's panel (its sale dialog): stale buttons are refused
    minor: Annotated[int, Field(ge=0, le=10**12)]


class EarnOnlyCb(CallbackData, prefix="eo"):
    """Finish a sale whose redemption was declined, expired or could not be asked, without
    points. Not tied to the cashier's dialog: the request row says what the sale was."""

    request: PublicId  # the redemption request's public id
    # "again": post although a like sale is recent; "drop": do not post
    action: Literal["post", "again", "drop"] = "post"


class RedeemCb(CallbackData, prefix="rdm"):
    request: PublicId  # a redemption request's random public id
    ok: bool


class SegmentCb(CallbackData, prefix="seg"):
    field: Literal[
        "tier", "partner", "language", "inactive", "since", "club", "menu", "reset", "next"
    ]
    # A choice the menu offered: a tier's index in the program, a partner's slug, a
    # language code, a number of days, "1" for club members, or a field's name for "menu";
    # "" for "any".
    value: Annotated[str, Field(max_length=30)] = ""


class CampaignCb(CallbackData, prefix="camp"):
    # in1h, tomorrow: the schedule prompt's buttons (an hour from now; tomorrow 10:00 local)
    action: Literal["now", "schedule", "cancel", "drop", "in1h", "tomorrow"]
    id: DbId


# A gift's code, or the random id of the confirmation that makes one (16 of base64url).
GiftCode = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{16}$")]
Points = Annotated[int, Field(ge=0, le=10**12)]


class GiftCb(CallbackData, prefix="gift"):
    # confirm: make the gift `points` of confirmation `code`; drop: do not; accept, cancel:
    # the friend's acceptance, the giver's taking back, of the gift `code`
    action: Literal["confirm", "drop", "accept", "cancel"]
    code: GiftCode
    points: Points = 0


class DonateCb(CallbackData, prefix="don"):
    # pick: ask how many points for this charity; ok: give `points` (confirmation `dialog`)
    action: Literal["pick", "ok", "no"]
    partner: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,29}$")]
    points: Points = 0
    dialog: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{0,11}$")] = ""


class RewardCb(CallbackData, prefix="rwd"):
    """The rewards catalogue: "ask" shows the confirmation of taking `reward`, whose
    Confirm ("take") carries the price shown and the confirmation's random id (a double
    tap takes one voucher); "cancel" drops it."""

    action: Literal["ask", "take", "cancel"]
    reward: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,29}$")]
    points: Annotated[int, Field(ge=0, le=10_000_000)] = 0
    op: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{0,12}$")] = ""


class VoucherCb(CallbackData, prefix="vch"):
    """A voucher by its code: the member's "qr" (show its QR code) or the cashier's
    "claim". The code is what the cashier had to scan or type: a forged button for
    someone else's voucher would need its code."""

    action: Literal["qr", "claim"]
    code: Annotated[str, Field(pattern=r"^[0-9A-Z]{8}$")]


class ClubRefundCb(CallbackData, prefix="clubrf"):
    """The owner's refund of a club payment (`payment`: its id): "ask" shows what refunding
    it means; "stars" asks Telegram to give the Stars back, then records it; "record"
    records a card or till payment given back outside the bot; "drop" does nothing."""

    action: Literal["ask", "stars", "record", "drop"]
    payment: DbId


class ClubCb(CallbackData, prefix="club"):
    """/club's buttons: send a card invoice; stop or resume the Stars subscription's
    renewal (saying which, so a double tap is one answer)."""

    action: Literal["card", "stop", "resume"]


class ApiKeyCb(CallbackData, prefix="apik"):
    """/api_key's buttons: "new" makes a key of `scopes` for `partner`, once per `op` (the
    random id of the listing it was on: a double tap makes one key); "revoke" asks before
    revoking the key `key`, "sure" revokes it (again: nothing happens), "keep" does not."""

    action: Literal["new", "revoke", "sure", "keep"]
    partner: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,29}$")]
    scopes: Literal["", "sales", "read", "both"] = ""
    op: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{0,12}$")] = ""
    key: Annotated[int, Field(ge=0, le=2**63 - 1)] = 0
