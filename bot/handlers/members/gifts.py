"""/gift: give points to a friend with a link; the friend opens it, joins if need be, and
accepts. The rules and the ledger are db/usecases/gifts.py's; this only talks."""

from __future__ import annotations

import secrets

from aiogram import Bot, F, Router
from aiogram.filters import Command, CommandObject, CommandStart, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Message
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from bot.callbacks import GiftCb
from bot.filters import HasText, IsCommand, IsMember, PrivateChat, TextIs
from bot.handlers.everyone.errors import describe
from bot.views import formatting as fmt
from bot.views import gifts as views
from bot.views import keyboards
from bot.views.editing import edit_text
from bot.views.links import start_link
from db.queries.gifts import GiftInfo, allowance, find_gift, open_gifts
from db.rules.errors import InvalidPoints
from db.rules.gifts import (
    GIFT,
    GiftClosed,
    GiftingOff,
    GiftLimit,
    gift_code,
    gift_param,
    parse_points,
    read_gift_param,
)
from db.rules.program import Program
from db.usecases.gifts import accept_gift, cancel_gift, create_gift
from db.usecases.members import MemberInfo


class GiftDialog(StatesGroup):
    points = State()


async def _links(bot: Bot, gifts: list[GiftInfo]) -> list[tuple[GiftInfo, str]]:
    return [(gift, await start_link(bot, gift_param(gift.code))) for gift in gifts]


async def gift_command(
    message: Message,
    bot: Bot,
    command: CommandObject,
    session: AsyncSession,
    state: FSMContext,
    program: Program,
    member: MemberInfo,
) -> None:
    """The member's open gifts (to take back), then: how many points? `/gift 200` skips
    the question. With gifting off, open gifts (from before) can still be taken back."""
    waiting = await open_gifts(session, member.id)
    if waiting:
        await message.answer(
            views.open_gifts(program, await _links(bot, waiting)),
            reply_markup=views.open_gifts_keyboard(waiting),
        )
    if program.gifts.max_points_per_day == 0:
        raise GiftingOff()
    if command.args:
        await _confirm(message, session, state, program, member, command.args)
        return
    can = await allowance(session, program, member.id)
    if can.most <= 0:
        await message.answer(views.nothing_to_give(can))
        return
    await state.set_state(GiftDialog.points)
    await message.answer(views.gift_prompt(can))


async def gift_button(
    message: Message,
    bot: Bot,
    session: AsyncSession,
    state: FSMContext,
    program: Program,
    member: MemberInfo,
) -> None:
    await gift_command(
        message, bot, CommandObject(command="gift"), session, state, program, member
    )


async def gift_points(
    message: Message,
    session: AsyncSession,
    state: FSMContext,
    program: Program,
    member: MemberInfo,
) -> None:
    await _confirm(message, session, state, program, member, message.text or "")


async def _confirm(
    message: Message,
    session: AsyncSession,
    state: FSMContext,
    program: Program,
    member: MemberInfo,
    typed: str,
) -> None:
    """Check the number as the use case will (a friendly early answer), then ask to
    confirm it: nothing is held before the member says so."""
    try:
        points = parse_points(typed)
    except InvalidPoints:
        await message.answer(_("Send a whole number of points, like 200."))
        return
    can = await allowance(session, program, member.id)
    if points > can.left_today:
        raise GiftLimit(max=can.per_day, left=can.left_today)
    if points > can.spendable:
        await message.answer(
            _("You can give at most {points} now: that is what you may spend.").format(
                points=fmt.points(can.spendable)
            )
        )
        return
    await state.clear()
    dialog = secrets.token_urlsafe(12)  # 16 characters: names this confirmation
    await message.answer(
        views.gift_confirm(program, points),
        reply_markup=views.gift_confirm_keyboard(dialog, points),
    )


async def confirm(
    query: CallbackQuery,
    callback_data: GiftCb,
    bot: Bot,
    session: AsyncSession,
    program: Program,
    member: MemberInfo,
    secret: bytes,
) -> None:
    """Hold the points and make the gift: a second tap finds the same gift."""
    gift = await create_gift(
        session,
        program,
        member_id=member.id,
        points=callback_data.points,
        code=gift_code(secret, member.id, callback_data.code),
        actor=query.from_user.id,
    )
    link = await start_link(bot, gift_param(gift.code))
    await query.answer()
    if isinstance(query.message, Message):
        await edit_text(
            query.message,
            views.gift_ready(program, gift, link),
            reply_markup=views.gift_share_keyboard(program, gift, link),
        )


