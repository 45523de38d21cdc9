"""The owner's /club_refund screens: a member's club payments, what refunding one does
(asked before it is done), and what it did. bot/handlers/office/club_refunds.py shows
them; the member's own news of a refund is bot/views/club_lapses.py's."""

from __future__ import annotations

from datetime import datetime
from html import escape

from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup
from aiogram.utils.i18n import gettext as _

from bot.callbacks import ClubRefundCb
from bot.views import formatting as fmt
from bot.views.club_lapses import stars
from db.queries.club_payments import PaymentLine, RefundTarget
from db.rules.cards import format_card_number
from db.rules.program import Program
from db.usecases.club_refunds import ClubRefund

USAGE = "/club_refund 4507 1667 1208"


def amount(line: PaymentLine) -> str:
    return stars(line.amount) if line.method == "stars" else fmt.money(line.amount, line.currency)


def _day(program: Program, moment: datetime) -> str:
    return fmt.day(moment.astimezone(program.program.zone))


def _method(program: Program, line: PaymentLine) -> str:
    if line.method == "stars":
        return _("Telegram Stars")
    if line.method == "card":
        return _("card")
    return _("till of {partner}").format(partner=fmt.partner_html(program, line.partner or ""))


def _line(program: Program, line: PaymentLine) -> str:
    parts = [
        _("No. {number}").format(number=line.id),
        _day(program, line.created_at),
        _method(program, line),
        amount(line),
        _("until {day}").format(day=_day(program, line.period_until)),
    ]
    if line.refunded_at is not None:
        parts.append(_("refunded {day}").format(day=_day(program, line.refunded_at)))
    return " · ".join(parts)


def _buttons(rows: list[list[tuple[str, ClubRefundCb]]]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [InlineKeyboardButton(text=text, callback_data=data.pack()) for text, data in row]
            for row in rows
        ]
    )


def usage() -> str:
    return _("Usage: /club_refund CARD-NUMBER, like {example}").format(example=USAGE)


def listing(
    program: Program, first_name: str, card_number: str, payments: list[PaymentLine]
) -> tuple[str, InlineKeyboardMarkup | None]:
    """A member's club payments, newest first, a button for each one not refunded."""
    who = _("{name} (card {card})").format(
        name=escape(first_name) or "—", card=format_card_number(card_number)
    )
    if not payments:
        return _("{who} has no club payments.").format(who=who), None
    lines = [_("👑 Club payments of {who}, newest first:").format(who=who)]
    lines += [_line(program, p) for p in payments]
    refundable = [p for p in payments if not p.refunded]
    if not refundable:
        lines.append(_("All of them are refunded already."))
        return "\n".join(lines), None
    lines.append(_("Choose the payment to refund:"))
    return "\n".join(lines), _buttons(
        [
            [
                (
                    _("↩️ No. {number}: {amount}").format(number=p.id, amount=amount(p)),
                    ClubRefundCb(action="ask", payment=p.id),
                )
            ]
            for p in refundable
        ]
    )


def no_such_payment() -> str:
    return _("No such payment.")


def already(program: Program, line: PaymentLine) -> str:
    assert line.refunded_at is not None
    return _("No. {number} was already refunded on {day}. Nothing more was done.").format(
        number=line.id, day=_day(program, line.refunded_at)
    )


def _membership_ahead(program: Program, target: RefundTarget, now: datetime) -> str:
    """What refunding the payment now would do to the membership."""
    was, after = target.ends_at, target.ends_after(now)
    if was is None or after is None or was <= now:
        return _("Their club membership has ended already: it stays so.")
    if after >= was:
        return _(
            "The time this payment bought is over, so their club membership stays as it is "
            "(until {day})."
        ).format(day=_day(program, was))
    if after <= now:
        return _("Their club membership ends now, and they are told.")
    return _(
        "Their club membership loses the time this payment bought that is still ahead: it "
        "ends on {day} instead of {was}, and they are told."
    ).format(day=_day(program, after), was=_day(program, was))


def _points_ahead(target: RefundTarget) -> str | None:
    welcome = target.payment.welcome_points
    if not welcome:
        return None
    back = target.points_back()
    if back == welcome:
        return _(
            "The welcome gift paid with it ({points}) is taken back from their wallet."
        ).format(points=fmt.points(welcome))
    return _(
        "Of the welcome gift paid with it ({welcome}), only what their wallet holds is taken "
        "back: {points} now (points spent stay spent)."
    ).format(welcome=fmt.points(welcome), points=fmt.points(back))


