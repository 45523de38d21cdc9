"""The member's rewards catalogue (/rewards: take a reward for points, after a confirmation)
and their vouchers (/vouchers, each QR code on request). A voucher link opened by someone
who is not at that partner's till is only explained: staff are served by the till."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

from aiogram import Bot, F, Router
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.types import BufferedInputFile, CallbackQuery, Message
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from bot.callbacks import RewardCb, VoucherCb
from bot.filters import IsMember, PrivateChat, TextIs
from bot.views import formatting as fmt
from bot.views import keyboards
from bot.views import vouchers as views
from bot.views.editing import edit_text
from bot.views.links import start_link
from bot.views.qr import render_qr
from db.queries.vouchers import OpenVoucher, catalogue_state, open_voucher_of, open_vouchers
from db.rules.errors import NotEnoughPoints
from db.rules.program import Program
from db.rules.tokens import VOUCHER, InvalidToken, read_voucher_token, voucher_token
from db.usecases.members import MemberInfo, get_member
from db.usecases.vouchers import take_reward


async def rewards(
    message: Message, session: AsyncSession, member: MemberInfo, program: Program
) -> None:
    wallet = await get_member(session, member.id)  # with its held points (identify has none)
    states = await catalogue_state(session, member.id)
    text, markup = views.catalogue(program, states, wallet.available, wallet.held)
    await message.answer(text, reply_markup=markup)


async def ask(query: CallbackQuery, callback_data: RewardCb, program: Program) -> None:
    """Show what taking the reward means, with a Confirm that carries this confirmation's
    own id (so a double tap takes one voucher) and the price shown."""
    reward = program.reward(callback_data.reward)
    if reward is None or reward.points == 0:
        await query.answer(_("This reward cannot be taken with points."), show_alert=True)
        return
    await query.answer()
    if not isinstance(query.message, Message):
        return
    valid_until = datetime.now(UTC) + timedelta(days=reward.valid_days)
    text, markup = views.confirmation(program, reward, valid_until, secrets.token_urlsafe(9))
    await query.message.answer(text, reply_markup=markup)


async def take(
    query: CallbackQuery,
    callback_data: RewardCb,
    bot: Bot,
    session: AsyncSession,
    member: MemberInfo,
    program: Program,
    secret: bytes,
) -> None:
    message = query.message if isinstance(query.message, Message) else None
    if not callback_data.op:
        await query.answer(_("This button is no longer active."))
        return
    try:
        taken = await take_reward(
            session,
            program,
            member_id=member.id,
            reward=callback_data.reward,
            points=callback_data.points,
            operation=callback_data.op,
            secret=secret,
            now=datetime.now(UTC),
            actor=query.from_user.id,
        )
    except NotEnoughPoints:
        fresh = await get_member(session, member.id)
        text = _(
            "Not enough points: this reward costs {points} and you have {available} to "
            "spend. Nothing was taken."
        ).format(points=fmt.points(callback_data.points), available=fmt.points(fresh.available))
        await query.answer(text, show_alert=True)
        return
    await query.answer()
    voucher = taken.voucher
    if message is not None:
        await edit_text(
            message,
            _("✅ Taken: {title}. Your voucher is below; /vouchers lists your vouchers.").format(
                title=fmt.reward_html(program, voucher.reward)
            ),
        )
        if not taken.replayed:  # a double tap: the first one sent the voucher
            opened = OpenVoucher(
                voucher.id,
                voucher.code,
                voucher.reward,
                voucher.partner,
                voucher.points,
                voucher.expires_at,
            )
            await send_voucher(message, bot, program, secret, opened)


async def cancel(query: CallbackQuery) -> None:
    await query.answer()
    if isinstance(query.message, Message):
        await edit_text(query.message, _("Not taken. Your points are as they were."))


async def send_voucher(
    message: Message, bot: Bot, program: Program, secret: bytes, voucher: OpenVoucher
) -> None:
    """The voucher as a QR code of its signed link, with what a cashier needs to know."""
    link = await start_link(bot, voucher_token(secret, voucher.id, voucher.expires_at))
    await message.answer_photo(
        BufferedInputFile(render_qr(link), filename="voucher.png"),
        caption=views.voucher_caption(program, voucher),
    )


async def vouchers(
    message: Message, session: AsyncSession, member: MemberInfo, program: Program
) -> None:
    found = await open_vouchers(session, member.id, datetime.now(UTC))
    text, markup = views.vouchers_list(program, found)
    await message.answer(text, reply_markup=markup)


async def show_qr(
    query: CallbackQuery,
    callback_data: VoucherCb,
    bot: Bot,
    session: AsyncSession,
    member: MemberInfo,
    program: Program,
    secret: bytes,
) -> None:
    voucher = await open_voucher_of(session, member.id, callback_data.code, datetime.now(UTC))
    if voucher is None:
        await query.answer(
            _("This voucher is no longer open: it was used or has expired."), show_alert=True
        )
        return
    await query.answer()
    if isinstance(query.message, Message):
        await send_voucher(query.message, bot, program, secret, voucher)


async def voucher_link(message: Message, command: CommandObject, secret: bytes) -> None:
    """A voucher's QR code opened by someone who cannot claim it (not staff): say what it is."""
    try:
        read_voucher_token(secret, command.args or "")
    except InvalidToken:
        await message.answer(_("This link is not valid. Check it, or ask for a new one."))
        return
    await message.answer(
        _("🎟 This is a voucher: the partner's staff scan it at the till. Your own: /vouchers")
    )


def build() -> Router:
    router = Router(name="rewards")
    router.message.filter(PrivateChat())
    router.message.register(
        voucher_link, CommandStart(deep_link=True, magic=F.args.startswith(VOUCHER))
    )
    router.message.register(rewards, Command("rewards"), IsMember())
    router.message.register(rewards, TextIs(keyboards.REWARDS), IsMember())
    router.message.register(vouchers, Command("vouchers"), IsMember())
    router.message.register(vouchers, TextIs(keyboards.VOUCHERS), IsMember())
    router.callback_query.register(ask, RewardCb.filter(F.action == "ask"), IsMember())
    router.callback_query.register(take, RewardCb.filter(F.action == "take"), IsMember())
    router.callback_query.register(cancel, RewardCb.filter(F.action == "cancel"), IsMember())
    router.callback_query.register(show_qr, VoucherCb.filter(F.action == "qr"), IsMember())
    return router
