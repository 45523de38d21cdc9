"""How stamp cards read: a card as `●●●●●●○○○○ 6/10`, where to collect it and what it
gives, and what a sale, a refund or a lapse did to it (for the member and for the till).
The sale's and the refund's news come as the params a notice keeps (StampNews.params,
StampBack.params): each line states only what they say was posted."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from html import escape
from typing import Any

from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import ngettext as _n

from bot.views import formatting as fmt
from db.queries.stamps import CardProgress
from db.rules.discounts import club_part
from db.rules.program import Program, StampCard
from db.rules.vouchers import display_code
from db.usecases.stamps import ADDED, BELOW_MIN, DAILY_LIMIT, FILLED, PARTNER_DONE, PROMOTED

# A card of more stamps than this is shown as a count alone (a row of 50 dots says less).
MAX_DOTS = 20


def bar(stamps: int, of: int) -> str:
    """`●●●●●●○○○○ 6/10`."""
    if of > MAX_DOTS:
        return f"{stamps}/{of}"
    full = min(stamps, of)
    return "●" * full + "○" * (of - full) + f" {stamps}/{of}"


def name(program: Program, slug: str) -> str:
    card = program.stamp_card(slug)
    return escape(fmt.text(card.name) if card else slug)


def where(program: Program, card: StampCard, done: Iterable[str] = ()) -> str:
    """The card's partners; on a tour card, ✅ marks those whose stamp is on it."""
    done = set(done) if card.distinct_partners else set()
    return " · ".join(
        ("✅ " if slug in done else "") + fmt.partner_html(program, slug) for slug in card.partners
    )


def reward(program: Program, card: StampCard) -> str:
    """What a full card gives: points, or a reward and where it is honoured."""
    if card.reward_points:
        return fmt.points(card.reward_points)
    rules = program.reward(card.reward or "")
    if rules is None:  # the program validates it; never shown
        return escape(card.reward or "")
    return _("{reward} at {partner}").format(
        reward=fmt.reward_html(program, rules.slug),
        partner=fmt.partner_html(program, rules.partner),
    )


def _day(program: Program, value: Any) -> str:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return fmt.day(moment.astimezone(program.program.zone))


def sale_lines(
    program: Program,
    news: Iterable[Mapping[str, Any]],
    *,
    till: bool = False,
    discounted: bool = False,
) -> list[str]:
    """What a sale did on its stamp cards: the stamps, a full card's reward, or why a card
    got no stamp (in the same words for the member and for the till, `till`; a `discounted`
    sale's minimum is of the money charged after the discount)."""
    lines = []
    for n in news:
        card, stamps, of = name(program, n["card"]), int(n["stamps"]), int(n["of"])
        status = n["status"]
        if status == ADDED:
            lines.append(
                _("🎟 Stamp {stamps}/{of} on {card}.").format(stamps=stamps, of=of, card=card)
                if till
                else _("🎟 A stamp on {card}: {bar}").format(card=card, bar=bar(stamps, of))
            )
        elif status == PROMOTED:
            # After the promotions' stamps (and the fills they made, told before it).
            lines.append(
                _("🎟 With the promotion's stamps, {card} is at {stamps}/{of}.").format(
                    stamps=stamps, of=of, card=card
                )
                if till
                else _("🎟 With the promotion's stamps, {card}: {bar}").format(
                    card=card, bar=bar(stamps, of)
                )
            )
        elif status == FILLED and n.get("voucher"):
            figures = {
                "card": card,
                "code": escape(display_code(str(n["voucher"]))),
                "reward": fmt.reward_html(program, n.get("reward") or ""),
            }
            if till:
                lines.append(
                    _(
                        "🎉 Card filled: {card}. Voucher <code>{code}</code> issued: {reward}."
                    ).format(**figures)
                )
            else:
                lines.append(
                    _(
                        "🎉 Your card {card} is full! Your voucher <code>{code}</code>: {reward}, "
                        "valid until {date}. Your next stamp starts a new card."
                    ).format(date=_day(program, n["voucher_expires"]), **figures)
                )
        elif status == FILLED:
            points = fmt.points(int(n.get("reward_points") or 0))
            lines.append(
                _("🎉 Card filled: {card}. +{points} to the member.").format(
                    card=card, points=points
                )
                if till
                else _(
                    "🎉 Your card {card} is full: +{points}. Your next stamp starts a new card."
                ).format(card=card, points=points)
            )
        elif status == BELOW_MIN:
            rules = program.stamp_card(n["card"])
            least = rules.min_purchase if rules else Decimal(0)
            money = fmt.money(least, program.program.currency)
            lines.append(
                _(
                    "No stamp on {card}: it takes a purchase of {money} or more after the "
                    "discount."
                ).format(card=card, money=money)
                if discounted
                else _("No stamp on {card}: it takes a purchase of {money} or more.").format(
                    card=card, money=money
                )
            )
        elif status == DAILY_LIMIT:
            rules = program.stamp_card(n["card"])
            per_day = rules.per_day if rules else 1
            lines.append(
                _n(
                    "No stamp on {card}: its {n} stamp a day was given today.",
                    "No stamp on {card}: its {n} stamps a day were given today.",
                    per_day,
                ).format(card=card, n=per_day)
            )
        elif status == PARTNER_DONE:
            lines.append(
                _(
                    "No stamp on {card}: it has this partner's stamp already; the next comes "
                    "from another partner."
                ).format(card=card)
            )
    return lines


