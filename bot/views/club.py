"""The club as members read it: /club (its perks, its price, their membership and the
buttons to pay or stop renewal), the club line of /balance, /paysupport, the invoice, the
refusals at pre-checkout, and the news of a payment ("club_paid"). The owners' notices of a
payment that bought nothing and of a request for help live here too."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from html import escape
from typing import Any

from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup
from aiogram.utils.i18n import gettext as _

from bot.callbacks import ClubCb
from bot.views import formatting as fmt
from bot.views import offers
from bot.views.notices import Rendered, renders
from db.queries.club import Membership, PaidClub
from db.rules import club as club_rules
from db.rules.cards import format_card_number
from db.rules.offers import runs_soon
from db.rules.program import CLUB_PERIOD, Club, Program, Promotion

STARS = "XTR"
# Telegram's limits on an invoice's title and description.
TITLE_MAX, DESCRIPTION_MAX = 32, 255


def name(club: Club) -> str:
    return escape(fmt.text(club.name))


def paid(amount: Any, currency: str) -> str:
    """What was paid: "250 ⭐" for Telegram Stars, else money."""
    if currency == STARS:
        return _("{stars} ⭐").format(stars=fmt.number(int(Decimal(str(amount)))))
    return fmt.money(Decimal(str(amount)), currency)


def _day(program: Program, moment: datetime) -> str:
    """The local day of `moment`, in the program's time zone."""
    return fmt.day(moment.astimezone(program.program.zone))


def club_promotions(program: Program, today: date) -> list[Promotion]:
    """The promotions for club members that run today or within the next days."""
    return [p for p in program.promotions if p.who.club and runs_soon(p, today)]


def perks(program: Program, club: Club, *, welcome: bool, today: date) -> list[str]:
    """What members get, a line each: the multiplier, the discount, the welcome points (for
    someone who has not had them), the club's promotions and the partners' own perks."""
    lines = []
    if club.multiplier > 1:
        lines.append(
            _("• ×{multiplier} points on top of your tier").format(
                multiplier=fmt.number(club.multiplier)
            )
        )
    if club.discount_percent:
        lines.append(
            _("• {percent} off at every partner on top of your tier's").format(
                percent=fmt.percent(club.discount_percent)
            )
        )
    if welcome and club.welcome_points:
        lines.append(
            _("• {points} when you first join").format(points=fmt.points(club.welcome_points))
        )
    for promo in club_promotions(program, today):
        lines.append(
            _("• {title}: {gives}, {where}, {when}").format(
                title=escape(fmt.text(promo.title)),
                gives=offers.gives(program, promo),
                where=offers.where(program, promo.partners),
                when=offers.when(promo, today),
            )
        )
    lines += ["• " + escape(fmt.text(perk)) for perk in club.perks]
    return lines


def prices(program: Program, club: Club, *, card: bool) -> list[str]:
    """How the club is sold: Telegram Stars, by card in Telegram, at the tills."""
    money = fmt.money(club.price, program.program.currency) if club.price else ""
    lines = []
    if club.stars_per_month:
        lines.append(
            _(
                "• {stars} a month: a Telegram Stars subscription, renewed every 30 days until "
                "you stop it."
            ).format(stars=paid(club.stars_per_month, STARS))
        )
    if card and club.price:
        lines.append(
            _(
                "• {money} for 30 days by card (not renewed by itself: pay again to extend)."
            ).format(money=money)
        )
    if club.price:
        lines.append(
            _("• Or at any partner's till: {money} a month.").format(money=money)
            if lines
            else _("• Ask at any partner's till: {money} a month.").format(money=money)
        )
    return lines


def _charged_then(program: Program, ends_at: datetime, charged_at: datetime) -> bool:
    """Whether Telegram charges the subscription on the membership's last day (it was
    not begun during time paid another way): then "it renews then" says it all."""
    return _day(program, charged_at) == _day(program, ends_at)


def status(program: Program, membership: Membership | None, now: datetime) -> str:
    if membership is None:
        return _("You are not a member yet.")
    until = _day(program, membership.ends_at)
    if not membership.active(now):
        return _("Your membership ended on {date}.").format(date=until)
    if membership.renewing(now):
        assert membership.subscription_until is not None
        if _charged_then(program, membership.ends_at, membership.subscription_until):
            return _(
                "✅ You are a member until {date}; your Telegram Stars subscription renews "
                "it then."
            ).format(date=until)
        return _(
            "✅ You are a member until {date}; Telegram charges your Stars subscription "
            "again on {renewal}, which extends it."
        ).format(date=until, renewal=_day(program, membership.subscription_until))
    return _("✅ You are a member until {date}; it ends then.").format(date=until)