async def drop(query: CallbackQuery) -> None:
    await query.answer()
    if isinstance(query.message, Message):
        await edit_text(query.message, _("Cancelled. Nothing was held."))


async def take_back(
    query: CallbackQuery,
    callback_data: GiftCb,
    bot: Bot,
    session: AsyncSession,
    program: Program,
    member: MemberInfo,
) -> None:
    """The giver takes an open gift back: its points are theirs again at once."""
    gift = await cancel_gift(
        session, code=callback_data.code, member_id=member.id, actor=query.from_user.id
    )
    await query.answer(
        _("↩️ {points} are yours again: the link no longer works.").format(
            points=fmt.points(gift.points)
        ),
        show_alert=True,
    )
    if isinstance(query.message, Message):
        waiting = await open_gifts(session, member.id)
        if waiting:
            await edit_text(
                query.message,
                views.open_gifts(program, await _links(bot, waiting)),
                reply_markup=views.open_gifts_keyboard(waiting),
            )
        else:
            await edit_text(query.message, _("🎀 No gifts are waiting for a friend."))


async def offer_gift(
    message: Message, session: AsyncSession, member: MemberInfo, code: str | None
) -> None:
    """Ask a member whether they accept the gift `code` (or say why they cannot)."""
    gift = await find_gift(session, code) if code else None
    if gift is None:
        await message.answer(describe(GiftClosed(status="unknown")))
    elif gift.giver_id == member.id:
        await message.answer(
            _(
                "This is your own gift of {points}: send the link to a friend. /gift lists "
                "your open gifts."
            ).format(points=fmt.points(gift.points))
        )
    elif gift.status != "open":
        status = "accepted_by_you" if gift.receiver_id == member.id else gift.status
        await message.answer(describe(GiftClosed(status=status)))
    else:
        await message.answer(views.gift_offer(gift), reply_markup=views.accept_keyboard(gift.code))


async def gift_link(
    message: Message,
    command: CommandObject,
    session: AsyncSession,
    state: FSMContext,
    program: Program,
    secret: bytes,
    member: MemberInfo | None = None,
) -> None:
    """A gift's link opened: a member is asked to accept; someone else joins first, and the
    gift is offered right after (bot/handlers/members/join.py keeps it through joining)."""
    from bot.handlers.members.join import offer_to_join  # join offers gifts: not at import

    code = read_gift_param(command.args or "")
    if member is not None:
        await offer_gift(message, session, member, code)
        return
    gift = await find_gift(session, code) if code else None
    if gift is None or gift.status != "open":
        await message.answer(describe(GiftClosed(status=gift.status if gift else "unknown")))
    else:
        await state.update_data(gift=gift.code)
        await message.answer(views.gift_offer_to_join(gift, program))
    await offer_to_join(message, session, program, secret)


async def accept(
    query: CallbackQuery,
    callback_data: GiftCb,
    session: AsyncSession,
    program: Program,
    member: MemberInfo | None = None,
) -> None:
    """The friend accepts: both are told by the outbox (the points, their balances)."""
    if member is None:
        await query.answer(_("Send /start to join first."), show_alert=True)
        return
    done = await accept_gift(
        session, program, code=callback_data.code, member_id=member.id, actor=query.from_user.id
    )
    await query.answer()
    if isinstance(query.message, Message):
        await edit_text(
            query.message,
            _("✅ Accepted: {points} are yours.").format(points=fmt.points(done.gift.points)),
        )


def build_links() -> Router:
    """Gift links and their Accept button, for members and not yet members alike (before
    the join router, which takes every other start link)."""
    router = Router(name="gift_links")
    router.message.filter(PrivateChat())
    router.message.register(gift_link, CommandStart(deep_link=True, magic=F.args.startswith(GIFT)))
    router.callback_query.register(accept, GiftCb.filter(F.action == "accept"))
    return router


def build() -> Router:
    router = Router(name="gifts")
    router.message.filter(PrivateChat(), IsMember())
    router.callback_query.filter(IsMember())
    router.message.register(gift_command, Command("gift"))
    router.message.register(gift_button, TextIs(keyboards.GIFT))
    router.message.register(gift_points, StateFilter(GiftDialog.points), HasText(), ~IsCommand())
    router.callback_query.register(confirm, GiftCb.filter(F.action == "confirm"))
    router.callback_query.register(drop, GiftCb.filter(F.action == "drop"))
    router.callback_query.register(take_back, GiftCb.filter(F.action == "cancel"))
    return router
