"""The member's answer to a redemption request. Only the member the request names can
answer it; answering twice, or too late, changes nothing."""

from __future__ import annotations

from aiogram import Bot, Router
from aiogram.types import CallbackQuery, Message
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from bot import formatting as fmt
from bot import tillnotify
from bot.callbacks import RedeemCb
from bot.editing import edit_text
from bot.metrics import POSTINGS
from bot.notify import Notifier
from db.errors import NotEnoughPoints, RequestClosed
from db.program import Program
from db.till import close_request, confirm_redemption


async def answer(
    query: CallbackQuery,
    callback_data: RedeemCb,
    bot: Bot,
    session: AsyncSession,
    program: Program,
    i18n: I18n,
    notifier: Notifier,
) -> None:
    try:
        if callback_data.ok:
            req, result = await confirm_redemption(
                session, program, callback_data.request, query.from_user.id
            )
        else:
            req = await close_request(
                session,
                program,
                callback_data.request,
                status="declined",
                telegram_id=query.from_user.id,
            )
    except RequestClosed:
        await query.answer(_("This request is already closed."), show_alert=True)
        return
    except NotEnoughPoints:
        req = await close_request(
            session,
            program,
            callback_data.request,
            status="declined",
            telegram_id=query.from_user.id,
        )
        await query.answer(_("Not enough points."), show_alert=True)
        await tillnotify.closed(
            bot,
            i18n,
            program,
            req,
            "declined",
            req.staff_language,
        )
        return
    await query.answer()
    if callback_data.ok:
        if isinstance(query.message, Message):
            await edit_text(
                query.message,
                _("✅ Confirmed: {points} paid {money}.").format(
                    points=fmt.points(req.points),
                    money=fmt.money(req.money, program.program.currency),
                ),
            )
        POSTINGS.labels(result.kind).inc()
        await tillnotify.confirmed(bot, i18n, program, req, result, req.staff_language)
        partner = program.partner(result.partner)
        await notifier.purchase(result, partner.name if partner else result.partner)
    else:
        if isinstance(query.message, Message):
            await edit_text(query.message, _("✖ Declined. Nothing was charged."))
        await tillnotify.closed(bot, i18n, program, req, "declined", req.staff_language)


def build() -> Router:
    router = Router(name="confirm")
    router.callback_query.register(answer, RedeemCb.filter())
    return router