def screen(
    program: Program,
    club: Club,
    membership: Membership | None,
    now: datetime,
    *,
    welcome: bool,
    card: bool,
) -> str:
    lines = [f"👑 <b>{name(club)}</b>"]
    if text := fmt.text(club.text):
        lines.append(escape(text))
    today = now.astimezone(program.program.zone).date()
    if found := perks(program, club, welcome=welcome, today=today):
        lines += ["", _("<b>What members get</b>"), *found]
    lines += ["", _("<b>Price</b>"), *prices(program, club, card=card)]
    lines += ["", status(program, membership, now)]
    return "\n".join(lines)


def renewable(membership: Membership | None, now: datetime) -> bool:
    """A Stars subscription whose renewal the member may switch (db/rules/club.py)."""
    return membership is not None and membership.renewable(now)


def keyboard(
    program: Program,
    club: Club,
    membership: Membership | None,
    now: datetime,
    *,
    stars_link: str | None,
    card: bool,
) -> InlineKeyboardMarkup | None:
    """Join or extend for Stars (a link to the subscription's invoice), pay by card, stop
    or resume the subscription's renewal."""
    member = membership is not None and membership.active(now)
    rows = []
    if stars_link is not None:
        label = _("Extend for {stars}") if member else _("Join for {stars}")
        rows.append(
            [
                InlineKeyboardButton(
                    text=label.format(stars=paid(club.stars_per_month, STARS)), url=stars_link
                )
            ]
        )
    if card and club.price:
        rows.append(
            [
                InlineKeyboardButton(
                    text=_("💳 Pay {money} by card").format(
                        money=fmt.money(club.price, program.program.currency)
                    ),
                    callback_data=ClubCb(action="card").pack(),
                )
            ]
        )
    if renewable(membership, now):
        assert membership is not None
        rows.append(
            [
                InlineKeyboardButton(
                    text=_("Stop renewal"), callback_data=ClubCb(action="stop").pack()
                )
                if membership.renewing(now)
                else InlineKeyboardButton(
                    text=_("Resume renewal"), callback_data=ClubCb(action="resume").pack()
                )
            ]
        )
    return InlineKeyboardMarkup(inline_keyboard=rows) if rows else None


def no_club() -> str:
    return _("This program has no club.")


def invoice_title(club: Club) -> str:
    return fmt.text(club.name)[:TITLE_MAX]


def invoice_description(club: Club) -> str:
    head = _("{days} days of membership.").format(days=CLUB_PERIOD.days)
    text = fmt.text(club.text)
    return (f"{head} {text}" if text else head)[:DESCRIPTION_MAX]


def invoice_label() -> str:
    return _("{days} days").format(days=CLUB_PERIOD.days)


# ------------------------------------------------------------------ renewal buttons


def renewal_changed(renews: bool) -> str:
    return (
        _("Renewal is on again: Telegram will renew your membership at its end.")
        if renews
        else _("Renewal is stopped: your membership ends at the end of the time paid for.")
    )


def renewal_already(renews: bool) -> str:
    return (
        _("Your subscription already renews. Nothing was changed.")
        if renews
        else _("Renewal is already stopped. Nothing was changed.")
    )


def renewal_refused() -> str:
    return _("Telegram did not accept this just now, so nothing was changed. Try again later.")


def renewal_not_noted(renews: bool) -> str:
    """Telegram accepted the switch and the bot's record of it failed."""
    return (
        _(
            "Telegram has turned the renewal back on; the bot could not note it yet, so /club "
            "may still show it stopped. Press “Resume renewal” again later to note it."
        )
        if renews
        else _(
            "Telegram has stopped the renewal; the bot could not note it yet, so /club may "
            "still show it renewing. Telegram will not charge you again. Press “Stop renewal” "
            "again later to note it."
        )
    )


def no_subscription() -> str:
    return _("You have no Telegram Stars subscription to change.")


def renewal_pending() -> str:
    """The grace day after the end: Telegram's renewal may still be on its way."""
    return _(
        "When your Telegram Stars subscription renews, its payment can take up to a day to "
        "reach us: your membership then goes on, and you are told. If none comes (it was "
        "cancelled in Telegram, or the Stars ran short), you can join again here after that."
    )


def not_by_card() -> str:
    return _("The club is not sold by card now: open /club again.")


# ------------------------------------------------------------------ pre-checkout


