"""Promotions as members read them: `/offers`, and the personal offer's message. What a
promotion gives, where, when (local days and hours, in the program's time zone), from what
purchase, how many times more."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from html import escape
from typing import Any

from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import ngettext as _n
from babel.dates import format_skeleton, get_day_names

from bot.views import formatting as fmt
from db.rules.offers import OpenOffer
from db.rules.program import WEEKDAYS, Program, Promotion
from db.rules.promotions import BIRTHDAY_WEEK


def gives(program: Program, promo: Promotion) -> str:
    effect = promo.effect
    if effect.multiplier is not None:
        return _("points × {multiplier} on the purchase").format(
            multiplier=fmt.number(effect.multiplier)
        )
    if effect.bonus_points:
        return _("{points} more on the purchase").format(points=fmt.points(effect.bonus_points))
    if effect.stamps:
        return _n(
            "{n} more stamp on the partner's stamp cards",
            "{n} more stamps on the partner's stamp cards",
            effect.stamps,
        ).format(n=fmt.number(effect.stamps))
    reward = program.reward(effect.reward or "")
    return _("a voucher: {reward} at {partner}").format(
        reward=fmt.reward_html(program, effect.reward or ""),
        partner=fmt.partner_html(program, reward.partner) if reward else "",
    )


def where(program: Program, partners: Sequence[str]) -> str:
    if not partners:
        return _("at every partner")
    return ", ".join(fmt.partner_html(program, slug) for slug in partners)


def _weekdays(days: Sequence[str]) -> str:
    names = get_day_names("abbreviated", locale=fmt.locale())
    return ", ".join(names[WEEKDAYS.index(d)] for d in WEEKDAYS if d in days)


def when(promo: Promotion, today: date) -> str:
    """`Sat, Sun, 07:00–11:00, until 1 Mar 2027`, local; "every day" when it has no limits."""
    w = promo.when
    parts = []
    if w.weekdays:
        parts.append(_weekdays(w.weekdays))
    if w.hours:
        parts.append(w.hours.replace("-", "–"))
    if w.from_ is not None and w.from_ > today and w.until is not None:
        parts.append(
            _("from {first} to {last}").format(first=fmt.day(w.from_), last=fmt.day(w.until))
        )
    elif w.from_ is not None and w.from_ > today:
        parts.append(_("from {first}").format(first=fmt.day(w.from_)))
    elif w.until is not None:
        parts.append(_("until {last}").format(last=fmt.day(w.until)))
    return ", ".join(parts) or _("every day")


def _details(
    program: Program,
    promo: Promotion,
    partners: Sequence[str],
    today: date,
    birthday: tuple[date, date] | None = None,
    next_year: bool = False,
) -> list[str]:
    lines = [
        _("🎁 You get: {what}").format(what=gives(program, promo)),
        _("📍 Where: {where}").format(where=where(program, partners)),
    ]
    w = promo.when
    if not promo.who.birthday or w.weekdays or w.hours or w.from_ or w.until:
        # A birthday promotion runs in the birthday week: its own days and hours, if it has
        # any, narrow it; "every day" would say it runs outside it.
        lines.append(_("🗓 When: {when}").format(when=when(promo, today)))
    if birthday is not None:
        first, last = birthday
        lines.append(
            _("🎂 In your birthday week, next: {first} – {last}").format(
                first=fmt.day(first), last=fmt.day(last)
            )
            if next_year
            else _("🎂 In your birthday week: {first} – {last}").format(
                first=fmt.day(first), last=fmt.day(last)
            )
        )
    if promo.min_purchase:
        lines.append(
            _("🧾 For a purchase of at least {amount}").format(
                amount=fmt.money(promo.min_purchase, program.program.currency)
            )
        )
    if text := fmt.text(promo.text):
        lines.append(escape(text))
    return lines


def _uses(offer: OpenOffer) -> str | None:
    if offer.promotion.who.first_at_partner:
        return _("Once at each of these partners.")
    if offer.uses_left is None:
        return None
    if offer.next_year:  # this birthday's are taken: what the next one gives
        return _n(
            "At most {n} time in your birthday week.",
            "At most {n} times in your birthday week.",
            offer.uses_left,
        ).format(n=fmt.number(offer.uses_left))
    return _n(
        "You can get it {n} more time.", "You can get it {n} more times.", offer.uses_left
    ).format(n=fmt.number(offer.uses_left))


def screen(program: Program, offers: Sequence[OpenOffer], today: date) -> str:
    """`/offers`: each promotion open to the member, then the partners' own offers."""
    lines = [_("🎉 <b>Offers for you</b>")]
    if not offers:
        lines += ["", _("No promotions are open to you right now. Look again soon!")]
    for offer in offers:
        promo = offer.promotion
        lines += ["", f"<b>{escape(fmt.text(promo.title))}</b>"]
        birthday = None
        if offer.birthday_from is not None and offer.birthday_until is not None:
            birthday = (offer.birthday_from, offer.birthday_until)
        lines += _details(program, promo, offer.partners, today, birthday, offer.next_year)
        if offer.needs_birthday:
            lines.append(_("🎂 For your birthday week: give your birthday in /privacy."))
        if uses := _uses(offer):
            lines.append(uses)
    extra = partner_offers(program, today)
    if extra:
        lines += ["", _("<b>Partners' offers</b>"), *extra]
    return "\n".join(lines)