def refund_lines(
    program: Program, back: Iterable[Mapping[str, Any]], *, till: bool = False
) -> list[str]:
    """What a refund did to the stamps its sale added: taken back, or kept because the card
    was filled since (its reward was given and stays)."""
    lines = []
    for b in back:
        card, stamps, of = name(program, b["card"]), int(b["stamps"]), int(b["of"])
        if b["taken_back"]:
            lines.append(
                _("Stamp taken back from {card}: now {stamps}/{of}.").format(
                    card=card, stamps=stamps, of=of
                )
                if till
                else _("🎟 The stamp this purchase added on {card} is taken back: {bar}").format(
                    card=card, bar=bar(stamps, of)
                )
            )
        elif b.get("filled_by_sale"):
            lines.append(
                _(
                    "The stamp this sale added on {card} stays: this sale filled the card, and "
                    "its reward was given and stays."
                ).format(card=card)
                if till
                else _(
                    "🎟 The stamp this purchase added on {card} stays: this purchase filled the "
                    "card, and its reward stays yours."
                ).format(card=card)
            )
        else:
            lines.append(
                _(
                    "The stamp this sale added on {card} stays: that card has been filled "
                    "since, and its reward was given."
                ).format(card=card)
                if till
                else _(
                    "🎟 The stamp this purchase added on {card} stays: the card has been filled "
                    "since, and its reward stays yours."
                ).format(card=card)
            )
    return lines


def balance_lines(program: Program, held: Mapping[str, int]) -> list[str]:
    """/balance: a short line for each card the member is collecting."""
    return [
        _("🎟 {card}: {bar}").format(
            card=name(program, card.slug), bar=bar(held[card.slug], card.stamps)
        )
        for card in program.stamp_cards
        if held.get(card.slug)
    ]


def _rules(program: Program, card: StampCard) -> str:
    money = fmt.money(card.min_purchase, program.program.currency)
    if not card.min_purchase:
        parts = [_("A stamp for each purchase.")]
    elif club_part(program, True):  # the minimum is of what is charged, after the club's too
        parts = [
            _("A stamp for each purchase of {money} or more after your discount.").format(
                money=money
            )
        ]
    elif any(t.discount_percent for t in program.tiers):  # the minimum is of what is charged
        parts = [
            _("A stamp for each purchase of {money} or more after your tier discount.").format(
                money=money
            )
        ]
    else:
        parts = [_("A stamp for each purchase of {money} or more.").format(money=money)]
    if card.per_day:
        parts.append(
            _n("At most {n} stamp a day.", "At most {n} stamps a day.", card.per_day).format(
                n=card.per_day
            )
        )
    if card.distinct_partners:
        parts.append(_("Each stamp from a different partner."))
    return " ".join(parts)


def _days(days: int) -> str:
    return _n("{n} day", "{n} days", days).format(n=fmt.number(days))


def screen(program: Program, progress: Mapping[str, CardProgress]) -> str:
    """/stamps: every card of the program, the member's stamps on each (0 too, so they
    learn the card exists), where, what it gives, its rules and when its stamps lapse."""
    if not program.stamp_cards:
        return _("This program has no stamp cards.")
    blocks = [
        _("🎟 <b>Stamp cards</b>")
        + "\n"
        + _("Collect stamps with your purchases at these partners; a full card gives its reward.")
    ]
    for card in program.stamp_cards:
        mine = progress.get(card.slug)
        stamps = mine.stamps if mine else 0
        lines = [
            f"<b>{name(program, card.slug)}</b>",
            bar(stamps, card.stamps),
            "📍 " + where(program, card, mine.partners if mine and stamps else ()),
            "🎁 " + reward(program, card),
            _rules(program, card),
        ]
        if card.expire_days and stamps and mine and mine.last_stamp_at:
            lapses = mine.last_stamp_at + timedelta(days=card.expire_days)
            lines.append(
                _("⏳ These stamps lapse on {date} unless a new stamp comes first.").format(
                    date=_day(program, lapses)
                )
            )
        elif card.expire_days:
            lines.append(
                _("Stamps lapse {days} after the card's last stamp.").format(
                    days=_days(card.expire_days)
                )
            )
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _still_to_visit(program: Program, card: StampCard, visited: Iterable[str]) -> str:
    """Where a stamp can still come from: a tour card's partners not on it yet (all of
    them if none is left, say the file changed), another card's partners."""
    if card.distinct_partners:
        done = set(visited)
        if missing := [slug for slug in card.partners if slug not in done]:
            return " · ".join(fmt.partner_html(program, slug) for slug in missing)
    return where(program, card)


def lapsing(program: Program, p: Mapping[str, Any]) -> str:
    """The member's reminder that a card's stamps are about to lapse, with where a stamp
    that keeps them can come from."""
    card = program.stamp_card(str(p["card"]))
    n = int(p["stamps"])
    return _n(
        "⏳ Your {n} stamp on {card} lapses on {date}. A stamp before then keeps it: {where}.",
        "⏳ Your {n} stamps on {card} lapse on {date}. A stamp before then keeps them: {where}.",
        n,
    ).format(
        n=n,
        card=name(program, str(p["card"])),
        date=_day(program, p["lapses_at"]),
        where=_still_to_visit(program, card, p.get("visited") or ()) if card else "—",
    )


def lapsed(program: Program, p: Mapping[str, Any]) -> str:
    """The member's news that a card's stamps lapsed."""
    n = int(p["stamps"])
    return _n(
        "⌛ Your {n} stamp on {card} lapsed: no new stamp in {days}. Your next stamp starts a "
        "new card.",
        "⌛ Your {n} stamps on {card} lapsed: no new stamp in {days}. Your next stamp starts "
        "a new card.",
        n,
    ).format(n=n, card=name(program, str(p["card"])), days=_days(int(p["days"])))
