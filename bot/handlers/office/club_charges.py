"""/club_refund TELEGRAM-ID CHARGE-ID STARS, for owners: refund a Telegram Stars payment the
bot did not record as a club payment (the database failed when it arrived, or it bought
nothing and Telegram refused to refund it then). The owners' message about such a payment
gives the command, ready to copy; the STARS it names are what the record says was refunded.

Telegram refunds the charge (`refundStarPayment`) first; the refund is then recorded among
the payments that bought nothing (db/usecases/club_support.py), once per charge, and the
payer is told. A charge recorded as a club payment is refunded from its member's list
(/club_refund CARD-NUMBER, bot/handlers/office/club_refunds.py), which ends what it bought:
this refuses it."""

from __future__ import annotations

import logging
from decimal import Decimal
from functools import partial
from typing import Any

from aiogram import Bot, Router
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest
from aiogram.filters import Command, CommandObject
from aiogram.types import Message
from aiogram.utils.i18n import I18n
from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import Settings
from bot.filters import IsOwner, PrivateChat
from bot.i18n import DEFAULT_LANGUAGE
from bot.retry import retry_database
from bot.views import club_charges as views
from db.queries.club_payments import payment_by_charge
from db.rules.cards import normalize_card_number
from db.rules.errors import NotStaff
from db.usecases.club_support import unclaimed_payment
from db.usecases.members import find_by_telegram

log = logging.getLogger(__name__)
STARS = "XTR"
ALREADY_REFUNDED = "CHARGE_ALREADY_REFUNDED"  # Telegram's answer for a charge given back
MAX_STARS = 100_000  # a Telegram Stars payment is at most this many (an invoice's limit)


async def _charge_form(message: Message, command: CommandObject) -> dict[str, Any] | bool:
    """The command's arguments name a Telegram id and a charge (not a card number, which
    bot/handlers/office/club_refunds.py takes): `charge_args`, the words, for the handler."""
    args = (command.args or "").split()
    if len(args) < 2 or normalize_card_number(command.args or "") is not None:
        return False
    if not args[0].isdigit() or all(arg.isdigit() for arg in args):
        return False  # a card number mistyped is the card list's to refuse
    return {"charge_args": args}


async def refund_charge(
    message: Message,
    charge_args: list[str],
    session: AsyncSession,
    settings: Settings,
    bot: Bot,
    i18n: I18n,
) -> None:
    assert message.from_user is not None
    if message.from_user.id not in settings.admin_ids:  # again, as every owner action
        raise NotStaff(action="club_refund")
    if len(charge_args) != 3 or not charge_args[2].isdigit():
        await message.answer(views.usage())
        return
    telegram_id, charge, stars = int(charge_args[0]), charge_args[1], int(charge_args[2])
    if not 0 < stars <= MAX_STARS:
        await message.answer(views.usage())
        return
    recorded = await payment_by_charge(session, charge)
    if recorded is not None:
        await message.answer(views.recorded_payment(recorded.id))
        return
    try:
        await bot.refund_star_payment(user_id=telegram_id, telegram_payment_charge_id=charge)
        already = False
    except TelegramBadRequest as error:
        if ALREADY_REFUNDED not in error.message:
            await message.answer(views.refused(error.message))
            return
        already = True
    except TelegramAPIError as error:
        log.warning("refundStarPayment of charge %s failed: %s", charge, error)
        await message.answer(views.not_confirmed())
        return
    payer = None
    try:
        new = await retry_database(
            partial(
                unclaimed_payment,
                session,
                telegram_id=telegram_id,
                name="",
                charge_id=charge,
                provider_charge_id=None,
                method="stars",
                currency=STARS,
                amount=Decimal(stars),
                refunded=True,
                reason="unrecorded",
                owners=settings.admin_ids,
            ),
            f"recording the refund of charge {charge}",
        )
        payer = await find_by_telegram(session, telegram_id)
    except Exception:  # Telegram gave the Stars back: never "nothing was changed"
        log.exception("refund of unrecorded charge %s not recorded", charge)
        await message.answer(views.refunded_not_recorded(telegram_id, stars))
        return
    lines = [views.refunded(telegram_id, stars, charge, already=already, new=new)]
    if not already:  # Telegram gave it back now: the payer hears it from the bot too
        language = payer.language if payer is not None else DEFAULT_LANGUAGE
        with i18n.use_locale(language):
            news = views.refunded_to_payer(stars)
        try:
            await bot.send_message(telegram_id, news)
            told = True
        except TelegramAPIError as error:
            log.warning("could not tell %s of their refund: %s", telegram_id, error)
            told = False
        lines.append(views.payer_told(told))
    await message.answer("\n".join(lines))


def build() -> Router:
    """Before the card list's router (club_refunds): this takes /club_refund with a
    Telegram id and a charge, that one a card number."""
    router = Router(name="club charges")
    router.message.filter(PrivateChat(), IsOwner())
    router.message.register(refund_charge, Command("club_refund"), _charge_form)
    return router
