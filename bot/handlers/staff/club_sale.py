"""A month of the club sold at the till for money: the member's panel offers it (the price
in the program file), the cashier takes the money and presses Taken, and the month is
recorded once per panel (db/usecases/club_till.py, which checks the role, the price and the
card again). The cashier's receipt and the member's news are owed with the payment."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from aiogram import F, Router
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from bot.callbacks import ClubSaleCb
from bot.filters import IsStaff
from bot.views import club_till as views
from bot.views.editing import edit_markup, edit_text
from db.queries.club import membership
from db.rules import club as club_rules
from db.rules.errors import ClubPriceChanged
from db.rules.program import Program
from db.usecases.club_till import sell_month, till_price
from db.usecases.outbox import StaffChat
from db.usecases.staff import StaffInfo


async def _member_of_panel(query: CallbackQuery, state: FSMContext, dialog: str) -> int | None:
    """The member of the panel the button belongs to; None (the cashier is told) when that
    panel is no longer the cashier's open one."""
    data = await state.get_data()
    if data.get("dialog") != dialog or "member_id" not in data:
        await query.answer(_("This sale is closed. Scan the card again."), show_alert=True)
        return None
    return int(data["member_id"])


async def _price_changed(
    query: CallbackQuery, program: Program, shown: Decimal, price: Decimal, dialog: str
) -> None:
    """The price in the program file is not the one shown: say the new one, with a button
    that offers the month at it."""
    await query.answer()
    if isinstance(query.message, Message):
        await query.message.answer(
            views.price_changed(program, shown, price),
            reply_markup=InlineKeyboardMarkup(
                inline_keyboard=[views.offer_button(program, dialog, price, member=False)]
            ),
        )


async def offer(
    query: CallbackQuery,
    callback_data: ClubSaleCb,
    session: AsyncSession,
    state: FSMContext,
    program: Program,
) -> None:
    """The panel's button: ask the cashier to take the money, saying what it buys."""
    member_id = await _member_of_panel(query, state, callback_data.dialog)
    if member_id is None:
        return
    price, shown = till_price(program), Decimal(callback_data.cents) / 100
    if shown != price:
        await _price_changed(query, program, shown, price, callback_data.dialog)
        return
    now = datetime.now(UTC)
    current = await membership(session, member_id)
    _, until = club_rules.period(current.ends_at if current else None, now)
    await query.answer()
    if isinstance(query.message, Message):
        await query.message.answer(
            views.take_money(program, price, until),
            reply_markup=views.take_money_markup(callback_data.dialog, price),
        )


async def taken(
    query: CallbackQuery,
    callback_data: ClubSaleCb,
    session: AsyncSession,
    state: FSMContext,
    staff: StaffInfo,
    program: Program,
    i18n: I18n,
    secret: bytes,
) -> None:
    """The money is taken: record the month (once for this panel, however often pressed)."""
    member_id = await _member_of_panel(query, state, callback_data.dialog)
    if member_id is None or not isinstance(query.message, Message):
        return
    shown = Decimal(callback_data.cents) / 100
    try:
        paid = await sell_month(
            session,
            program,
            staff,
            member_id=member_id,
            panel=callback_data.dialog,
            price=shown,
            secret=secret,
            reply=StaffChat(query.message.chat.id, i18n.current_locale),
        )
    except ClubPriceChanged as changed:
        await _price_changed(query, program, shown, changed.params["price"], callback_data.dialog)
        return
    if not paid.new:
        await query.answer(views.already_recorded(program, paid.ends_at), show_alert=True)
        return
    await query.answer()  # the receipt follows: owed with the payment
    await edit_markup(query.message, None)


async def drop(query: CallbackQuery, callback_data: ClubSaleCb) -> None:
    await query.answer()
    if isinstance(query.message, Message):
        await edit_text(query.message, _("Not recorded: no month of the club was sold."))


def build() -> Router:
    router = Router(name="club at the till")
    router.callback_query.filter(IsStaff("club_sale"))
    router.callback_query.register(offer, ClubSaleCb.filter(F.action == "offer"))
    router.callback_query.register(taken, ClubSaleCb.filter(F.action == "taken"))
    router.callback_query.register(drop, ClubSaleCb.filter(F.action == "drop"))
    return router
