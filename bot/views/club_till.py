"""The club at the till: the member's status on the panel, the month offered for money and
its confirmation, the cashier's receipt of a month sold ("club_sold"), and the club's line
in /shift and /today."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from html import escape
from typing import Any

from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup
from aiogram.utils.i18n import gettext as _

from bot.callbacks import ClubSaleCb
from bot.views import formatting as fmt
from bot.views.discounts import club_name
from bot.views.notices import Rendered, renders
from db.queries.club import Membership
from db.rules.club import minor_units
from db.rules.program import Program


def _day(program: Program, moment: datetime | str) -> str:
    """The local day a membership ends on, as the member's calendar has it."""
    when = datetime.fromisoformat(moment) if isinstance(moment, str) else moment
    return fmt.day(when.astimezone(program.program.zone))


def panel_status(program: Program, membership: Membership | None, now: datetime) -> str:
    """The member's place in the club, on the till's panel: "⭐ City Club member until
    31 Dec 2026.", "City Club: not a member.", "City Club: membership ended 3 Dec 2026."."""
    name = club_name(program)
    if membership is not None and membership.active(now):
        return _("⭐ {club} member until {day}.").format(
            club=name, day=_day(program, membership.ends_at)
        )
    if membership is not None:
        return _("{club}: membership ended {day}.").format(
            club=name, day=_day(program, membership.ends_at)
        )
    return _("{club}: not a member.").format(club=name)


def offer_button(program: Program, dialog: str, price: Decimal, member: bool) -> list[Any]:
    """The panel's button that sells a month (another month, to a member: it extends)."""
    money = fmt.money(price, program.program.currency)
    text = (
        _("⭐ {club}: another month for {money}")
        if member
        else _("⭐ {club}: a month for {money}")
    ).format(club=club_name(program), money=money)
    return [
        InlineKeyboardButton(
            text=text,
            callback_data=ClubSaleCb(
                action="offer", dialog=dialog, minor=minor_units(price, program.program.currency)
            ).pack(),
        )
    ]


def take_money(program: Program, price: Decimal, until: datetime) -> str:
    """What the cashier does before recording the month: take the money first."""
    return _("Take {money} from the customer, then press Taken. Membership until {day}.").format(
        money=fmt.money(price, program.program.currency), day=_day(program, until)
    )


def take_money_markup(program: Program, dialog: str, price: Decimal) -> InlineKeyboardMarkup:
    minor = minor_units(price, program.program.currency)

    def button(text: str, action: str) -> InlineKeyboardButton:
        return InlineKeyboardButton(
            text=text,
            callback_data=ClubSaleCb(action=action, dialog=dialog, minor=minor).pack(),
        )

    return InlineKeyboardMarkup(
        inline_keyboard=[[button(_("✅ Taken"), "taken"), button(_("✖ Cancel"), "drop")]]
    )


def price_changed(program: Program, old: Decimal, new: Decimal) -> str:
    return _(
        "The price of a month of {club} has changed: it is now {new}, not {old}. Nothing was "
        "recorded."
    ).format(
        club=club_name(program),
        new=fmt.money(new, program.program.currency),
        old=fmt.money(old, program.program.currency),
    )


def already_recorded(program: Program, ends_at: datetime) -> str:
    return _("This month was already recorded: membership until {day}. Nothing more.").format(
        day=_day(program, ends_at)
    )


def sold_from_panel(program: Program, ends_at: datetime) -> str:
    """The panel's offer pressed again after its month was recorded: no money to take."""
    return _(
        "A month of {club} was already sold from this panel: membership until {day}. Do not "
        "take money for it again. For another month, scan the card again."
    ).format(club=club_name(program), day=_day(program, ends_at))


def not_sold() -> str:
    return _("Not recorded: no month of the club was sold.")


def recorded_not_cancelled(program: Program, ends_at: datetime) -> str:
    """Cancel pressed after Taken recorded the month: it stays sold."""
    return _(
        "This month was recorded (membership until {day}), so it was not cancelled. A refund "
        "is the program owner's: /club_refund."
    ).format(day=_day(program, ends_at))


@renders("club_sold")
def club_sold(program: Program, p: dict[str, Any]) -> Rendered:
    """The cashier's receipt of a month sold at their till (db/usecases/club_till.py)."""
    figures = {
        "club": club_name(program),
        "money": fmt.money(Decimal(str(p["amount"])), str(p["currency"])),
        "member": escape(p.get("member_name") or "—"),
        "day": _day(program, p["ends_at"]),
    }
    lines = [
        (
            _("✅ {club}: {money} from {member}. A member until {day}.")
            if p.get("joined")
            else _("✅ {club}: another month, {money} from {member}. A member until {day}.")
        ).format(**figures)
    ]
    if points := int(p.get("welcome_points") or 0):
        lines.append(
            _("🎁 The member got +{points} for joining.").format(points=fmt.points(points))
        )
    return Rendered("\n".join(lines))
