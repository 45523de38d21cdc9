"""Every inline button's callback data, typed. Never build callback strings by hand; and
never trust them either: handlers check again what a button asks for."""

from __future__ import annotations

from aiogram.filters.callback_data import CallbackData


class JoinCb(CallbackData, prefix="join"):
    action: str  # "accept"


class LanguageCb(CallbackData, prefix="lang"):
    code: str


class ConsentCb(CallbackData, prefix="consent"):
    marketing: bool


class CardCb(CallbackData, prefix="card"):
    action: str  # "refresh"


class HistoryCb(CallbackData, prefix="hist"):
    offset: int


class PrivacyCb(CallbackData, prefix="priv"):
    action: str  # "export", "marketing", "delete", "confirm", "cancel"


class OffersCb(CallbackData, prefix="offers"):
    action: str = "stop"  # under every campaign message: marketing consent off


class TillCb(CallbackData, prefix="till"):
    action: str  # "earn", "redeem", "max", "cancel", "again" (post a repeated sale)
    dialog: str  # the sale dialog this button belongs to; stale buttons are refused


class EarnOnlyCb(CallbackData, prefix="eo"):
    """Finish a sale whose redemption was declined, expired or could not be asked, without
    points. Not tied to the cashier's dialog: the request row says what the sale was."""

    request: str  # the redemption request's public id
    action: str = "post"  # "post", "again" (post although a like sale is recent), "drop"


class RedeemCb(CallbackData, prefix="rdm"):
    request: str  # a redemption request's random public id
    ok: bool


class SegmentCb(CallbackData, prefix="seg"):
    field: str  # "tier", "partner", "language", "inactive", "since", "menu", "reset", "next"
    value: str = ""


class CampaignCb(CallbackData, prefix="camp"):
    action: str  # "now", "schedule", "cancel", "drop"
    id: int
