"""/club_refund for owners: a member's club payments, each refundable one with a button.

A Stars payment is refunded by Telegram (`refundStarPayment`) and recorded only once
Telegram accepted it (or said it was refunded already); a renewing subscription is then
cancelled too, so Telegram does not charge again. Card and till payments are given back
outside the bot (the payment provider's dashboard, the partner's cash), then recorded here.
Recording (db/usecases/club_refunds.py) ends the membership and tells the member."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from html import escape

from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from bot.callbacks import ClubRefundCb
from bot.config import Settings
from bot.filters import IsOwner, PrivateChat
from bot.views import formatting as fmt
from bot.views.club_lapses import stars
from bot.views.editing import edit_markup, edit_text
from db.queries.club_payments import PaymentLine, RefundTarget, member_payments, refund_target
from db.rules.cards import format_card_number, normalize_card_number
from db.rules.errors import UnknownMember
from db.rules.program import Program
from db.usecases.club_refunds import ClubRefund, authorise, record_refund
from db.usecases.members import find_by_card

log = logging.getLogger(__name__)
USAGE = "/club_refund 4507 1667 1208"
ALREADY_REFUNDED = "CHARGE_ALREADY_REFUNDED"  # Telegram's answer for a charge given back


def _amount(line: PaymentLine) -> str:
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
        _amount(line),
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


async def club_refund(
    message: Message, command: CommandObject, session: AsyncSession, program: Program
) -> None:
    number = normalize_card_number(command.args or "")
    if number is None:
        await message.answer(
            _("Usage: /club_refund CARD-NUMBER, like {example}").format(example=USAGE)
        )
        return
    member = await find_by_card(session, number)
    if member is None:
        raise UnknownMember()
    payments = await member_payments(session, member.id)
    who = _("{name} (card {card})").format(
        name=escape(member.first_name) or "—", card=format_card_number(number)
    )
    if not payments:
        await message.answer(_("{who} has no club payments.").format(who=who))
        return
    lines = [_("👑 Club payments of {who}, newest first:").format(who=who)]
    lines += [_line(program, p) for p in payments]
    refundable = [p for p in payments if not p.refunded]
    if refundable:
        lines.append(_("Choose the payment to refund:"))
    else:
        lines.append(_("All of them are refunded already."))
    await message.answer(
        "\n".join(lines),
        reply_markup=_buttons(
            [
                [
                    (
                        _("↩️ No. {number}: {amount}").format(number=p.id, amount=_amount(p)),
                        ClubRefundCb(action="ask", payment=p.id),
                    )
                ]
                for p in refundable
            ]
        )
        if refundable
        else None,
    )


def _already(program: Program, line: PaymentLine) -> str:
    assert line.refunded_at is not None
    return _("No. {number} was already refunded on {day}. Nothing more was done.").format(
        number=line.id, day=_day(program, line.refunded_at)
    )


def _ask(program: Program, target: RefundTarget) -> tuple[str, InlineKeyboardMarkup]:
    """What refunding this payment means, with the button that does it."""
    line = target.payment
    paid = _("No. {number}: {amount} paid on {day} by {name}.").format(
        number=line.id,
        amount=_amount(line),
        day=_day(program, line.created_at),
        name=escape(target.first_name) or "—",
    )
    ends = _("Their club membership ends now, and they are told.")
    if line.method == "stars":
        text = _("Telegram gives the Stars back to them.")
        button = (
            _("↩️ Refund {amount}").format(amount=_amount(line)),
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
    markup = _buttons([[button], [(_("✖ Cancel"), ClubRefundCb(action="drop", payment=line.id))]])
    return "\n".join([paid, text, ends]), markup


def _done(program: Program, done: ClubRefund, *, telegram: str | None) -> str:
    line = done.payment
    if not done.new:
        return _already(program, line)
    if telegram == "already_refunded":
        head = _(
            "Telegram says No. {number} was refunded already: it is recorded as refunded now."
        )
    elif telegram == "refunded":
        head = _("✅ No. {number} is refunded: Telegram gives {amount} back.")
    else:
        head = _("✅ No. {number} is recorded as refunded ({amount}).")
    lines = [head.format(number=line.id, amount=_amount(line))]
    lines.append(
        _("Their club membership has ended, and they are told.")
        if done.told
        else _("Their club membership has ended (they deleted their account: nobody to tell).")
    )
    return "\n".join(lines)


async def ask(
    query: CallbackQuery,
    callback_data: ClubRefundCb,
    session: AsyncSession,
    program: Program,
    settings: Settings,
) -> None:
    await query.answer()
    if not isinstance(query.message, Message):
        return
    authorise(query.from_user.id in settings.admin_ids)
    target = await refund_target(session, callback_data.payment)
    if target is None:
        await query.message.answer(_("No such payment."))
        return
    if target.payment.refunded:
        await query.message.answer(_already(program, target.payment))
        return
    text, markup = _ask(program, target)
    await query.message.answer(text, reply_markup=markup)


async def drop(query: CallbackQuery) -> None:
    await query.answer()
    if isinstance(query.message, Message):
        await edit_text(query.message, _("Nothing was refunded."))


async def refund(
    query: CallbackQuery,
    callback_data: ClubRefundCb,
    session: AsyncSession,
    program: Program,
    settings: Settings,
    bot: Bot,
) -> None:
    """Refund a Stars payment through Telegram, then record it ("stars"); record a card or
    till payment given back outside the bot ("record")."""
    await query.answer()
    if not isinstance(query.message, Message):
        return
    owner = query.from_user.id in settings.admin_ids
    authorise(owner)  # before Telegram is asked to give anything back
    target = await refund_target(session, callback_data.payment)
    if target is None:
        await query.message.answer(_("No such payment."))
        return
    line = target.payment
    if line.refunded:
        await edit_markup(query.message, None)
        await query.message.answer(_already(program, line))
        return
    stars_payment = line.method == "stars"
    if stars_payment != (callback_data.action == "stars"):  # a forged button
        await query.message.answer(_("That button does not fit this payment. Nothing was done."))
        return
    telegram = None
    if stars_payment:
        telegram = await _refund_stars(query.message, target, bot)
        if telegram is None:
            return
    try:
        done = await record_refund(
            session,
            line.id,
            actor=query.from_user.id,
            owner=owner,
            now=datetime.now(UTC),
            telegram=telegram,
        )
    except Exception:
        if telegram is None:
            raise  # nothing was given back: the errors router says nothing changed
        # Telegram gave the Stars back: never "nothing was changed" about that.
        log.exception("refund of club payment %s not recorded", line.id)
        await query.message.answer(
            _(
                "Telegram refunded the Stars, but recording it failed. Press the button again: "
                "Telegram then says it is refunded already, and it is recorded."
            )
        )
        return
    await edit_markup(query.message, None)
    await query.message.answer(_done(program, done, telegram=telegram))
    if done.new and done.cancel_subscription and target.telegram_id is not None:
        await _cancel_renewal(query.message, bot, target.telegram_id, done.cancel_subscription)


async def _refund_stars(message: Message, target: RefundTarget, bot: Bot) -> str | None:
    """Ask Telegram to give the Stars back: "refunded", "already_refunded" (both are
    recorded), or None after telling the owner why nothing was done."""
    if target.telegram_id is None:
        await message.answer(
            _(
                "This member deleted their account, so Telegram cannot be asked to refund "
                "them any more. Nothing was done."
            )
        )
        return None
    try:
        await bot.refund_star_payment(
            user_id=target.telegram_id,
            telegram_payment_charge_id=target.payment.charge_id,
        )
    except TelegramBadRequest as error:
        if ALREADY_REFUNDED in error.message:
            return "already_refunded"
        await message.answer(
            _("Telegram refused the refund: {reason}. Nothing was recorded.").format(
                reason=escape(error.message)
            )
        )
        return None
    except TelegramAPIError as error:
        log.warning("refundStarPayment for payment %s failed: %s", target.payment.id, error)
        await message.answer(
            _(
                "Telegram did not confirm the refund, so nothing was recorded. Try again in a "
                "moment: a refund Telegram did make is then recorded."
            )
        )
        return None
    return "refunded"


async def _cancel_renewal(message: Message, bot: Bot, user_id: int, charge_id: str) -> None:
    """The membership ended: Telegram must not charge the subscription again."""
    try:
        await bot.edit_user_star_subscription(
            user_id=user_id, telegram_payment_charge_id=charge_id, is_canceled=True
        )
    except TelegramAPIError as error:
        log.warning("editUserStarSubscription %s failed: %s", charge_id, error)
        await message.answer(
            _(
                "Telegram did not cancel their Stars subscription ({reason}): it may charge "
                "them again at its renewal, which would start a new membership."
            ).format(reason=escape(error.message))
        )
        return
    await message.answer(_("Their Stars subscription is cancelled: Telegram will not renew it."))


def build() -> Router:
    router = Router(name="club refunds")
    router.message.filter(PrivateChat(), IsOwner())
    router.callback_query.filter(IsOwner())
    router.message.register(club_refund, Command("club_refund"))
    router.callback_query.register(ask, ClubRefundCb.filter(F.action == "ask"))
    router.callback_query.register(drop, ClubRefundCb.filter(F.action == "drop"))
    router.callback_query.register(refund, ClubRefundCb.filter())
    return router
