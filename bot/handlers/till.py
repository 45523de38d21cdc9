"""The till, for cashiers and managers: find the member (QR link, photo of the card, or the
card number), then an earn-only sale or a sale paid partly with points (the member confirms
in their own chat). Each step is authorised again in the use case it calls."""

from __future__ import annotations

import asyncio
import re
import secrets
from decimal import Decimal
from html import escape

from aiogram import Bot, F, Router
from aiogram.filters import Command, CommandObject, CommandStart, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from bot import formatting as fmt
from bot.callbacks import RedeemCb, TillCb
from bot.editing import edit_markup, edit_text
from bot.filters import HasPhoto, HasText, IsStaff, PrivateChat, TextMatches
from bot.metrics import POSTINGS
from bot.notify import Notifier
from bot.qr import UnreadableImage, card_tokens, decode_qr
from db.cards import normalize_card_number
from db.errors import InvalidAmount
from db.members import MemberInfo, get_member
from db.program import Program
from db.rules import max_redeemable, parse_money
from db.staff import StaffInfo
from db.till import lookup_member, note_messages, request_redemption, till_sale
from db.tokens import CARD, CardExpired, InvalidToken, read_card_token

CARD_NUMBER = re.compile(r"^[\d\s-]{12,20}$")


class Till(StatesGroup):
    amount = State()
    points = State()


def _panel_keyboard(dialog: str) -> InlineKeyboardMarkup:
    def button(text: str, action: str) -> InlineKeyboardButton:
        return InlineKeyboardButton(
            text=text, callback_data=TillCb(action=action, dialog=dialog).pack()
        )

    return InlineKeyboardMarkup(
        inline_keyboard=[
            [button(_("🧾 Sale: earn points"), "earn")],
            [button(_("💳 Sale: use points"), "redeem")],
            [button(_("✖ Cancel"), "cancel")],
        ]
    )


async def open_member(
    message: Message, state: FSMContext, member: MemberInfo, program: Program
) -> None:
    """Show the member to the cashier and start a sale dialog (a fresh id per dialog: it
    keys the posting, so a double tap or a re-delivered update posts once)."""
    dialog = secrets.token_urlsafe(12)
    await state.set_state(None)
    await state.set_data({"dialog": dialog, "member_id": member.id})
    rules = program.program
    await message.answer(
        "\n".join(
            [
                _("👤 <b>{name}</b> · {tier}").format(
                    name=escape(member.first_name) or "—",
                    tier=escape(program.tier(member.tier).name),
                ),
                _("💰 {points} (worth {money})").format(
                    points=fmt.points(member.balance),
                    money=fmt.money(member.balance * rules.point_value, rules.currency),
                ),
                _("Points can pay up to {share} of a purchase.").format(
                    share=fmt.percent(rules.max_redeem_percent)
                ),
            ]
        ),
        reply_markup=_panel_keyboard(dialog),
    )


async def scanned_link(
    message: Message,
    command: CommandObject,
    session: AsyncSession,
    state: FSMContext,
    staff: StaffInfo,
    program: Program,
    secret: bytes,
) -> None:
    member = await lookup_member(session, staff, secret=secret, token=command.args, how="qr-link")
    await open_member(message, state, member, program)


async def card_photo(
    message: Message,
    bot: Bot,
    session: AsyncSession,
    state: FSMContext,
    staff: StaffInfo,
    program: Program,
    secret: bytes,
) -> None:
    assert message.photo
    file = await bot.download(message.photo[-1].file_id)
    assert file is not None
    try:
        # Decoding takes CPU time: off the event loop, so other people are not kept waiting.
        texts = await asyncio.to_thread(decode_qr, file.read())
    except UnreadableImage as error:
        if error.too_large:
            await message.answer(_("This picture is too large to read. Send a normal photo."))
            return
        texts = []
    token = _first_card(card_tokens(texts, CARD), secret)
    if token is None:
        await message.answer(
            _(
                "I could not read a member card's QR code in this photo. Try again closer, or "
                "type the card number."
            )
        )
        return
    member = await lookup_member(session, staff, secret=secret, token=token, how="photo")
    await open_member(message, state, member, program)