def ask(program: Program, target: RefundTarget, now: datetime) -> tuple[str, InlineKeyboardMarkup]:
    """What refunding this payment means, with the button that does it."""
    line = target.payment
    paid = _("No. {number}: {amount} paid on {day} by {name}.").format(
        number=line.id,
        amount=amount(line),
        day=_day(program, line.created_at),
        name=escape(target.first_name) or "—",
    )
    if line.method == "stars":
        text = _("Telegram gives the Stars back to them.")
        button = (
            _("↩️ Refund {amount}").format(amount=amount(line)),
            ClubRefundCb(action="stars", payment=line.id),
        )
    else:
        if line.method == "card":
            text = _(
                "Telegram cannot refund a card payment: give the money back in your payment "
                "provider's dashboard (its charge: {charge}), then record it here."
            ).format(charge=escape(line.provider_charge_id or "—"))
        else:
            text = _(
                "It was paid in cash at {partner}: give the money back there, then record it "
                "here. Settlement takes it off the club money {partner} collected."
            ).format(partner=fmt.partner_html(program, line.partner or ""))
        button = (_("✅ Record as refunded"), ClubRefundCb(action="record", payment=line.id))
    lines = [paid, text, _membership_ahead(program, target, now)]
    if target.renewing_subscription is not None:
        lines.append(
            _(
                "Their Telegram Stars subscription, which this payment was of, is cancelled "
                "too, so Telegram does not charge it again."
            )
        )
    elif target.subscription:
        lines.append(_("Their Telegram Stars subscription, which this payment was of, ends."))
    if points := _points_ahead(target):
        lines.append(points)
    markup = _buttons([[button], [(_("✖ Cancel"), ClubRefundCb(action="drop", payment=line.id))]])
    return "\n".join(lines), markup


def dropped() -> str:
    return _("Nothing was refunded.")


def forged() -> str:
    return _("That button does not fit this payment. Nothing was done.")


def _membership_done(program: Program, done: ClubRefund) -> str:
    assert done.ends_at is not None
    if not done.told:  # a deleted account: its membership ended with it
        return _("Their club membership has ended (they deleted their account: nobody to tell).")
    if done.shortened and done.ended:
        return _("Their club membership has ended, and they are told.")
    if done.shortened:
        return _(
            "Their club membership now ends on {day} (the time this payment bought that was "
            "still ahead is taken off), and they are told."
        ).format(day=_day(program, done.ends_at))
    if done.ended:
        return _("Their club membership had ended already; they are told of the refund.")
    return _(
        "The time this payment bought was over: their club membership stays until {day}; "
        "they are told of the refund."
    ).format(day=_day(program, done.ends_at))


def done(program: Program, done: ClubRefund, *, telegram: str | None) -> str:
    """What the refund did: the money, the membership, the welcome points."""
    line = done.payment
    if not done.new:
        return already(program, line)
    if telegram == "already_refunded":
        head = _(
            "Telegram says No. {number} was refunded already: it is recorded as refunded now."
        )
    elif telegram == "refunded":
        head = _("✅ No. {number} is refunded: Telegram gives {amount} back.")
    else:
        head = _("✅ No. {number} is recorded as refunded ({amount}).")
    lines = [head.format(number=line.id, amount=amount(line)), _membership_done(program, done)]
    if line.welcome_points:
        lines.append(
            _(
                "Welcome gift paid with it: {welcome}; taken back from their wallet: {points}."
            ).format(points=fmt.points(done.points_back), welcome=fmt.points(line.welcome_points))
        )
    return "\n".join(lines)


# ------------------------------------------------------------------ Telegram's answers


def deleted_cannot_refund() -> str:
    return _(
        "This member deleted their account, so Telegram cannot be asked to refund them any "
        "more. Nothing was done."
    )


def refused(reason: str) -> str:
    return _("Telegram refused the refund: {reason}. Nothing was recorded.").format(
        reason=escape(reason)
    )


def unconfirmed() -> str:
    return _(
        "Telegram did not confirm the refund, so nothing was recorded. Try again in a moment: "
        "a refund Telegram did make is then recorded."
    )


def not_recorded() -> str:
    return _(
        "Telegram refunded the Stars, but recording it failed. Press the button again: "
        "Telegram then says it is refunded already, and it is recorded."
    )


def not_cancelled(reason: str) -> str:
    return _(
        "Telegram did not cancel their Stars subscription ({reason}): it may charge them again "
        "at its renewal."
    ).format(reason=escape(reason))


def cancelled() -> str:
    return _("Their Stars subscription is cancelled: Telegram will not renew it.")
