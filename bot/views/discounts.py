"""How a discount reads (a tier's, and the club's on top for its members): at the till before
a sale, in the notices of a discounted sale, and where members read their tier (/balance,
/partners, the rules at joining). A discount of both says where each part comes from:
"5% Gold + 5% City Club"."""

from __future__ import annotations

from decimal import Decimal
from html import escape
from typing import Any

from aiogram.utils.i18n import gettext as _

from bot.views import formatting as fmt
from db.rules.discounts import Priced, club_part, price
from db.rules.program import Program


def _money(program: Program, value: Any) -> str:
    return fmt.money(Decimal(str(value)), program.program.currency)


def tier_name(program: Program, tier: Any) -> str:
    return escape(fmt.text(program.tier(str(tier)).name))


def club_name(program: Program) -> str:
    """The club's name in the reader's language, escaped."""
    return escape(fmt.text(program.club.name)) if program.club is not None else _("the club")


def _source(program: Program, priced: Priced) -> str | None:
    """Who gives a discount of one source: the tier's name, or the club's; None when both
    give a part (then _parts says each)."""
    if not priced.club_percent:
        return tier_name(program, priced.tier)
    if not priced.tier_percent:
        return club_name(program)
    return None


def _parts(program: Program, priced: Priced) -> str:
    """ "5% Gold + 5% City Club": each part of a discount of both, with its source."""
    return " + ".join(
        [
            f"{fmt.percent(priced.tier_percent)} {tier_name(program, priced.tier)}",
            f"{fmt.percent(priced.club_percent)} {club_name(program)}",
        ]
    )


def breakdown(program: Program, priced: Priced) -> str:
    """The cashier's line before anything is posted:
    "Amount 100.00 · Gold discount 5 % −5.00 · To pay 95.00", or for a club member with a
    tier discount "Amount 100.00 · discount 5 % Gold + 5 % City Club −10.00 · To pay 90.00"."""
    figures = {
        "amount": _money(program, priced.amount),
        "discount": _money(program, priced.discount),
        "to_pay": _money(program, priced.to_pay),
    }
    source = _source(program, priced)
    if source is None:
        return _("Amount {amount} · discount {parts} −{discount} · To pay {to_pay}").format(
            parts=_parts(program, priced), **figures
        )
    return _("Amount {amount} · {tier} discount {percent} −{discount} · To pay {to_pay}").format(
        tier=source, percent=fmt.percent(priced.percent), **figures
    )


def _priced(p: dict[str, Any]) -> Priced:
    """A posted discount from its notice's params (`amount`, `discount`, `discount_tier`,
    `discount_percent`, `discount_club_percent`)."""
    return Priced(
        Decimal(str(p["amount"])),
        str(p["discount_tier"]),
        Decimal(str(p.get("discount_percent") or 0)),
        Decimal(str(p["discount"])),
        Decimal(str(p.get("discount_club_percent") or 0)),
    )


def sold(program: Program, p: dict[str, Any]) -> str:
    """The same line in the notices of a posted sale, from their params (`amount`,
    `discount`, `discount_tier`, `discount_percent`, `discount_club_percent`); "" for a sale
    without a discount."""
    if not p.get("discount"):
        return ""
    amount, discount = Decimal(str(p["amount"])), Decimal(str(p["discount"]))
    if p.get("discount_tier") is None:  # a replay: the money is known, not the tier
        return _("Amount {amount} · discount −{discount} · To pay {to_pay}").format(
            amount=_money(program, amount),
            discount=_money(program, discount),
            to_pay=_money(program, amount - discount),
        )
    return breakdown(program, _priced(p))


def member_line(program: Program, p: dict[str, Any], partner: str) -> str:
    """The member's news of their discount: "🏷 Gold discount −5.00 on your 100.00 purchase
    at the café: 95.00 to pay.", "🏷 Discount 5 % Gold + 5 % City Club −10.00 on …" ("" without
    a discount)."""
    if not p.get("discount"):
        return ""
    amount, discount = Decimal(str(p["amount"])), Decimal(str(p["discount"]))
    figures = {
        "discount": _money(program, discount),
        "amount": _money(program, amount),
        "partner": partner,
        "to_pay": _money(program, amount - discount),
    }
    if p.get("discount_tier") is None:
        return _(
            "🏷 Discount −{discount} on your {amount} purchase at {partner}: {to_pay} to pay."
        ).format(**figures)
    priced = _priced(p)
    source = _source(program, priced)
    if source is None:
        return _(
            "🏷 Discount {parts} −{discount} on your {amount} purchase at {partner}: {to_pay} "
            "to pay."
        ).format(parts=_parts(program, priced), **figures)
    return _(
        "🏷 {tier} discount −{discount} on your {amount} purchase at {partner}: {to_pay} to pay."
    ).format(tier=source, **figures)


def member_discount(program: Program, tier: str, club: bool) -> str:
    """The till's panel and /balance: the member's discount and where it comes from, "🏷
    Gold: 5% off at every partner.", "🏷 City Club: 5% off at every partner.", "🏷 10% off at
    every partner: 5% Gold + 5% City Club." ("" without)."""
    priced = price(Decimal(0), program.tier(tier), club_part(program, club))
    if not priced.percent:
        return ""
    source = _source(program, priced)
    if source is None:
        return _("🏷 {percent} off at every partner: {parts}.").format(
            percent=fmt.percent(priced.percent), parts=_parts(program, priced)
        )
    return _("🏷 {tier}: {percent} off at every partner.").format(
        tier=source, percent=fmt.percent(priced.percent)
    )


def tiers_discounts(program: Program) -> str:
    """Where tiers are explained (/partners, the rules): every tier's discount and the spend
    that reaches it, "" when no tier has one."""
    if not any(t.discount_percent for t in program.tiers):
        return ""
    currency = program.program.currency
    tiers = []
    for t in program.tiers:
        figures = {"tier": escape(fmt.text(t.name)), "percent": fmt.percent(t.discount_percent)}
        tiers.append(
            _("{tier} {percent} from {money}").format(
                money=fmt.money(t.min_spend, currency), **figures
            )
            if t.min_spend
            else "{tier} {percent}".format(**figures)
        )
    return _(
        "Member discounts at every partner, by tier (reached by what you spend in 12 months): "
        "{tiers}."
    ).format(tiers=", ".join(tiers))


def tier_reached(program: Program, name: str) -> str:
    """The member's news of a new tier: what it multiplies and, if it has one, its discount."""
    tier = program.tier(name)
    figures = {
        "tier": escape(fmt.text(tier.name)),
        "multiplier": fmt.number(tier.multiplier),
        "percent": fmt.percent(tier.discount_percent),
    }
    if not tier.discount_percent:
        return _("🏅 You reached {tier}: from now on your points × {multiplier}.").format(
            **figures
        )
    if not any(p.earn_percent for p in program.partners):  # a pure discount program
        return _("🏅 You reached {tier}: from now on {percent} off at every partner.").format(
            **figures
        )
    return _(
        "🏅 You reached {tier}: from now on your points × {multiplier}, and {percent} off at "
        "every partner."
    ).format(**figures)