def _first_card(tokens: list[str], secret: bytes) -> str | None:
    """The first token that is one of our member cards; if there are only expired ones,
    the first of those (the lookup then says it has expired)."""
    expired = None
    for token in tokens:
        try:
            read_card_token(secret, token)
        except CardExpired:
            expired = expired or token
        except InvalidToken:
            continue
        else:
            return token
    return expired


async def card_number(
    message: Message,
    session: AsyncSession,
    state: FSMContext,
    staff: StaffInfo,
    program: Program,
    secret: bytes,
) -> None:
    number = normalize_card_number(message.text or "")
    if number is None:
        await message.answer(_("That card number is not valid: check the digits."))
        return
    member = await lookup_member(session, staff, secret=secret, card_number=number, how="number")
    await open_member(message, state, member, program)


async def _dialog_ok(query: CallbackQuery, state: FSMContext, dialog: str) -> bool:
    if (await state.get_data()).get("dialog") != dialog:
        await query.answer(_("This sale is closed. Scan the card again."), show_alert=True)
        return False
    return True


async def choose(query: CallbackQuery, callback_data: TillCb, state: FSMContext) -> None:
    if not await _dialog_ok(query, state, callback_data.dialog):
        return
    await query.answer()
    if not isinstance(query.message, Message):
        return
    if callback_data.action == "cancel":
        await state.clear()
        await edit_text(query.message, _("Cancelled. Nothing was posted."))
        return
    await state.update_data(mode=callback_data.action)
    await state.set_state(Till.amount)
    await edit_markup(query.message, None)
    await query.message.answer(
        _(
            "Enter the purchase amount, e.g. 12.50. You can add the receipt number after a space: "
            "12.50 A-1043"
        )
    )


def _split_amount(text: str) -> tuple[str, str | None]:
    """`12,50` → ("12,50", None); `12.50 A-1043` → ("12.50", "A-1043")."""
    text = text.strip()
    try:
        parse_money(text)
        return text, None
    except InvalidAmount:
        head, _sep, tail = text.partition(" ")
        return head, (tail.strip()[:100] or None)


async def amount_entered(
    message: Message,
    session: AsyncSession,
    state: FSMContext,
    staff: StaffInfo,
    program: Program,
    notifier: Notifier,
) -> None:
    data = await state.get_data()
    amount_text, receipt = _split_amount(message.text or "")
    amount = parse_money(amount_text)
    if data.get("mode") == "redeem":
        member = await get_member(session, data["member_id"])
        await session.rollback()
        rules = program.program
        allowed = min(
            member.balance,
            max_redeemable(amount, rules.max_redeem_percent, rules.point_value),
        )
        await state.update_data(amount=str(amount), receipt=receipt)
        await state.set_state(Till.points)
        await message.answer(
            _("How many points? Up to {max} on this purchase. Send a number, or tap Max.").format(
                max=fmt.points(allowed)
            ),
            reply_markup=InlineKeyboardMarkup(
                inline_keyboard=[
                    [
                        InlineKeyboardButton(
                            text=_("Max: {points}").format(points=fmt.number(allowed)),
                            callback_data=TillCb(action="max", dialog=data["dialog"]).pack(),
                        )
                    ]
                ]
            ),
        )
        return
    key = f"till:{staff.partner_id}:receipt:{receipt}" if receipt else f"till:{data['dialog']}"
    result = await till_sale(
        session,
        program,
        staff,
        member_id=data["member_id"],
        amount=amount,
        key=key,
        receipt=receipt,
    )
    await state.clear()
    rules = program.program
    if result.replayed:
        await message.answer(_("This sale was already posted."))
    await message.answer(
        _("✅ {amount}: +{points}. The member's balance: {balance}.").format(
            amount=fmt.money(result.amount, rules.currency),
            points=fmt.points(result.points_earned),
            balance=fmt.points(result.balance),
        )
    )
    if not result.replayed:
        POSTINGS.labels(result.kind).inc()
        await notifier.purchase(result, staff.partner_name or "")


