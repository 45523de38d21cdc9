"""What members read about gifts and donations, and their buttons."""

from __future__ import annotations

from html import escape

from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup
from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import ngettext as _n

from bot.callbacks import DonateCb, GiftCb
from bot.views import formatting as fmt
from bot.views.keyboards import share_keyboard
from db.queries.donations import DonationFigures
from db.queries.gifts import Allowance, GiftInfo
from db.rules.gifts import GIFT_TTL
from db.rules.points import points_money
from db.rules.program import PartnerRules, Program


def _button(text: str, data: GiftCb | DonateCb) -> InlineKeyboardButton:
    return InlineKeyboardButton(text=text, callback_data=data.pack())


def _worth(program: Program, points: int) -> str:
    rules = program.program
    return fmt.money(points_money(points, rules.point_value), rules.currency)


# ----------------------------------------------------------------------------- gifts


def nothing_to_give(allowance: Allowance) -> str:
    if allowance.left_today <= 0:
        return _("You have given the {max} a day allows already. Try again tomorrow.").format(
            max=fmt.points(allowance.per_day)
        )
    return _("You have no points to give right now.")


def gift_prompt(allowance: Allowance) -> str:
    return "\n".join(
        [
            _("🎀 How many points would you like to give a friend?"),
            _("Send a whole number, up to {most}.").format(most=fmt.points(allowance.most)),
            _("You get a link to send them; /cancel if you changed your mind."),
        ]
    )


def gift_confirm(program: Program, points: int) -> str:
    return "\n".join(
        [
            _("🎀 Give {points} (worth {money}) to a friend?").format(
                points=fmt.points(points), money=_worth(program, points)
            ),
            _n(
                "They are held for your friend until they accept them with the link you send; "
                "if nobody accepts within {n} day, they come back to you.",
                "They are held for your friend until they accept them with the link you send; "
                "if nobody accepts within {n} days, they come back to you.",
                GIFT_TTL.days,
            ).format(n=fmt.number(GIFT_TTL.days)),
        ]
    )


def gift_confirm_keyboard(dialog: str, points: int) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                _button(_("✅ Confirm"), GiftCb(action="confirm", code=dialog, points=points)),
                _button(_("✖ Cancel"), GiftCb(action="drop", code=dialog)),
            ]
        ]
    )


def _until(program: Program, gift: GiftInfo) -> str:
    """The gift's last day, in the program's time zone."""
    return fmt.day(gift.expires_at.astimezone(program.program.zone))


def gift_ready(program: Program, gift: GiftInfo, link: str) -> str:
    return "\n".join(
        [
            _("🎀 Your gift of {points} is ready. Send your friend this link:").format(
                points=fmt.points(gift.points)
            ),
            link,
            _("It works until {date}; the first member to accept it gets the points.").format(
                date=_until(program, gift)
            ),
        ]
    )


def gift_share_keyboard(program: Program, gift: GiftInfo, link: str) -> InlineKeyboardMarkup:
    text = _("A gift of {points} for you in {program}: open the link to accept it.").format(
        points=fmt.points(gift.points), program=fmt.text(program.program.name)
    )
    return share_keyboard(link, text)


def open_gifts(program: Program, gifts: list[tuple[GiftInfo, str]]) -> str:
    """The member's open gifts, each with its link."""
    lines = [_("🎀 <b>Your gifts waiting for a friend</b>")]
    for gift, link in gifts:
        lines.append(
            _("{points}, until {date}: {link}").format(
                points=fmt.points(gift.points), date=_until(program, gift), link=link
            )
        )
    return "\n".join(lines)


def open_gifts_keyboard(gifts: list[GiftInfo]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                _button(
                    _("↩️ Take back {points}").format(points=fmt.points(gift.points)),
                    GiftCb(action="cancel", code=gift.code),
                )
            ]
            for gift in gifts
        ]
    )


def gift_offer(gift: GiftInfo) -> str:
    if gift.giver_name:
        return _("🎁 Accept {points} from {name}?").format(
            points=fmt.points(gift.points), name=escape(gift.giver_name)
        )
    return _("🎁 Accept {points} from a friend?").format(points=fmt.points(gift.points))


def gift_offer_to_join(gift: GiftInfo, program: Program) -> str:
    name = escape(fmt.text(program.program.name))
    if gift.giver_name:
        return _("🎁 {name} gives you {points}! Join {program} below to accept them.").format(
            name=escape(gift.giver_name), points=fmt.points(gift.points), program=name
        )
    return _("🎁 A friend gives you {points}! Join {program} below to accept them.").format(
        points=fmt.points(gift.points), program=name
    )


def accept_keyboard(code: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[[_button(_("✅ Accept"), GiftCb(action="accept", code=code))]]
    )


# ----------------------------------------------------------------------------- donations


def charities(program: Program) -> str:
    lines = [
        _("🤍 <b>Give points to a good cause</b>"),
        _("The program pays the charity what your points are worth: 1 point = {value}.").format(
            value=fmt.money(program.program.point_value, program.program.currency)
        ),
    ]
    for charity in program.charities:
        line = f"<b>{escape(fmt.text(charity.name))}</b>"
        if charity.category:
            line += f" ({escape(fmt.text(charity.category))})"
        lines += ["", line]
        if charity.address:
            lines.append("📍 " + escape(charity.address))
    return "\n".join(lines)


def charities_keyboard(program: Program) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [_button("🤍 " + fmt.text(c.name), DonateCb(action="pick", partner=c.slug))]
            for c in program.charities
        ]
    )


def donation_prompt(charity: PartnerRules, most: int) -> str:
    return "\n".join(
        [
            _("🤍 How many points for {charity}?").format(charity=escape(fmt.text(charity.name))),
            _("Send a whole number, up to {most}.").format(most=fmt.points(most)),
        ]
    )


def donation_confirm(program: Program, charity: PartnerRules, points: int) -> str:
    return _("🤍 Give {points} (worth {money}) to {charity}? This cannot be undone.").format(
        points=fmt.points(points),
        money=_worth(program, points),
        charity=escape(fmt.text(charity.name)),
    )


def donation_keyboard(slug: str, points: int, dialog: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                _button(
                    _("🤍 Donate"),
                    DonateCb(action="ok", partner=slug, points=points, dialog=dialog),
                ),
                _button(_("✖ Cancel"), DonateCb(action="no", partner=slug)),
            ]
        ]
    )


def donated(charity: PartnerRules, points: int) -> str:
    return _("✅ You gave {points} to {charity}.").format(
        points=fmt.points(points), charity=escape(fmt.text(charity.name))
    )


def donations_line(d: DonationFigures, program: Program) -> str:
    """A period's donations in the figures: how many, from how many members, their points
    and what the coalition pays for them."""
    return _n(
        "🤍 Donations: {n} from {donors} member, {points} worth {money}",
        "🤍 Donations: {n} from {donors} members, {points} worth {money}",
        d.donors,
    ).format(
        n=fmt.number(d.donations),
        donors=fmt.number(d.donors),
        points=fmt.points(d.points),
        money=_worth(program, d.points),
    )