def refusal(reason: str) -> str:
    """Why a payment was refused before anything was charged (Telegram shows it)."""
    return {
        "not_member": lambda: _(
            "Only members of the program can join its club, and this Telegram account is not "
            "one: send /start to join the program first. Nothing was charged."
        ),
        "other_account": lambda: _(
            "This invoice was made for another account: open /club again. Nothing was charged."
        ),
        "not_sold": lambda: _(
            "The club is not sold this way any more: open /club again. Nothing was charged."
        ),
        "price": lambda: _("The price has changed: open /club again. Nothing was charged."),
        "subscribed": lambda: _(
            "Your Telegram Stars subscription already renews your membership. Nothing was charged."
        ),
    }.get(reason, lambda: _("This payment cannot be taken. Nothing was charged."))()


# ------------------------------------------------------------------ after paying


def given_back(reason: str, amount: str, *, refunded: bool, stars: bool) -> str:
    """Said to someone whose payment bought nothing, and what becomes of their money."""
    why = {
        "not_member": lambda: _(
            "You are no longer a member of the program, so your payment of {amount} bought "
            "nothing."
        ),
        "other_account": lambda: _(
            "Your payment of {amount} was for an account that has been deleted, so it bought "
            "nothing."
        ),
        "no_club": lambda: _(
            "The program no longer has a club sold this way, so your payment of {amount} "
            "bought nothing."
        ),
    }.get(reason, lambda: _("Your payment of {amount} was not for anything this bot sells."))()
    if refunded:
        then = _("It was refunded to you.")
    elif stars:
        then = _(
            "It could not be refunded automatically: the program's owner has been told and "
            "will refund it. /paysupport if you need help."
        )
    else:
        then = _(
            "The program's owner has been told and will refund it. /paysupport if you need help."
        )
    return why.format(amount=amount) + " " + then


def not_recorded(amount: str) -> str:
    return _(
        "Your payment of {amount} arrived, but we could not record it just now. It is in our "
        "log: send /paysupport and the program's owner will set it right."
    ).format(amount=amount)


@renders("club_paid")
def club_paid(program: Program, p: dict[str, Any]) -> Rendered:
    """The member's news of a payment: joined or extended, until when, renews or not, the
    welcome points paid with it."""
    club = program.club
    title = name(club) if club is not None else _("the club")
    until = _day(program, datetime.fromisoformat(str(p["ends_at"])))
    amount = paid(p["amount"], str(p["currency"]))
    head = (
        _("👑 Welcome to {club}! You paid {amount}: you are a member until {date}.")
        if p.get("joined")
        else _("👑 {club} extended: you paid {amount}, you are a member until {date}.")
    )
    lines = [head.format(club=title, amount=amount, date=until)]
    charged = p.get("subscription_until")
    if (
        p.get("renews")
        and charged
        and not _charged_then(
            program,
            datetime.fromisoformat(str(p["ends_at"])),
            datetime.fromisoformat(str(charged)),
        )
    ):
        lines.append(
            _(
                "Telegram charges your Stars subscription again on {date}, which extends it; "
                "/club to stop it."
            ).format(date=_day(program, datetime.fromisoformat(str(charged))))
        )
    elif p.get("renews"):
        lines.append(_("Your Telegram Stars subscription renews it then; /club to stop it."))
    else:
        lines.append(_("It ends then: /club to extend it."))
    if points := int(p.get("welcome_points") or 0):
        lines.append(_("🎁 +{points}: the club's welcome gift.").format(points=fmt.points(points)))
    return Rendered("\n".join(lines))


def balance_line(
    program: Program,
    ends_at: datetime,
    renews: bool,
    subscription_until: datetime | None,
    now: datetime,
) -> str:
    """/balance's club line ("" never shown to someone who was never a member)."""
    club = program.club
    if club is None:
        return ""
    until = _day(program, ends_at)
    if not club_rules.active(ends_at, now):
        return _("👑 {club}: your membership ended on {date} (/club)").format(
            club=name(club), date=until
        )
    if club_rules.renewing(renews, subscription_until, now):
        assert subscription_until is not None
        if _charged_then(program, ends_at, subscription_until):
            return _("👑 {club}: member until {date} (renews)").format(club=name(club), date=until)
        return _("👑 {club}: member until {date} (Stars subscription renews on {renewal})").format(
            club=name(club), date=until, renewal=_day(program, subscription_until)
        )
    return _("👑 {club}: member until {date} (ends then)").format(club=name(club), date=until)


# ------------------------------------------------------------------ /paysupport


def _payment_line(program: Program, p: PaidClub) -> str:
    how = {
        "stars": _("Telegram Stars"),
        "card": _("by card"),
        "till": _("at a till"),
    }.get(p.method, p.method)
    line = _("• {date}: {amount}, {how}, until {until}").format(
        date=_day(program, p.paid_at),
        amount=paid(p.amount, p.currency),
        how=how,
        until=_day(program, p.until),
    )
    if p.refunded:
        line += " " + _("(refunded)")
    return line


