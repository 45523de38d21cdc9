"""A member's everyday commands: card, balance, history, invite, partners, help."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from html import escape

from aiogram import Bot, F, Router
from aiogram.filters import Command
from aiogram.types import BufferedInputFile, CallbackQuery, Message
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from bot.callbacks import CardCb, HistoryCb
from bot.filters import IsMember, PrivateChat, TextIs
from bot.views import club, keyboards, stamps, texts
from bot.views import formatting as fmt
from bot.views.editing import edit_text
from bot.views.links import start_link
from bot.views.qr import render_qr
from db.queries.wallet import WalletFigures, history, referral_stats, summary
from db.rules import club as club_rules
from db.rules.cards import format_card_number
from db.rules.program import Program
from db.rules.tokens import card_token, referral_token
from db.usecases.members import MemberInfo

PAGE = 10


async def send_card(
    message: Message, bot: Bot, member: MemberInfo, program: Program, secret: bytes
) -> None:
    ttl = program.program.card_ttl_seconds
    expires = datetime.now(UTC) + timedelta(seconds=ttl)
    link = await start_link(bot, card_token(secret, member.id, expires))
    caption = "\n".join(
        [
            _("💳 <b>{program}</b> member card").format(
                program=escape(fmt.text(program.program.name))
            ),
            _("Card number: <code>{number}</code>").format(
                number=format_card_number(member.card_number)
            ),
            _(
                "Show this code at the till. It works for {minutes} min; the number always works."
            ).format(minutes=max(ttl // 60, 1)),
        ]
    )
    await message.answer_photo(
        BufferedInputFile(render_qr(link), filename="card.png"),
        caption=caption,
        reply_markup=keyboards.card_keyboard(),
    )


async def card(
    message: Message, bot: Bot, member: MemberInfo, program: Program, secret: bytes
) -> None:
    await send_card(message, bot, member, program, secret)


async def refresh_card(
    query: CallbackQuery, bot: Bot, member: MemberInfo, program: Program, secret: bytes
) -> None:
    await query.answer()
    if isinstance(query.message, Message):
        await send_card(query.message, bot, member, program, secret)


async def balance(
    message: Message,
    member: MemberInfo,
    wallet_figures: WalletFigures,
    program: Program,
    clock: Callable[[], datetime],
) -> None:
    # The figures came with the member (db.queries.identity): no query here.
    in_club = program.club is not None and club_rules.active(wallet_figures.club_ends_at, clock())
    lines = [texts.balance(summary(program, member, wallet_figures), program, club=in_club)]
    if program.stamp_cards:
        lines += stamps.balance_lines(program, wallet_figures.stamps)
    if program.club is not None and wallet_figures.club_ends_at is not None:
        lines.append(
            club.balance_line(
                program,
                wallet_figures.club_ends_at,
                wallet_figures.club_renews,
                wallet_figures.club_subscription_until,
                clock(),
            )
        )
    await message.answer("\n".join(lines))


async def _history_page(
    session: AsyncSession, member: MemberInfo, program: Program, offset: int
) -> tuple[str, object]:
    items, total = await history(session, member, offset=offset, limit=PAGE)
    return (
        texts.history(items, offset, total, program),
        keyboards.history_keyboard(offset, PAGE, total),
    )


async def show_history(
    message: Message, session: AsyncSession, member: MemberInfo, program: Program
) -> None:
    text, markup = await _history_page(session, member, program, 0)
    await message.answer(text, reply_markup=markup)  # type: ignore[arg-type]


async def page_history(
    query: CallbackQuery,
    callback_data: HistoryCb,
    session: AsyncSession,
    member: MemberInfo,
    program: Program,
) -> None:
    text, markup = await _history_page(session, member, program, callback_data.offset)
    await query.answer()
    if isinstance(query.message, Message):
        await edit_text(query.message, text, reply_markup=markup)


async def invite(
    message: Message,
    bot: Bot,
    session: AsyncSession,
    member: MemberInfo,
    program: Program,
    secret: bytes,
) -> None:
    stats = await referral_stats(session, member.id)
    link = await start_link(bot, referral_token(secret, member.id))
    text = "\n".join(
        [
            _("🎁 Invite friends to {program}.").format(
                program=escape(fmt.text(program.program.name))
            ),
            texts.invite_terms(program),
            "",
            _("Your link: {link}").format(link=link),
            _("Friends invited: {invited}. Rewarded: {rewarded}.").format(
                invited=stats.invited, rewarded=stats.rewarded
            ),
        ]
    )
    share = _("Join {program} with me: we both get points.").format(
        program=fmt.text(program.program.name)
    )
    await message.answer(text, reply_markup=keyboards.share_keyboard(link, share))


def build() -> Router:
    router = Router(name="member")
    router.message.filter(PrivateChat(), IsMember())
    router.callback_query.filter(IsMember())
    router.message.register(card, Command("card"))
    router.message.register(card, TextIs(keyboards.CARD))
    router.callback_query.register(refresh_card, CardCb.filter(F.action == "refresh"))
    router.message.register(balance, Command("balance"))
    router.message.register(balance, TextIs(keyboards.BALANCE))
    router.message.register(show_history, Command("history"))
    router.message.register(show_history, TextIs(keyboards.HISTORY))
    router.callback_query.register(page_history, HistoryCb.filter())
    router.message.register(invite, Command("invite"))
    router.message.register(invite, TextIs(keyboards.INVITE))
    return router
