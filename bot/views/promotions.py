"""How promotions read: at the till's panel (those that would apply now), in the cashier's
receipt and the member's news of a sale (each award with its reason), in a refund's news
(what it took back), and in the member's history. Titles in the reader's language. Every
line says only what the posting's params say was applied."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from html import escape
from typing import Any

from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import ngettext as _n

from bot.views import formatting as fmt
from db.rules.program import Program, Promotion
from db.rules.vouchers import display_code


def title(program: Program, slug: str, fallback: str | None = None) -> str:
    """A promotion's title in the reader's language, escaped; its stored title (or slug)
    when the program no longer has it."""
    promo = program.promotion(slug)
    return escape(fmt.text(promo.title) if promo is not None else (fallback or slug))


def _times(multiplier: Decimal) -> str:
    """ "×2", "×1.5" ("×1,5" in Polish)."""
    return "×" + fmt.number(multiplier.normalize())


def effect(program: Program, promo: Promotion) -> str:
    """What a promotion gives, shortly: "×2", "+100 points", "+1 stamp", "a voucher for …"."""
    e = promo.effect
    if e.multiplier is not None:
        return _times(e.multiplier)
    if e.bonus_points:
        return "+" + fmt.points(e.bonus_points)
    if e.stamps:
        return _n("+{n} stamp", "+{n} stamps", e.stamps).format(n=e.stamps)
    return _("a voucher for {reward}").format(reward=fmt.reward_html(program, e.reward or ""))


def panel_lines(
    program: Program, promotions: Iterable[Promotion], *, discounted: bool = False
) -> list[str]:
    """The till's panel: the promotions that apply to the member now (a preview: the sale
    is decided again when it is posted), each as its title, then what it gives: "• A free
    coffee with any book: a voucher for A coffee of your choice (on PLN 40.00 or more)".
    For a member with a tier discount (`discounted`) a minimum counts after it: it says so."""
    promos = list(promotions)
    if not promos:
        return []
    currency = program.program.currency
    lines = [_("🎉 Promotions now:")]
    for p in promos:
        line = f"• {title(program, p.slug)}: {effect(program, p)}"
        if p.min_purchase:
            money = fmt.money(p.min_purchase, currency)
            line += " " + (
                _("(on {money} or more to pay, after the discount)").format(money=money)
                if discounted
                else _("(on {money} or more)").format(money=money)
            )
        lines.append(line)
    return lines


def award_line(program: Program, a: dict[str, Any]) -> str:
    """One award with its reason, the same way wherever it is told (the receipt, the
    member's news): "🎉 ×2 Double points at the bakery: +45 points", "🎉 +100 points —
    First visit to a new partner", "🎉 +2 stamps — Two extra stamps", "🎉 A coffee (voucher
    ABCD-EFGH) — Coffee with a book"."""
    name = title(program, str(a["promotion"]), a.get("title"))
    if points := int(a.get("points") or 0):
        if a.get("multiplier"):
            return f"🎉 {_times(Decimal(str(a['multiplier'])))} {name}: +{fmt.points(points)}"
        return "🎉 " + _("+{points} — {title}").format(points=fmt.points(points), title=name)
    if stamps := int(a.get("stamps") or 0):
        return "🎉 " + _n("+{n} stamp — {title}", "+{n} stamps — {title}", stamps).format(
            n=stamps, title=name
        )
    return "🎉 " + _("{reward} (voucher {code}) — {title}").format(
        reward=fmt.reward_html(program, str(a.get("reward") or "")),
        code=display_code(str(a.get("voucher") or "")),
        title=name,
    )


def not_applied_lines(program: Program, missed: Iterable[Mapping[str, Any]]) -> list[str]:
    """The promotions the till's panel showed that the sale did not get, each with why (as
    a stamp card says why it gave no stamp): the panel is a preview, the posting decides."""
    currency = program.program.currency
    lines = []
    for m in missed:
        name = title(program, str(m["promotion"]), m.get("title"))
        reason = m.get("reason")
        if reason == "below_min":
            why = _("the amount to pay, {money}, is below {least}").format(
                money=fmt.money(Decimal(str(m["to_pay"])), currency),
                least=fmt.money(Decimal(str(m["min_purchase"])), currency),
            )
        elif reason == "ended" and m.get("ended_at"):
            why = _("it ended at {time}").format(time=m["ended_at"])
        elif reason == "ended":
            why = _("it has ended")
        elif reason == "no_points":
            why = _("it adds no points to this sale")
        elif reason == "used":
            why = _("already used")
        else:
            why = _("no longer for this member")
        lines.append(_("Not applied: {title} — {why}").format(title=name, why=why))
    return lines


def sale_lines(program: Program, awards: Sequence[dict[str, Any]]) -> list[str]:
    return [award_line(program, a) for a in awards]


def sale_points(p: Mapping[str, Any]) -> int:
    """All the points a sale gave the member, from its notice's params: its own
    (`points_earned`), its promotions' and its stamp cards' fills' (whether the sale's own
    stamp or a promotion's stamps filled the card)."""
    own = int(p.get("points_earned") or 0)
    promos = sum(int(a.get("points") or 0) for a in p.get("promotions") or ())
    fills = sum(
        int(n.get("reward_points") or 0)
        for n in p.get("stamps") or ()
        if n.get("status") == "filled"
    )
    return own + promos + fills


def own_points_line(p: Mapping[str, Any]) -> list[str]:
    """When a sale gave more than its own points (the headline says the total), the first
    line of the breakdown: what the purchase itself earned. The lines after it (the
    promotions', the cards' fills) say the rest."""
    own = int(p.get("points_earned") or 0)
    if sale_points(p) == own:
        return []
    return [_("🟢 +{points} on the purchase itself").format(points=fmt.points(own))]


def refund_lines(
    program: Program, backs: Sequence[dict[str, Any]], *, till: bool = False
) -> list[str]:
    """What a refund took back of the sale's promotions (its shortfall is in the refund's
    own shortfall line)."""
    lines = []
    for b in backs:
        name = title(program, str(b["promotion"]), b.get("title"))
        if points := int(b.get("points") or 0):
            lines.append(
                _("−{points}: {title} (on the refunded money)").format(
                    points=fmt.points(points), title=name
                )
            )
        if till and (repaid := int(b.get("repaid") or 0)):
            lines.append(
                _(
                    "{title}: the {points} the member had already spent go back to its funders "
                    "from your partner's points, as their value is kept from the cash."
                ).format(points=fmt.points(repaid), title=name)
            )
        if stamps := int(b.get("stamps") or 0):
            lines.append(
                _n(
                    "−{n} stamp given by {title}",
                    "−{n} stamps given by {title}",
                    stamps,
                ).format(n=stamps, title=name)
            )
        if b.get("voucher"):
            code = display_code(str(b["voucher"]))
            if b.get("voucher_status") == "voided":
                lines.append(
                    _("The voucher {code} ({title}) is cancelled.").format(code=code, title=name)
                )
            elif b.get("voucher_status") == "claimed":
                lines.append(
                    _("The voucher {code} ({title}) was already used: it stays given.").format(
                        code=code, title=name
                    )
                    if till
                    else _("The voucher {code} ({title}) was already used: you keep it.").format(
                        code=code, title=name
                    )
                )
    return lines


def history_what(program: Program, kind: str, reason: str | None) -> str | None:
    """A history line's words for a promotion's points, or their taking back by a refund."""
    if reason is None:
        return None
    name = title(program, reason)
    if kind == "promotion":
        return _("promotion: {title}").format(title=name)
    return _("promotion taken back: {title}").format(title=name)
