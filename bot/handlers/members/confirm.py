"""The member's answer to a redemption request. Only the member the request names can
answer it; answering twice, or too late, changes nothing."""

from __future__ import annotations

from aiogram import Router
from aiogram.types import CallbackQuery, Message
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from bot.callbacks import RedeemCb
from bot.metrics import POSTINGS
from bot.views import formatting as fmt
from bot.views.editing import edit_text
from db.rules.errors import DiscountChanged, NotEnoughPoints, RequestClosed
from db.rules.program import Program
from db.usecases.till import close_request, confirm_redemption


async def answer(
    query: CallbackQuery,
    callback_data: RedeemCb,
    session: AsyncSession,
    program: Program,
) -> None:
    """The outcome's messages to the cashier and the member are owed by the use case, in
    its transaction; here the member only sees their own button press answered."""
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
    except DiscountChanged:
        # Their tier or club membership changed since the till showed the discount: the sale
        # cannot be posted as shown. The request closes and the cashier is told to start again.
        await close_request(
            session,
            program,
            callback_data.request,
            status="cancelled",
            telegram_id=query.from_user.id,
            why="discount_changed",
        )
        text = _(
            "Your discount changed since the till asked (your tier or club membership "
            "changed), so the discount shown no longer applies. Nothing was charged; the "
            "cashier will ask again."
        )
        await query.answer(text, show_alert=True)
        if isinstance(query.message, Message):
            await edit_text(query.message, text)
        return
    except NotEnoughPoints:
        # Their points went elsewhere meanwhile: the request closes, and the cashier is told
        # why (not that the member said no).
        await close_request(
            session,
            program,
            callback_data.request,
            status="declined",
            telegram_id=query.from_user.id,
            why="not_enough",
        )
        text = _("Not enough points for this request any more. Nothing was charged.")
        await query.answer(text, show_alert=True)
        if isinstance(query.message, Message):
            await edit_text(query.message, text)
        return
    await query.answer()
    if callback_data.ok:
        POSTINGS.labels(result.kind).inc()
        text = _("✅ Confirmed: {points} paid {money}.").format(
            points=fmt.points(req.points), money=fmt.money(req.money, program.program.currency)
        )
    else:
        text = _("✖ Declined. Nothing was charged.")
    if isinstance(query.message, Message):
        await edit_text(query.message, text)


def build() -> Router:
    router = Router(name="confirm")
    router.callback_query.register(answer, RedeemCb.filter())
    return router