def partner_offers(program: Program, today: date) -> list[str]:
    """The partners' own offers (their `offers` in the program file) not yet ended."""
    lines = []
    for partner in program.partners:
        for offer in partner.offers:
            if offer.until is not None and offer.until < today:
                continue
            until = (
                " " + _("(until {date})").format(date=fmt.day(offer.until)) if offer.until else ""
            )
            name = fmt.partner_html(program, partner.slug)
            title, text = escape(fmt.text(offer.title)), escape(fmt.text(offer.text))
            lines.append(f"🏪 {name}: <i>{title}</i>: {text}{until}")
    return lines


def personal_offer(program: Program, params: Mapping[str, Any], today: date) -> str | None:
    """A personal promotion's message (db/usecases/personal_offers.py's `params`); None if
    the program no longer has it or it has ended: nothing is sent then."""
    promo = program.promotion(str(params.get("promotion", "")))
    if promo is None or (promo.when.until is not None and promo.when.until < today):
        return None
    partners = list(params.get("partners") or promo.partners)
    birthday = None
    if until := params.get("until"):
        last = date.fromisoformat(str(until))
        if last < today:
            return None
        birthday = (last - timedelta(days=BIRTHDAY_WEEK - 1), last)
    occasion = str(params.get("occasion", ""))
    head = {
        "birthday": _("🎂 Happy birthday week! A promotion for you:"),
        "inactive": _("👋 We have missed you! A promotion for you:"),
    }.get(occasion.split(":")[0], _("🎉 A promotion for you:"))
    lines = [head, f"<b>{escape(fmt.text(promo.title))}</b>"]
    lines += _details(program, promo, partners, today, birthday)
    if promo.who.first_at_partner:
        lines.append(_("Once at each of these partners."))
    elif promo.max_per_member and promo.who.birthday:
        lines.append(
            _n(
                "At most {n} time in your birthday week.",
                "At most {n} times in your birthday week.",
                promo.max_per_member,
            ).format(n=fmt.number(promo.max_per_member))
        )
    elif promo.max_per_member:
        lines.append(
            _n(
                "At most {n} time per member.",
                "At most {n} times per member.",
                promo.max_per_member,
            ).format(n=fmt.number(promo.max_per_member))
        )
    lines.append(_("Show your card at the till: /card. All offers: /offers."))
    return "\n".join(lines)


def day_and_month(day: date) -> str:
    """A birthday as kept (day and month): `14 March`, `14 марта`."""
    return format_skeleton("MMMMd", day, locale=fmt.locale())
