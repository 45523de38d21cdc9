"""/donate: give points to one of the program's charities (db/usecases/donations.py)."""

from __future__ import annotations

import secrets

from aiogram import F, Router
from aiogram.filters import Command, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Message
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from bot.callbacks import DonateCb
from bot.filters import HasText, IsCommand, IsMember, PrivateChat, TextIs
from bot.views import formatting as fmt
from bot.views import gifts as views
from bot.views import keyboards
from bot.views.editing import edit_text
from db.rules.errors import InvalidPoints
from db.rules.gifts import NotACharity, parse_points
from db.rules.program import PartnerRules, Program
from db.usecases.donations import donate, donation_key
from db.usecases.members import MemberInfo


class DonateDialog(StatesGroup):
    points = State()


def _charity(program: Program, slug: str) -> PartnerRules:
    rules = program.partner(slug)
    if rules is None or not rules.charity:
        raise NotACharity(partner=slug)
    return rules


async def donate_command(message: Message, state: FSMContext, program: Program) -> None:
    await state.clear()
    if not program.charities:
        await message.answer(_("No charity takes donations in this program yet."))
        return
    await message.answer(views.charities(program), reply_markup=views.charities_keyboard(program))


async def pick(
    query: CallbackQuery,
    callback_data: DonateCb,
    state: FSMContext,
    program: Program,
    member: MemberInfo,
) -> None:
    charity = _charity(program, callback_data.partner)
    spendable = member.available  # as read for this update; donate() checks again
    if spendable <= 0:
        await query.answer(_("You have no points to give right now."), show_alert=True)
        return
    await query.answer()
    await state.set_state(DonateDialog.points)
    await state.update_data(charity=charity.slug)
    if isinstance(query.message, Message):
        await query.message.answer(views.donation_prompt(charity, spendable))


async def donation_points(
    message: Message,
    state: FSMContext,
    program: Program,
    member: MemberInfo,
) -> None:
    charity = _charity(program, str((await state.get_data()).get("charity", "")))
    try:
        points = parse_points(message.text or "")
    except InvalidPoints:
        await message.answer(_("Send a whole number of points, like 200."))
        return
    spendable = member.available  # as read for this update; donate() checks again
    if points > spendable:
        await message.answer(
            _("You can give at most {points} now: that is what you may spend.").format(
                points=fmt.points(spendable)
            )
        )
        return
    await state.clear()
    await message.answer(
        views.donation_confirm(program, charity, points),
        reply_markup=views.donation_keyboard(charity.slug, points, secrets.token_urlsafe(8)),
    )


async def give(
    query: CallbackQuery,
    callback_data: DonateCb,
    session: AsyncSession,
    program: Program,
    member: MemberInfo,
) -> None:
    """Post the donation (a second tap replays it); the thanks come by the outbox."""
    charity = _charity(program, callback_data.partner)
    if not callback_data.dialog:
        await query.answer(_("This button is no longer active."))
        return
    done = await donate(
        session,
        program,
        member_id=member.id,
        charity=charity.slug,
        points=callback_data.points,
        key=donation_key(member.id, callback_data.dialog),
        actor=query.from_user.id,
    )
    await query.answer()
    if isinstance(query.message, Message):
        await edit_text(query.message, views.donated(charity, done.points))


async def drop(query: CallbackQuery) -> None:
    await query.answer()
    if isinstance(query.message, Message):
        await edit_text(query.message, _("Cancelled. Nothing was given."))


def build() -> Router:
    router = Router(name="donate")
    router.message.filter(PrivateChat(), IsMember())
    router.callback_query.filter(IsMember())
    router.message.register(donate_command, Command("donate"))
    router.message.register(donate_command, TextIs(keyboards.DONATE))
    router.message.register(
        donation_points, StateFilter(DonateDialog.points), HasText(), ~IsCommand()
    )
    router.callback_query.register(pick, DonateCb.filter(F.action == "pick"))
    router.callback_query.register(give, DonateCb.filter(F.action == "ok"))
    router.callback_query.register(drop, DonateCb.filter(F.action == "no"))
    return router
