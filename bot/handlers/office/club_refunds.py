"""/club_refund for owners: a member's club payments, each refundable one with a button.

A Stars payment is refunded by Telegram (`refundStarPayment`) and recorded only once
Telegram accepted it (or said it was refunded already); when it was a payment of the Stars
subscription that renews the membership, that subscription is then cancelled too, so
Telegram does not charge again. Card and till payments are given back outside the bot (the
payment provider's dashboard, the partner's cash), then recorded here. Recording
(db/usecases/club_refunds.py) takes back what the payment bought (its time still ahead, its
welcome points) and tells the member; bot/views/club_refunds.py says so to the owner."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, Message
from sqlalchemy.ext.asyncio import AsyncSession

from bot.callbacks import ClubRefundCb
from bot.config import Settings
from bot.filters import IsOwner, PrivateChat
from bot.views import club_refunds as views
from bot.views.editing import edit_markup, edit_text
from db.queries.club_payments import RefundTarget, member_payments, refund_target
from db.rules.cards import normalize_card_number
from db.rules.errors import UnknownMember
from db.rules.program import Program
from db.usecases.club_refunds import authorise, record_refund
from db.usecases.members import find_by_card

log = logging.getLogger(__name__)
ALREADY_REFUNDED = "CHARGE_ALREADY_REFUNDED"  # Telegram's answer for a charge given back


async def club_refund(
    message: Message, command: CommandObject, session: AsyncSession, program: Program
) -> None:
    number = normalize_card_number(command.args or "")
    if number is None:
        await message.answer(views.usage())
        return
    member = await find_by_card(session, number)
    if member is None:
        raise UnknownMember()
    payments = await member_payments(session, member.id)
    text, markup = views.listing(program, member.first_name, number, payments)
    await message.answer(text, reply_markup=markup)


async def ask(
    query: CallbackQuery,
    callback_data: ClubRefundCb,
    session: AsyncSession,
    program: Program,
    settings: Settings,
    clock: Callable[[], datetime],
) -> None:
    await query.answer()
    if not isinstance(query.message, Message):
        return
    await authorise(session, query.from_user.id, settings.admin_ids)
    now = clock()
    target = await refund_target(session, callback_data.payment, now=now)
    if target is None:
        await query.message.answer(views.no_such_payment())
        return
    if target.payment.refunded:
        await query.message.answer(views.already(program, target.payment))
        return
    text, markup = views.ask(program, target, now)
    await query.message.answer(text, reply_markup=markup)


async def drop(query: CallbackQuery) -> None:
    await query.answer()
    if isinstance(query.message, Message):
        await edit_text(query.message, views.dropped())


async def refund(
    query: CallbackQuery,
    callback_data: ClubRefundCb,
    session: AsyncSession,
    program: Program,
    settings: Settings,
    bot: Bot,
    clock: Callable[[], datetime],
) -> None:
    """Refund a Stars payment through Telegram, then record it ("stars"); record a card or
    till payment given back outside the bot ("record")."""
    await query.answer()
    if not isinstance(query.message, Message):
        return
    # Before Telegram is asked to give anything back (and again as it is recorded).
    await authorise(session, query.from_user.id, settings.admin_ids)
    target = await refund_target(session, callback_data.payment, now=clock())
    if target is None:
        await query.message.answer(views.no_such_payment())
        return
    line = target.payment
    if line.refunded:
        await edit_markup(query.message, None)
        await query.message.answer(views.already(program, line))
        return
    stars_payment = line.method == "stars"
    if stars_payment != (callback_data.action == "stars"):  # a forged button
        await query.message.answer(views.forged())
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
            owners=settings.admin_ids,
            now=clock(),
            telegram=telegram,
        )
    except Exception:
        if telegram is None:
            raise  # nothing was given back: the errors router says nothing changed
        # Telegram gave the Stars back: never "nothing was changed" about that.
        log.exception("refund of club payment %s not recorded", line.id)
        await query.message.answer(views.not_recorded())
        return
    await edit_markup(query.message, None)
    await query.message.answer(views.done(program, done, telegram=telegram))
    if done.new and done.cancel_subscription and target.telegram_id is not None:
        await _cancel_renewal(query.message, bot, target.telegram_id, done.cancel_subscription)


async def _refund_stars(message: Message, target: RefundTarget, bot: Bot) -> str | None:
    """Ask Telegram to give the Stars back: "refunded", "already_refunded" (both are
    recorded), or None after telling the owner why nothing was done."""
    if target.telegram_id is None:
        await message.answer(views.deleted_cannot_refund())
        return None
    try:
        await bot.refund_star_payment(
            user_id=target.telegram_id,
            telegram_payment_charge_id=target.payment.charge_id,
        )
    except TelegramBadRequest as error:
        if ALREADY_REFUNDED in error.message:
            return "already_refunded"
        await message.answer(views.refused(error.message))
        return None
    except TelegramAPIError as error:
        log.warning("refundStarPayment for payment %s failed: %s", target.payment.id, error)
        await message.answer(views.unconfirmed())
        return None
    return "refunded"


async def _cancel_renewal(message: Message, bot: Bot, user_id: int, charge_id: str) -> None:
    """The refunded payment was of the Stars subscription that renews the membership:
    Telegram must not charge it again."""
    try:
        await bot.edit_user_star_subscription(
            user_id=user_id, telegram_payment_charge_id=charge_id, is_canceled=True
        )
    except TelegramAPIError as error:
        log.warning("editUserStarSubscription %s failed: %s", charge_id, error)
        await message.answer(views.not_cancelled(error.message))
        return
    await message.answer(views.cancelled())


def build() -> Router:
    router = Router(name="club refunds")
    router.message.filter(PrivateChat(), IsOwner())
    router.callback_query.filter(IsOwner())
    router.message.register(club_refund, Command("club_refund"))
    router.callback_query.register(ask, ClubRefundCb.filter(F.action == "ask"))
    router.callback_query.register(drop, ClubRefundCb.filter(F.action == "drop"))
    router.callback_query.register(refund, ClubRefundCb.filter())
    return router
