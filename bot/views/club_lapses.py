"""The club's notices about a membership's end: "ending soon" and "ended" (the daily job,
db/usecases/club_lapses.py), and "refunded" (the owner's refund, db/usecases/club_refunds.py:
what the refund took back).
Dates are the program's local days."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from html import escape
from typing import Any

from aiogram.utils.i18n import gettext as _

from bot.views import formatting as fmt
from bot.views.notices import Rendered, renders
from db.rules.program import Program


def club_name(program: Program) -> str:
    """The club's name in the reader's language, escaped for HTML."""
    return escape(fmt.text(program.club.name)) if program.club else _("the club")


def _day(program: Program, value: Any) -> str:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return fmt.day(moment.astimezone(program.program.zone))


def stars(amount: Any) -> str:
    """An amount of Telegram Stars: "250 ⭐"."""
    return f"{fmt.number(Decimal(str(amount)).normalize())} ⭐"


def _how_to_pay(program: Program) -> str:
    """Where membership is sold: /club in Telegram, and at the tills when it has a price
    in money."""
    if program.club is not None and program.club.price:
        return _("/club, or at any partner's till")
    return "/club"


@renders("club_ending")
def club_ending(program: Program, p: dict[str, Any]) -> Rendered:
    return Rendered(
        _(
            "⏳ Your {club} membership ends on {date}. To stay in the club, extend it: {how}."
        ).format(
            club=club_name(program), date=_day(program, p["ends_at"]), how=_how_to_pay(program)
        )
    )


@renders("club_ended")
def club_ended(program: Program, p: dict[str, Any]) -> Rendered:
    return Rendered(
        _(
            "⌛ Your {club} membership ended on {date}, and its perks with it. You are welcome "
            "back any time: {how}."
        ).format(
            club=club_name(program), date=_day(program, p["ends_at"]), how=_how_to_pay(program)
        )
    )


@renders("club_refunded")
def club_refunded(program: Program, p: dict[str, Any]) -> Rendered:
    """A payment given back: Stars by Telegram, money by the program (its payment provider
    or the partner's till); what it bought is taken back: the membership's time still
    ahead, the welcome points paid with it."""
    club = club_name(program)
    if p["method"] == "stars":
        head = _("↩️ Your {club} payment of {amount} was refunded: Telegram gives the Stars back.")
        amount = stars(p["amount"])
    else:
        head = _("↩️ Your {club} payment of {amount} was refunded.")
        amount = fmt.money(Decimal(str(p["amount"])), str(p["currency"]))
    day = _day(program, p["ends_at"])
    if p.get("ended", True) and p.get("shortened", True):
        then = _("Your membership ended with it on {date}.").format(date=day)
    elif p.get("ended"):
        then = _("Your membership had ended on {date}.").format(date=day)
    elif p.get("shortened"):
        then = _(
            "The time it paid for that was still ahead is taken off: you are a member until "
            "{date}."
        ).format(date=day)
    else:
        then = _("The time it paid for was over: you are a member until {date}.").format(date=day)
    lines = [head.format(club=club, amount=amount), then]
    if points := int(p.get("points_back") or 0):
        lines.append(
            _("The club's welcome gift paid with it was taken back: −{points}.").format(
                points=fmt.points(points)
            )
        )
    return Rendered("\n".join(lines))
