"""How a tier discount reads: at the till before a sale, in the notices of a discounted sale,
and where members read their tier (/balance, /partners, the rules at joining)."""

from __future__ import annotations

from decimal import Decimal
from html import escape
from typing import Any

from aiogram.utils.i18n import gettext as _

from bot.views import formatting as fmt
from db.rules.discounts import Priced
from db.rules.program import Program


def _money(program: Program, value: Any) -> str:
    return fmt.money(Decimal(str(value)), program.program.currency)


def tier_name(program: Program, tier: Any) -> str:
    return escape(fmt.text(program.tier(str(tier)).name))


def breakdown(program: Program, priced: Priced) -> str:
    """The cashier's line before anything is posted:
    "Amount 100.00 · Gold discount 5 % −5.00 · To pay 95.00"."""
    return _("Amount {amount} · {tier} discount {percent} −{discount} · To pay {to_pay}").format(
        amount=_money(program, priced.amount),
        tier=tier_name(program, priced.tier),
        percent=fmt.percent(priced.percent),
        discount=_money(program, priced.discount),
        to_pay=_money(program, priced.to_pay),
    )


def sold(program: Program, p: dict[str, Any]) -> str:
    """The same line in the notices of a posted sale, from their params (`amount`,
    `discount`, `discount_tier`, `discount_percent`); "" for a sale without a discount."""
    if not p.get("discount"):
        return ""
    amount, discount = Decimal(str(p["amount"])), Decimal(str(p["discount"]))
    if p.get("discount_tier") is None:  # a replay: the money is known, not the tier
        return _("Amount {amount} · discount −{discount} · To pay {to_pay}").format(
            amount=_money(program, amount),
            discount=_money(program, discount),
            to_pay=_money(program, amount - discount),
        )
    return breakdown(
        program,
        Priced(amount, str(p["discount_tier"]), Decimal(str(p["discount_percent"])), discount),
    )


def member_line(program: Program, p: dict[str, Any], partner: str) -> str:
    """The member's news of their discount: "🏷 Gold discount −5.00 on your 100.00 purchase
    at the café: 95.00 to pay." ("" without a discount)."""
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
    return _(
        "🏷 {tier} discount −{discount} on your {amount} purchase at {partner}: {to_pay} to pay."
    ).format(tier=tier_name(program, p["discount_tier"]), **figures)


def tier_discount(program: Program, tier: str) -> str:
    """For /balance: "🏷 Gold: 5 % off at every partner." ("" for a tier without one)."""
    percent = program.tier(tier).discount_percent
    if not percent:
        return ""
    return _("🏷 {tier}: {percent} off at every partner.").format(
        tier=tier_name(program, tier), percent=fmt.percent(percent)
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
