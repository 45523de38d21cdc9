"""Telling the cashier and the member how a redemption request ended."""

from __future__ import annotations

import logging

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _

from bot import formatting as fmt
from bot.callbacks import EarnOnlyCb
from db.program import Program
from db.purchases import PurchaseResult
from db.till import RequestInfo

log = logging.getLogger(__name__)


async def _edit(bot: Bot, chat_id: int | None, message_id: int | None, text: str) -> None:
    if chat_id is None or message_id is None:
        return
    try:
        await bot.edit_message_text(text=text, chat_id=chat_id, message_id=message_id)
    except TelegramAPIError:
        log.info("could not edit message %s in %s", message_id, chat_id, exc_info=True)


def earn_only_markup(req: RequestInfo, currency: str) -> InlineKeyboardMarkup:
    """One button: post the same sale (amount, receipt) without points."""
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=_("🧾 Post {amount} without points").format(
                        amount=fmt.money(req.amount, currency)
                    ),
                    callback_data=EarnOnlyCb(request=req.public_id).pack(),
                )
            ]
        ]
    )


def cannot_confirm() -> str:
    return _(
        "🚫 The member cannot confirm in Telegram (they blocked the bot), so points cannot "
        "pay. Nothing was charged."
    )


async def _tell_cashier(
    bot: Bot, req: RequestInfo, text: str, markup: InlineKeyboardMarkup | None = None
) -> None:
    try:
        await bot.send_message(req.staff_chat_id, text, reply_markup=markup)
    except TelegramAPIError:
        log.warning("could not tell the cashier in %s", req.staff_chat_id, exc_info=True)


async def confirmed(
    bot: Bot,
    i18n: I18n,
    program: Program,
    req: RequestInfo,
    result: PurchaseResult,
    cashier_language: str,
) -> None:
    currency = program.program.currency
    with i18n.use_locale(cashier_language):
        text = "\n".join(
            [
                _("✅ The member confirmed: {points} paid {money}.").format(
                    points=fmt.points(result.points_redeemed),
                    money=fmt.money(result.amount - result.paid, currency),
                ),
                _("💵 The customer pays {money}.").format(money=fmt.money(result.paid, currency)),
                _("+{points} earned. The member's balance: {balance}.").format(
                    points=fmt.points(result.points_earned), balance=fmt.points(result.balance)
                ),
            ]
        )
    await _edit(bot, req.staff_chat_id, req.staff_message_id, text)
    await _tell_cashier(bot, req, text)


async def closed(
    bot: Bot, i18n: I18n, program: Program, req: RequestInfo, status: str, cashier_language: str
) -> None:
    """Declined by the member or expired unanswered: nothing was charged; say so to both,
    and offer the cashier to finish the same sale without points."""
    with i18n.use_locale(cashier_language):
        text = (
            _("✖ The member declined. Nothing was charged.")
            if status == "declined"
            else _("⌛ The member did not answer in time. Nothing was charged.")
        )
        markup = earn_only_markup(req, program.program.currency)
    await _edit(bot, req.staff_chat_id, req.staff_message_id, text)
    await _tell_cashier(bot, req, text, markup)
    if status == "expired":
        with i18n.use_locale(req.member_language):
            member_text = _("⌛ This request expired. Nothing was charged.")
        await _edit(bot, req.member_telegram_id, req.member_message_id, member_text)
