"""A month of the club sold at the till for money: the member's panel offers it (the price
in the program file), the cashier takes the money and presses Taken, and the month is
recorded once per panel (db/usecases/club_till.py, which checks the role, the price and the
card again). The cashier's receipt and the member's news are owed with the payment.

Once the panel's month is recorded, its offer pressed again does not ask for money again,
and Cancel does not say "Not recorded": both look the panel's charge up first (a second
month is a new panel: the card scanned again). Taken and Cancel of one panel wait for each
other, so Cancel pressed right after Taken reads what Taken did."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from functools import partial

from aiogram import F, Router
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from bot.callbacks import ClubSaleCb
from bot.filters import IsStaff
from bot.locks import KeyedLocks
from bot.views import club_till as views
from bot.views.editing import edit_markup, edit_text
from db.queries.club import membership
from db.queries.club_payments import PaymentLine, payment_by_charge
from db.rules import club as club_rules
from db.rules.errors import ClubPriceChanged
from db.rules.program import Program
from db.usecases.club_till import charge_id, sell_month, till_price
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


def _shown(program: Program, callback_data: ClubSaleCb) -> Decimal:
    """The price the button showed, from its smallest units in the program's currency."""
    return club_rules.from_minor(callback_data.minor, program.program.currency)


async def _sold(session: AsyncSession, staff: StaffInfo, dialog: str) -> PaymentLine | None:
    """The month recorded from this panel, if one was."""
    return await payment_by_charge(session, charge_id(staff.partner_id, dialog))


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
    staff: StaffInfo,
    program: Program,
) -> None:
    """The panel's button: ask the cashier to take the money, saying what it buys (not
    when this panel's month is recorded already: that money was taken)."""
    member_id = await _member_of_panel(query, state, callback_data.dialog)
    if member_id is None:
        return
    sold = await _sold(session, staff, callback_data.dialog)
    if sold is not None:
        await query.answer(views.sold_from_panel(program, sold.period_until), show_alert=True)
        return
    price, shown = till_price(program), _shown(program, callback_data)
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
            reply_markup=views.take_money_markup(program, callback_data.dialog, price),
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
    locks: KeyedLocks,
) -> None:
    """The money is taken: record the month (once for this panel, however often pressed)."""
    member_id = await _member_of_panel(query, state, callback_data.dialog)
    if member_id is None or not isinstance(query.message, Message):
        return
    shown = _shown(program, callback_data)
    try:
        async with locks.hold(charge_id(staff.partner_id, callback_data.dialog)):
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


async def drop(
    query: CallbackQuery,
    callback_data: ClubSaleCb,
    session: AsyncSession,
    staff: StaffInfo,
    program: Program,
    locks: KeyedLocks,
) -> None:
    """Cancel: nothing is recorded, unless Taken recorded this panel's month already."""
    async with locks.hold(charge_id(staff.partner_id, callback_data.dialog)):
        sold = await _sold(session, staff, callback_data.dialog)
    await query.answer()
    if isinstance(query.message, Message):
        await edit_text(
            query.message,
            views.not_sold()
            if sold is None
            else views.recorded_not_cancelled(program, sold.period_until),
        )


def build() -> Router:
    router = Router(name="club at the till")
    router.callback_query.filter(IsStaff("club_sale"))
    locks = KeyedLocks()  # per panel: its Taken and Cancel, one after the other
    router.callback_query.register(offer, ClubSaleCb.filter(F.action == "offer"))
    router.callback_query.register(
        partial(taken, locks=locks), ClubSaleCb.filter(F.action == "taken")
    )
    router.callback_query.register(
        partial(drop, locks=locks), ClubSaleCb.filter(F.action == "drop")
    )
    return router