async def points_entered(
    message: Message,
    session: AsyncSession,
    state: FSMContext,
    staff: StaffInfo,
    program: Program,
    bot: Bot,
    i18n: I18n,
) -> None:
    text = (message.text or "").strip().lower()
    if text in ("max", _("max").lower()):
        points = None
    elif text.isascii() and text.isdigit() and len(text) <= 18:
        points = int(text)
    else:
        await message.answer(_("Send a whole number of points, or tap Max."))
        return
    await _request(message, session, state, staff, program, bot, i18n, points)


async def max_points(
    query: CallbackQuery,
    callback_data: TillCb,
    session: AsyncSession,
    state: FSMContext,
    staff: StaffInfo,
    program: Program,
    bot: Bot,
    i18n: I18n,
) -> None:
    if not await _dialog_ok(query, state, callback_data.dialog):
        return
    if await state.get_state() != Till.points.state:
        # "Max" only means something once the amount is in (a forged or replayed button).
        await query.answer(_("Enter the purchase amount first."), show_alert=True)
        return
    await query.answer()
    if isinstance(query.message, Message):
        await edit_markup(query.message, None)
        await _request(query.message, session, state, staff, program, bot, i18n, None)


async def _request(
    message: Message,
    session: AsyncSession,
    state: FSMContext,
    staff: StaffInfo,
    program: Program,
    bot: Bot,
    i18n: I18n,
    points: int | None,
) -> None:
    data = await state.get_data()
    req = await request_redemption(
        session,
        program,
        staff,
        member_id=data["member_id"],
        amount=Decimal(data["amount"]),
        points=points,
        dialog=data["dialog"],
        receipt=data.get("receipt"),
        staff_chat_id=message.chat.id,
        staff_language=i18n.current_locale,
    )
    await state.clear()
    currency = program.program.currency
    waiting = await message.answer(
        _(
            "⏳ Waiting for the member to confirm {points} ({money}) in Telegram. The request "
            "lasts 2 minutes."
        ).format(points=fmt.points(req.points), money=fmt.money(req.money, currency))
    )
    member_message_id = None
    if req.member_telegram_id is not None:
        with i18n.use_locale(req.member_language):
            text = _(
                "💳 {partner} asks to pay {money} of your {amount} purchase with {points}."
                " Confirm?"
            ).format(
                partner=escape(staff.partner_name or ""),
                money=fmt.money(req.money, currency),
                amount=fmt.money(req.amount, currency),
                points=fmt.points(req.points),
            )
            markup = InlineKeyboardMarkup(
                inline_keyboard=[
                    [
                        InlineKeyboardButton(
                            text=_("✅ Confirm"),
                            callback_data=RedeemCb(request=req.public_id, ok=True).pack(),
                        ),
                        InlineKeyboardButton(
                            text=_("✖ Decline"),
                            callback_data=RedeemCb(request=req.public_id, ok=False).pack(),
                        ),
                    ]
                ]
            )
        sent = await bot.send_message(req.member_telegram_id, text, reply_markup=markup)
        member_message_id = sent.message_id
    await note_messages(
        session,
        req.public_id,
        staff_message_id=waiting.message_id,
        member_message_id=member_message_id,
    )


async def cancel(message: Message, state: FSMContext) -> None:
    await state.clear()
    await message.answer(_("Cancelled. Nothing was posted."))


def build() -> Router:
    router = Router(name="till")
    router.message.filter(PrivateChat(), IsStaff("cashier", "manager"))
    router.callback_query.filter(IsStaff("cashier", "manager"))
    router.message.register(
        scanned_link, CommandStart(deep_link=True, magic=F.args.startswith(CARD))
    )
    router.message.register(cancel, Command("cancel"))
    router.message.register(amount_entered, Till.amount, HasText())
    router.message.register(points_entered, Till.points, HasText())
    router.message.register(card_photo, StateFilter(None), HasPhoto())
    router.message.register(card_number, StateFilter(None), TextMatches(CARD_NUMBER))
    router.callback_query.register(max_points, TillCb.filter(F.action == "max"))
    router.callback_query.register(choose, TillCb.filter())
    return router
