"""The longer texts the member reads, composed from translated pieces and the program."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from html import escape

from aiogram.utils.i18n import gettext as _

from bot.views import discounts, promotions
from bot.views import formatting as fmt
from db.queries.wallet import HistoryItem, Summary
from db.rules.program import Program


def rules_summary(program: Program, *, welcome: bool = True) -> str:
    """The program in a few lines; `welcome=False` for someone who had their welcome gift in
    an earlier account."""
    rules = program.program
    businesses = [p for p in program.partners if not p.charity]
    rates = sorted(p.earn_percent for p in businesses)
    lines = [
        _("<b>{program}</b>: one card for {count} local businesses.").format(
            program=escape(fmt.text(rules.name)), count=len(businesses)
        ),
        "",
    ]
    if tiers := discounts.tiers_discounts(program):
        lines.append("• " + tiers)
    if rates[-1]:  # a pure discount program earns nothing: no earning to promise
        lines.append(_earning(program, rates))
    if club := _club(program):
        lines.append(club)
    lines += [
        _("• Spend them at any partner: 1 point = {value}, up to {share} of a purchase.").format(
            value=fmt.money(rules.point_value, rules.currency),
            share=fmt.percent(rules.max_redeem_percent),
        ),
    ]
    if rules.expire_days:
        lines.append(
            _("• Points expire {days} days after you earn them, oldest first.").format(
                days=rules.expire_days
            )
        )
    if rules.welcome_points and welcome:
        lines.append(
            _("• A welcome gift of {points} when you join.").format(
                points=fmt.points(rules.welcome_points)
            )
        )
    lines += ["", _("Spending points always needs your confirmation here, in this chat.")]
    return "\n".join(lines)


def _earning(program: Program, rates: list[Decimal]) -> str:
    """The share of what a member pays that comes back in points: the partners' rates times
    the first tier's multiplier, and how high the higher tiers' multipliers take it."""
    multipliers = [t.multiplier for t in program.tiers]
    low = rates[0] * min(multipliers)
    high = rates[-1] * multipliers[0]
    top = rates[-1] * max(multipliers)
    if top > high:
        return _(
            "• Earn points on every purchase: {low}–{high} of what you pay, up to {top} at "
            "higher tiers."
        ).format(low=fmt.percent(low), high=fmt.percent(high), top=fmt.percent(top))
    return _("• Earn points on every purchase: {low}–{high} of what you pay.").format(
        low=fmt.percent(low), high=fmt.percent(high)
    )


def _club(program: Program) -> str:
    """The club in one line of the rules: what it adds to a tier's earning and discount and
    what a month costs ("" without a club)."""
    club = program.club
    if club is None:
        return ""
    money = fmt.money(club.price, program.program.currency) if club.price else ""
    stars = f"{fmt.number(club.stars_per_month)} ⭐" if club.stars_per_month else ""
    figures = {
        "club": escape(fmt.text(club.name)),
        "price": (
            _("{stars} or {money}").format(stars=stars, money=money)
            if stars and money
            else stars or money
        ),
        "multiplier": fmt.number(club.multiplier),
        "percent": fmt.percent(club.discount_percent),
    }
    more, off = club.multiplier > 1, bool(club.discount_percent)
    if more and off:
        text = _(
            "• {club}, a paid membership ({price} a month): points × {multiplier} and "
            "{percent} more off at every partner, on top of your tier; more in /club."
        )
    elif more:
        text = _(
            "• {club}, a paid membership ({price} a month): points × {multiplier} on top of "
            "your tier; more in /club."
        )
    elif off:
        text = _(
            "• {club}, a paid membership ({price} a month): {percent} more off at every "
            "partner, on top of your tier; more in /club."
        )
    else:  # the partners' own perks only
        text = _("• {club}, a paid membership ({price} a month): its perks are in /club.")
    return text.format(**figures)


def balance(summary: Summary, program: Program, *, club: bool = False) -> str:
    """/balance's points and tier; `club`: the member is in the club now (its multiplier
    next to the tier's, its discount added to the tier's with where each part comes from)."""
    currency = program.program.currency
    worth = fmt.money(summary.money, currency)
    lines = [
        _(
            "💰 <b>{points}</b> (worth {money}), of which {held} held for your open vouchers, "
            "gifts and requests ({available} to spend)"
        ).format(
            points=fmt.points(summary.balance),
            money=worth,
            held=fmt.number(summary.held),
            available=fmt.number(summary.balance - summary.held),
        )
        if summary.held
        else _("💰 <b>{points}</b> (worth {money})").format(
            points=fmt.points(summary.balance), money=worth
        ),
        _tier_line(summary, program, club=club),
    ]
    if discount := discounts.member_discount(program, summary.tier, club):
        lines.append(discount)
    if summary.next_tier and summary.to_next_tier is not None:
        lines.append(
            _("Spend {money} more within 12 months to reach {tier}.").format(
                money=fmt.money(summary.to_next_tier, currency),
                tier=escape(fmt.text(program.tier(summary.next_tier).name)),
            )
        )
    else:
        lines.append(_("You are at the top tier."))
    if summary.expiring_at and summary.expiring_points:
        lines.append(
            _("⏳ {points} expire on {date}.").format(
                points=fmt.points(summary.expiring_points),
                date=fmt.day(summary.expiring_at.astimezone(program.program.zone)),
            )
        )
    return "\n".join(lines)


def _tier_line(summary: Summary, program: Program, *, club: bool) -> str:
    """ "🏅 Tier: Gold (points × 1.5)", and for a club member with a club multiplier
    "🏅 Tier: Gold (points × 1.5), × 1.5 more in City Club"."""
    figures = {
        "tier": escape(fmt.text(program.tier(summary.tier).name)),
        "multiplier": fmt.number(summary.multiplier),
    }
    if club and program.club is not None and program.club_promotion is not None:
        return _(
            "🏅 Tier: {tier} (points × {multiplier}), × {club_multiplier} more in {club}"
        ).format(
            club_multiplier=fmt.number(program.club.multiplier),
            club=discounts.club_name(program),
            **figures,
        )
    return _("🏅 Tier: {tier} (points × {multiplier})").format(**figures)


def _what(item: HistoryItem, program: Program) -> str:
    currency = program.program.currency
    amount = fmt.money(item.amount, currency) if item.amount is not None else ""
    match item.kind:
        case "earn":
            return _("purchase {amount}").format(amount=amount)
        case "redeem":
            return _("purchase {amount} paid partly with points").format(amount=amount)
        case "reverse" if item.amount is None and item.reason:  # a promotion taken back
            return promotions.history_what(program, item.kind, item.reason) or ""
        case "reverse":
            return _("refund {amount}").format(amount=amount)
        case "expire":
            return _("points expired")
        case "referral" if item.own:
            return _("reward for joining by a friend's invitation")
        case "referral":
            return _("reward for inviting a friend")
        case "welcome":
            return _("welcome gift")
        case "club" if item.points_out:  # taken back with the payment it came with
            return _("{club}: welcome gift taken back (the payment was refunded)").format(
                club=_club_name(program)
            )
        case "club":
            return _("{club}: welcome gift").format(club=_club_name(program))
        case "gift" if item.points_in:
            return _("a gift from a friend")
        case "gift":
            return _("your gift to a friend")
        case "voucher":  # the claim's reason is the reward's slug
            return _("voucher used: {title}").format(
                title=fmt.reward_html(program, item.reason or "")
            )
        case "card_filled":
            return _("a full stamp card's reward")
        case "promotion":
            return promotions.history_what(program, item.kind, item.reason) or ""
        case _:
            return _("adjustment: {reason}").format(reason=escape(item.reason or ""))


def _club_name(program: Program) -> str:
    return escape(fmt.text(program.club.name)) if program.club is not None else _("the club")


def history(items: list[HistoryItem], offset: int, total: int, program: Program) -> str:
    if not items:
        return _("No transactions yet. Show your card at any partner to earn points.")
    lines = [
        _("📜 Transactions {first}–{last} of {total}").format(
            first=offset + 1, last=offset + len(items), total=total
        )
    ]
    zone = program.program.zone  # the day the member lived it, not UTC's
    for item in items:
        day = fmt.day(item.created_at.astimezone(zone))
        moved = []
        if item.points_in:
            moved.append("+" + fmt.points(item.points_in))
        if item.points_out:
            moved.append("−" + fmt.points(item.points_out))
        name = fmt.partner_html(program, item.partner) if item.partner else ""
        if item.kind == "donation":
            lines.append(
                f"{day} · "
                + _("🤍 Donated {points} to {charity}").format(
                    points=fmt.points(item.points_out), charity=name
                )
            )
            continue
        where = f" · {name}" if name else ""
        line = f"{day}{where} · {_what(item, program)}"
        if item.kind == "voucher":  # a funded voucher moves none of the member's points
            lines.append(line + (f" ({', '.join(moved)})" if moved else ""))
        else:
            lines.append(f"{line}: " + (", ".join(moved) or fmt.points(0)))
    return "\n".join(lines)


def partners(program: Program, today: date) -> str:
    lines = [_("🏪 <b>Our partners</b>")]
    if tiers := discounts.tiers_discounts(program):
        lines.append("🏷 " + tiers)
    for partner in program.partners:
        name = escape(fmt.text(partner.name))
        category = escape(fmt.text(partner.category))
        if partner.charity:
            head = _("<b>{name}</b> ({category}): a charity, give it points with /donate").format(
                name=name, category=category
            )
        elif partner.earn_percent or not tiers:
            head = _("<b>{name}</b> ({category}): {rate} back in points").format(
                name=name, category=category, rate=fmt.percent(partner.earn_percent)
            )
        else:  # a discount program's partner: no points to earn there
            head = f"<b>{name}</b> ({category})"
        lines += ["", head]
        if partner.address:
            lines.append("📍 " + escape(partner.address))
        for offer in partner.offers:
            if offer.until is not None and offer.until < today:
                continue
            until = (
                " " + _("(until {date})").format(date=fmt.day(offer.until)) if offer.until else ""
            )
            title, text = escape(fmt.text(offer.title)), escape(fmt.text(offer.text))
            lines.append(f"🎁 <i>{title}</i>: {text}{until}")
    return "\n".join(lines)


# The invitation reward comes with the invited friend's first purchase of at least the
# program's qualifying amount: "first purchase" alone only when any purchase qualifies.


def invite_terms(program: Program) -> str:
    """What inviting a friend brings, for the inviter (/invite)."""
    referral = program.referral
    figures = {
        "amount": fmt.money(referral.qualifying_purchase, program.program.currency),
        "inviter": fmt.points(referral.inviter_points),
        "invitee": fmt.points(referral.invitee_points),
    }
    if referral.qualifying_purchase:
        return _(
            "When a friend joins with your link and makes a first purchase of {amount} or "
            "more, you get {inviter} and your friend gets {invitee}."
        ).format(**figures)
    return _(
        "When a friend joins with your link and makes a first purchase, you get {inviter} "
        "and your friend gets {invitee}."
    ).format(**figures)


def invitation(program: Program, friend: str | None) -> str:
    """What the invited friend is promised when they open the link (`friend`: the
    inviter's name, if known)."""
    referral = program.referral
    figures = {
        "amount": fmt.money(referral.qualifying_purchase, program.program.currency),
        "yours": fmt.points(referral.invitee_points),
        "theirs": fmt.points(referral.inviter_points),
    }
    if friend and referral.qualifying_purchase:
        text = _(
            "{friend} invited you! Make a first purchase of {amount} or more: you get "
            "{yours} and {friend} gets {theirs}."
        )
    elif friend:
        text = _(
            "{friend} invited you! Make a first purchase: you get {yours} and {friend} gets "
            "{theirs}."
        )
    elif referral.qualifying_purchase:
        text = _(
            "A friend invited you! Make a first purchase of {amount} or more: you get "
            "{yours} and your friend gets {theirs}."
        )
    else:
        text = _(
            "A friend invited you! Make a first purchase: you get {yours} and your friend "
            "gets {theirs}."
        )
    return text.format(friend=escape(friend or ""), **figures)