def support(program: Program, paid_list: Sequence[PaidClub], *, member: bool) -> str:
    lines = [_("🆘 <b>Help with a payment</b>")]
    if paid_list:
        lines += [_("Your club payments:"), *(_payment_line(program, p) for p in paid_list)]
    elif member:
        lines.append(_("You have made no club payments."))
    lines += [
        "",
        _(
            "Payments in Telegram Stars can be refunded only by the program's owner. Write in "
            "one message what went wrong (/cancel to leave it): I will pass it to the "
            "program's owner, with your card number and payments, and they will answer you "
            "here."
        ),
    ]
    return "\n".join(lines)


def support_sent() -> str:
    return _("✅ Sent to the program's owner: they will answer you here.")


def support_nobody() -> str:
    return _(
        "The program has no owner to pass this to right now, so it was not sent. Please try "
        "again later."
    )


def support_text_only() -> str:
    return _("Please write what went wrong as text, or /cancel.")


def _owner_payment_line(program: Program, p: dict[str, Any]) -> str:
    line = "• " + _("{date}: {amount} ({method}), until {until}, charge {charge}").format(
        date=_day(program, datetime.fromisoformat(str(p["paid_at"]))),
        amount=paid(p["amount"], str(p["currency"])),
        method=escape(str(p["method"])),
        until=_day(program, datetime.fromisoformat(str(p["until"]))),
        charge=f"<code>{escape(str(p['charge_id']))}</code>",
    )
    if p.get("refunded"):
        line += " " + _("(refunded)")
    return line


def _who(p: dict[str, Any]) -> str:
    who = escape(str(p.get("name") or "")) or "—"
    if p.get("card_number"):
        return _("{name}, card {card}, Telegram id {id}").format(
            name=who, card=format_card_number(str(p["card_number"])), id=p["telegram_id"]
        )
    return _("{name} (not a member), Telegram id {id}").format(name=who, id=p["telegram_id"])


@renders("club_support")
def club_support(program: Program, p: dict[str, Any]) -> Rendered:
    """An owner's copy of a member's request for help with a payment."""
    lines = [
        _("🆘 Help with a payment asked by {who}:").format(who=_who(p)),
        f"<blockquote>{escape(str(p['text']))}</blockquote>",
    ]
    if p.get("payments"):
        lines += [
            _("Their club payments:"),
            *(_owner_payment_line(program, x) for x in p["payments"]),
        ]
    else:
        lines.append(_("They have no club payments."))
    return Rendered("\n".join(lines))


@renders("club_unclaimed")
def club_unclaimed(program: Program, p: dict[str, Any]) -> Rendered:
    """An owner's news of a club payment that bought nothing and is still to be refunded."""
    why = {
        "not_member": lambda: _("they are no longer a member"),
        "other_account": lambda: _("it was for an account that has been deleted"),
        "no_club": lambda: _("the club is no longer sold this way"),
    }.get(str(p.get("reason")), lambda: _("it was for nothing this bot sells"))()
    text = _(
        "⚠️ {name} (Telegram id {id}) paid {amount} for the club, but {why}, so it bought "
        "nothing: refund it. Telegram charge <code>{charge}</code>, provider charge "
        "<code>{provider}</code>."
    ).format(
        name=escape(str(p.get("name") or "")) or "—",
        id=p["telegram_id"],
        amount=paid(p["amount"], str(p["currency"])),
        why=why,
        charge=escape(str(p["charge_id"])),
        provider=escape(str(p.get("provider_charge_id") or "—")),
    )
    settling = settle(
        int(p["telegram_id"]), str(p["currency"]), Decimal(str(p["amount"])), str(p["charge_id"])
    )
    return Rendered(text + "\n" + settling)


def refund_command(telegram_id: int, charge_id: str, stars: int | Decimal) -> str:
    """The owner's command that refunds a Stars charge the bot did not record as a club
    payment (bot/handlers/office/club_charges.py), ready to copy."""
    return f"/club_refund {telegram_id} {charge_id} {int(stars)}"


def settle(telegram_id: int, currency: str, amount: Decimal, charge_id: str) -> str:
    """How an owner gives back a payment that bought nothing or could not be recorded."""
    if currency == STARS:
        return _("To refund the Stars, send:\n<code>{command}</code>").format(
            command=escape(refund_command(telegram_id, charge_id, amount))
        )
    return _(
        "Telegram cannot refund a card payment: refund it in your payment provider's dashboard "
        "(the provider charge above)."
    )
