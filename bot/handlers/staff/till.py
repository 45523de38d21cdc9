"""The till, for cashiers and managers: find the member (QR link, photo of the card, or the
card number), then an earn-only sale or a sale paid partly with points (the member confirms
in their own chat). Each step is authorised again in the use case it calls."""

from __future__ import annotations

import asyncio
import re
import secrets
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from html import escape
from typing import Any

from aiogram import Bot, F, Router
from aiogram.filters import Command, CommandObject, CommandStart, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import ngettext as _n
from sqlalchemy.ext.asyncio import AsyncSession

from bot.callbacks import EarnOnlyCb, TillCb
from bot.filters import (
    HasPhoto,
    HasText,
    IsCardNumber,
    IsCommand,
    IsStaff,
    PrivateChat,
    TextMatches,
)
from bot.handlers.staff.vouchers import voucher_photo
from bot.metrics import POSTINGS
from bot.views import club_till as club_views
from bot.views import discounts, stamps
from bot.views import formatting as fmt
from bot.views import promotions as promotion_views
from bot.views.editing import edit_markup, edit_text
from bot.views.notices import RENDERERS
from bot.views.qr import UnreadableImage, card_tokens, decode_qr
from db.queries.club import membership as club_membership
from db.queries.reports import sale_refunds
from db.rules.cards import normalize_card_number
from db.rules.errors import DiscountChanged, InvalidAmount, RepeatSale, RequestClosed
from db.rules.points import check_purchase, currency_signs, parse_till_amount, points_money
from db.rules.program import Program
from db.rules.tokens import CARD, CardExpired, InvalidToken, read_card_token
from db.usecases import promotions
from db.usecases.discounts import quote
from db.usecases.members import MemberInfo
from db.usecases.outbox import StaffChat
from db.usecases.purchases import PurchaseResult
from db.usecases.staff import StaffInfo
from db.usecases.till import (
    REQUEST_TTL,
    check_sells,
    close_request,
    closed_params,
    finish_earn_only,
    lookup_member,
    note_messages,
    redemption_allowance,
    request_outcome,
    request_redemption,
    till_sale,
)

CARD_NUMBER = re.compile(r"^[\d\s-]{12,20}$")


class Till(StatesGroup):
    amount = State()
    points = State()


def _panel_keyboard(
    dialog: str, more: list[list[InlineKeyboardButton]] | None = None
) -> InlineKeyboardMarkup:
    def button(text: str, action: str) -> InlineKeyboardButton:
        return InlineKeyboardButton(
            text=text, callback_data=TillCb(action=action, dialog=dialog).pack()
        )

    return InlineKeyboardMarkup(
        inline_keyboard=[
            [button(_("🧾 Sale: earn points"), "earn")],
            [button(_("💳 Sale: use points"), "redeem")],
            *(more or []),
            [button(_("✖ Cancel"), "cancel")],
        ]
    )


def _wallet_line(member: MemberInfo, program: Program) -> str:
    """The member's points as the cashier sees them: what is held is not to be spent."""
    rules = program.program
    money = fmt.money(points_money(member.balance, rules.point_value), rules.currency)
    if not member.held:
        return _("💰 {points} (worth {money})").format(
            points=fmt.points(member.balance), money=money
        )
    return _(
        "💰 {points} (worth {money}), of which {held} held for their open vouchers, gifts and "
        "requests ({available} to spend)"
    ).format(
        points=fmt.points(member.balance),
        money=money,
        held=fmt.number(member.held),
        available=fmt.number(member.available),
    )


async def open_member(
    message: Message,
    session: AsyncSession,
    state: FSMContext,
    member: MemberInfo,
    program: Program,
    staff: StaffInfo,
) -> None:
    """Show the member to the cashier and start a sale dialog (a fresh id per dialog: it
    keys the posting, so a double tap or a re-delivered update posts once), with the
    promotions a sale would get now (a preview: the sale is decided when posted). Staff of
    a charity are refused here (CharityTakesNoSales): a charity takes no sales."""
    check_sells(program, staff)
    assert staff.partner_slug is not None
    now = datetime.now(UTC)
    promos = await promotions.preview(
        session, program, member_id=member.id, partner=staff.partner_slug, now=now
    )
    dialog = secrets.token_urlsafe(12)
    await state.set_state(None)
    # What the panel showed, for the receipt to name what the posting did not apply.
    await state.set_data(
        {"dialog": dialog, "member_id": member.id, "shown": [p.slug for p in promos]}
    )
    rules = program.program
    # The member's place in the club, and a month of it to sell when it has a money price.
    club_lines: list[str] = []
    more = []
    in_club = False
    if program.club is not None:
        membership = await club_membership(session, member.id)
        in_club = membership is not None and membership.active(now)
        club_lines.append(club_views.panel_status(program, membership, now))
        if program.club.price and staff.may("club_sale"):
            more.append(club_views.offer_button(program, dialog, program.club.price, in_club))
    await message.answer(
        "\n".join(
            [
                _("👤 <b>{name}</b> · {tier}").format(
                    name=escape(member.first_name) or "—",
                    tier=escape(fmt.text(program.tier(member.tier).name)),
                ),
                *filter(None, [discounts.member_discount(program, member.tier, in_club)]),
                *club_lines,
                _wallet_line(member, program),
                _("Points can pay up to {share} of a purchase.").format(
                    share=fmt.percent(rules.max_redeem_percent)
                ),
                *promotion_views.panel_lines(
                    program,
                    promos,
                    discounted=bool(program.discount_percent(member.tier, in_club)),
                ),
            ]
        ),
        reply_markup=_panel_keyboard(dialog, more),
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
    await open_member(message, session, state, member, program, staff)


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
    if token is None and await voucher_photo(message, session, staff, program, secret, texts):
        return  # a voucher's QR code, opened for claiming (bot/handlers/staff/vouchers.py)
    if token is None:
        await message.answer(
            _(
                "I could not read a member card's QR code in this photo. Try again closer, or "
                "type the card number."
            )
        )
        return
    member = await lookup_member(session, staff, secret=secret, token=token, how="photo")
    await open_member(message, session, state, member, program, staff)


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
    await open_member(message, session, state, member, program, staff)


async def _open_sale(message: Message, state: FSMContext) -> dict[str, Any] | None:
    """The sale dialog a typed amount or number of points is for. Updates of one chat may
    be handled at the same time (a /cancel, another card, while a press still waits for
    Telegram), so the step can outlive its dialog: then, as for a stale button, the sale is
    closed (nothing posted) and the step left."""
    data = await state.get_data()
    if data.get("dialog") and data.get("member_id"):
        return data
    await state.set_state(None)
    await message.answer(_("This sale is closed. Scan the card again."))
    return None


async def _dialog_ok(query: CallbackQuery, state: FSMContext, dialog: str) -> bool:
    if (await state.get_data()).get("dialog") != dialog:
        await query.answer(_("This sale is closed. Scan the card again."), show_alert=True)
        return False
    return True


def amount_rule(currency: str) -> str:
    """The input rule, said the same way in every prompt and refusal."""
    return _(
        "Type the amount with at most two decimals after a point or a comma: 12.50 or 12,50 "
        "(the currency may follow: 12.50 {currency}). A receipt number goes after #: "
        "12.50 #A-1043"
    ).format(currency=currency)


async def choose(
    query: CallbackQuery, callback_data: TillCb, state: FSMContext, program: Program
) -> None:
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
        _("Enter the purchase amount. {rule}").format(rule=amount_rule(program.program.currency))
    )


def _again_markup(post: str, drop: str, label: str | None = None) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(text=label or _("✅ Post again"), callback_data=post),
                InlineKeyboardButton(text=_("✖ Cancel"), callback_data=drop),
            ]
        ]
    )


def _again_text(repeat: RepeatSale, program: Program) -> str:
    return _n(
        "⚠️ You posted {amount} to this member in the last minute. Post it again?",
        "⚠️ You posted {amount} to this member in the last {n} minutes. Post it again?",
        repeat.params["minutes"],
    ).format(
        amount=fmt.money(repeat.params["amount"], program.program.currency),
        n=repeat.params["minutes"],
    )


def _discount_of(result: PurchaseResult) -> dict[str, str]:
    """A sale's discount as discounts.sold reads it (with `amount`), kept for /cancel and
    for a replay's answer: nothing for a sale without one."""
    if not result.discount:
        return {}
    kept = {"discount": str(result.discount)}
    if result.discount_tier is not None:
        kept |= {
            "discount_tier": result.discount_tier,
            "discount_percent": str(result.discount_percent),
        }
    if result.discount_club_percent:
        kept["discount_club_percent"] = str(result.discount_club_percent)
    return kept


def _gave(result: PurchaseResult) -> dict[str, Any]:
    """What a sale gave the member, as its notices' params say it (the views' sale_points
    adds them up: its own points, its promotions', its cards' fills')."""
    return {
        "points_earned": result.points_earned,
        "promotions": [a.params() for a in result.promotions],
        "stamps": [n.params() for n in result.stamps],
    }


def _last_sale(result: PurchaseResult) -> dict[str, Any]:
    """What /cancel says of the last sale posted: its number, amount, discount and the
    points it gave the member (its own and its promotions' and cards' fills', as its
    receipt's headline)."""
    return {
        "tx": result.transaction_id,
        "amount": str(result.amount),
        "earned": promotion_views.sale_points(_gave(result)),
        **_discount_of(result),
    }


async def _posted(
    message: Message, state: FSMContext | None, result: PurchaseResult, program: Program
) -> None:
    """Remember what was posted for /cancel. The cashier's receipt and the member's news
    were owed by the posting itself (db/usecases/outbox.py); a replay is answered here,
    with the discount first, as the receipt says it: the customer pays what is to pay."""
    if state is not None:
        await state.set_state(None)
        await state.set_data({"last": _last_sale(result)})
    if result.replayed:
        rules = program.program
        charged = discounts.sold(program, {"amount": result.amount, **_discount_of(result)})
        await message.answer(
            "\n".join(
                [
                    *filter(None, [charged]),
                    _("This sale was already posted."),
                    _("✅ {amount}: +{points}. The member's balance: {balance}.").format(
                        amount=fmt.money(result.amount, rules.currency),
                        points=fmt.points(promotion_views.sale_points(_gave(result))),
                        balance=fmt.points(result.balance),
                    ),
                    *promotion_views.own_points_line(_gave(result)),
                    *promotion_views.sale_lines(program, [a.params() for a in result.promotions]),
                    *stamps.sale_lines(
                        program,
                        [n.params() for n in result.stamps],
                        till=True,
                        discounted=bool(result.discount),
                    ),
                ]
            )
        )
    else:
        POSTINGS.labels(result.kind).inc()


async def amount_entered(
    message: Message,
    session: AsyncSession,
    state: FSMContext,
    staff: StaffInfo,
    program: Program,
    i18n: I18n,
) -> None:
    data = await _open_sale(message, state)
    if data is None:
        return
    rules = program.program
    try:
        typed = parse_till_amount(
            message.text or "", currency_signs(rules.currency, fmt.BABEL_LOCALES)
        )
        amount = check_purchase(typed.amount, rules.max_purchase)
    except InvalidAmount:
        await message.answer(
            _("“{text}” is not an amount I can use: nothing was posted. {rule}").format(
                text=escape((message.text or "").strip()[:40]), rule=amount_rule(rules.currency)
            )
        )
        return
    # The member's discount (their tier's, and the club's for a member), shown before
    # anything is posted; the sale carries the percent shown, and is refused if the tier or
    # the membership changed meanwhile (post_purchase).
    priced = await quote(session, program, data["member_id"], amount)
    shown = discounts.breakdown(program, priced) + "\n" if priced.discount else ""
    pending = {"amount": str(amount), "receipt": typed.receipt, "discount": str(priced.percent)}
    if data.get("mode") == "redeem":
        allowed = await redemption_allowance(session, program, data["member_id"], priced.to_pay)
        dialog = data["dialog"]
        if allowed <= 0:
            # Nothing to ask the member for: offer the sale without points, or leave.
            await state.set_state(None)
            await state.update_data(pending=pending)
            await message.answer(
                shown
                + _("No points can pay this purchase: the member has none free.")
                + "\n"
                + _("Post {amount} without points?").format(
                    amount=fmt.money(priced.to_pay, rules.currency)
                ),
                reply_markup=_again_markup(
                    TillCb(action="again", dialog=dialog).pack(),
                    TillCb(action="cancel", dialog=dialog).pack(),
                    label=_("🧾 Post without points"),
                ),
            )
            return
        await state.update_data(
            amount=str(amount), receipt=typed.receipt, discount=str(priced.percent)
        )
        await state.set_state(Till.points)
        button = InlineKeyboardButton
        await message.answer(
            shown
            + _(
                "How many points? Up to {max} on this purchase. Send a number, or tap Max."
            ).format(max=fmt.points(allowed)),
            reply_markup=InlineKeyboardMarkup(
                inline_keyboard=[
                    [
                        button(
                            text=_("Max: {points}").format(points=fmt.number(allowed)),
                            callback_data=TillCb(action="max", dialog=dialog).pack(),
                        )
                    ],
                    [
                        button(
                            text=_("✖ Cancel"),
                            callback_data=TillCb(action="cancel", dialog=dialog).pack(),
                        )
                    ],
                ]
            ),
        )
        return
    if priced.discount:
        # The cashier charges what is to pay: posted when they say so, as shown.
        await state.set_state(None)
        await state.update_data(pending=pending)
        dialog = data["dialog"]
        await message.answer(
            discounts.breakdown(program, priced),
            reply_markup=_again_markup(
                TillCb(action="pay", dialog=dialog).pack(),
                TillCb(action="cancel", dialog=dialog).pack(),
                label=_("🧾 Post: to pay {money}").format(
                    money=fmt.money(priced.to_pay, rules.currency)
                ),
            ),
        )
        return
    await _sell(
        message,
        session,
        state,
        staff,
        program,
        i18n,
        amount,
        typed.receipt,
        discount_percent=priced.percent,
    )


async def _discount_changed(message: Message, state: FSMContext) -> None:
    """The member's tier or club membership changed between the amount shown and the
    posting: nothing was posted; the cashier types the amount again and sees the discount
    as it is now."""
    await state.set_state(Till.amount)
    await state.update_data(pending=None)
    await message.answer(
        _(
            "⚠️ The member's discount changed since the amount was shown (their tier or club "
            "membership changed). Nothing was posted. Type the amount again."
        )
    )


async def _sell(
    message: Message,
    session: AsyncSession,
    state: FSMContext,
    staff: StaffInfo,
    program: Program,
    i18n: I18n,
    amount: Decimal,
    receipt: str | None,
    *,
    again: bool = False,
    discount_percent: Decimal = Decimal(0),
) -> None:
    data = await state.get_data()
    try:
        result = await till_sale(
            session,
            program,
            staff,
            member_id=data["member_id"],
            amount=amount,
            dialog=data["dialog"],
            receipt=receipt,
            again=again,
            reply=StaffChat(message.chat.id, i18n.current_locale),
            discount_percent=discount_percent,
            shown=data.get("shown") or (),
        )
    except DiscountChanged:
        await _discount_changed(message, state)
        return
    except RepeatSale as repeat:
        await state.update_data(
            pending={"amount": str(amount), "receipt": receipt, "discount": str(discount_percent)}
        )
        dialog = data["dialog"]
        await message.answer(
            _again_text(repeat, program),
            reply_markup=_again_markup(
                TillCb(action="again", dialog=dialog).pack(),
                TillCb(action="cancel", dialog=dialog).pack(),
            ),
        )
        return
    await _posted(message, state, result, program)


async def post_again(
    query: CallbackQuery,
    callback_data: TillCb,
    session: AsyncSession,
    state: FSMContext,
    staff: StaffInfo,
    program: Program,
    i18n: I18n,
) -> None:
    """The cashier says yes to "again?" (or posts a discounted sale as shown: "pay"): post
    the sale they typed."""
    if not await _dialog_ok(query, state, callback_data.dialog):
        return
    pending = (await state.get_data()).get("pending")
    if not pending or not isinstance(query.message, Message):
        await query.answer(_("This sale is closed. Scan the card again."), show_alert=True)
        return
    await edit_markup(query.message, None)
    await _sell(
        query.message,
        session,
        state,
        staff,
        program,
        i18n,
        Decimal(pending["amount"]),
        pending["receipt"],
        again=callback_data.action == "again",
        discount_percent=Decimal(pending.get("discount") or 0),
    )
    await query.answer()  # after the posting: a press answered is a press done


async def earn_only(
    query: CallbackQuery,
    callback_data: EarnOnlyCb,
    session: AsyncSession,
    state: FSMContext,
    staff: StaffInfo,
    program: Program,
    i18n: I18n,
) -> None:
    """Finish a sale whose points part fell through, without points (one tap; a second tap
    replays the first posting)."""
    message = query.message
    if not isinstance(message, Message):
        await query.answer()
        return
    if callback_data.action == "drop":
        await query.answer()
        await edit_text(message, _("Not posted."))
        return
    try:
        result = await finish_earn_only(
            session,
            program,
            staff,
            callback_data.request,
            again=callback_data.action == "again",
            reply=StaffChat(message.chat.id, i18n.current_locale),
        )
    except RequestClosed:
        await query.answer(_("This sale is closed. Scan the card again."), show_alert=True)
        return
    except RepeatSale as repeat:
        await query.answer()
        await message.answer(
            _again_text(repeat, program),
            reply_markup=_again_markup(
                EarnOnlyCb(request=callback_data.request, action="again").pack(),
                EarnOnlyCb(request=callback_data.request, action="drop").pack(),
            ),
        )
        return
    await query.answer()
    await edit_markup(message, None)
    # Remembered for /cancel unless the cashier is already in another sale's dialog.
    idle = not (await state.get_data()).get("dialog")
    await _posted(message, state if idle else None, result, program)


async def points_entered(
    message: Message,
    session: AsyncSession,
    state: FSMContext,
    staff: StaffInfo,
    program: Program,
    i18n: I18n,
) -> None:
    if await _open_sale(message, state) is None:
        return
    text = (message.text or "").strip().lower()
    if text in ("max", _("max").lower()):
        points = None
    elif text.isascii() and text.isdigit() and len(text) <= 18:
        points = int(text)
    else:
        await message.answer(_("Send a whole number of points, or tap Max."))
        return
    await _request(message, session, state, staff, program, i18n, points)


async def max_points(
    query: CallbackQuery,
    callback_data: TillCb,
    session: AsyncSession,
    state: FSMContext,
    staff: StaffInfo,
    program: Program,
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
        await _request(query.message, session, state, staff, program, i18n, None)


async def _request(
    message: Message,
    session: AsyncSession,
    state: FSMContext,
    staff: StaffInfo,
    program: Program,
    i18n: I18n,
    points: int | None,
) -> None:
    data = await state.get_data()
    try:
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
            discount_percent=Decimal(data.get("discount") or 0),
        )
    except DiscountChanged:
        await _discount_changed(message, state)
        return
    await state.set_state(None)
    await state.set_data({"last": {"request": req.public_id}})
    currency = program.program.currency
    if req.status == "unreachable":
        closed = RENDERERS["request_closed"](program, closed_params(req, button=True))
        await message.answer(closed.text, reply_markup=closed.markup)
        return
    minutes = REQUEST_TTL // timedelta(minutes=1)
    waiting = await message.answer(
        _n(
            "⏳ Waiting for the member to confirm {points} ({money}) in Telegram. The request "
            "lasts {minutes} minute.",
            "⏳ Waiting for the member to confirm {points} ({money}) in Telegram. The request "
            "lasts {minutes} minutes.",
            minutes,
        ).format(
            points=fmt.points(req.points),
            money=fmt.money(req.money, currency),
            minutes=fmt.number(minutes),
        )
    )
    await note_messages(session, req.public_id, staff_message_id=waiting.message_id)


async def cancel(
    message: Message,
    session: AsyncSession,
    state: FSMContext,
    staff: StaffInfo,
    program: Program,
) -> None:
    """Leave the dialog, and never say "nothing was posted" about a sale that was."""
    data = await state.get_data()
    await state.clear()
    last = data.get("last") if not data.get("dialog") else None
    if last and "request" in last:
        req, result = await request_outcome(session, program, staff, last["request"])
        if req.status == "pending":
            # Withdrawn: the member can no longer confirm it. The cashier is told (with the
            # button to post the sale without points) by the notice the closing owes.
            try:
                await close_request(
                    session,
                    program,
                    req.public_id,
                    status="cancelled",
                    telegram_id=None,
                    why="withdrawn",
                )
                return
            except RequestClosed:  # the member answered meanwhile: say what came of it
                req, result = await request_outcome(session, program, staff, last["request"])
        last = result and {
            **_last_sale(result),
            "redeemed": result.points_redeemed,
            "points_money": str(result.to_pay - result.paid),
        }
    if not last:
        await message.answer(
            _("Cancelled. Nothing was posted.")
            if data.get("dialog")
            else _("No sale is open: there is nothing to cancel.")
        )
        return
    await state.set_data({"last": last})  # asked again, the answer is the same
    currency = program.program.currency
    if last.get("redeemed"):
        what = _("No. {number}: {amount}, {redeemed} paid {money}, +{earned}").format(
            number=last["tx"],
            amount=fmt.money(Decimal(last["amount"]), currency),
            redeemed=fmt.points(last["redeemed"]),
            money=fmt.money(Decimal(last["points_money"]), currency),
            earned=fmt.points(last["earned"]),
        )
    else:
        what = _("No. {number}: {amount}, +{earned}").format(
            number=last["tx"],
            amount=fmt.money(Decimal(last["amount"]), currency),
            earned=fmt.points(last["earned"]),
        )
    charged = discounts.sold(program, last)  # "" for a sale without a discount
    # A manager may have refunded it since: never offer to refund what was given back.
    refunds = await sale_refunds(session, int(last["tx"]))
    if refunds is not None and refunds.left <= 0:
        head = _("Nothing to cancel: the last sale was posted, then refunded in full.")
        undo = ""
    elif refunds is not None and refunds.refunded:
        head = _("Nothing to cancel: the last sale was already posted.")
        undo = _(
            "{refunded} of it was refunded since. To undo the rest ({left}), a manager "
            "refunds it: /refund {number} all reason"
        ).format(
            refunded=fmt.money(refunds.refunded, currency),
            left=fmt.money(refunds.left, currency),
            number=last["tx"],
        )
    else:
        head = _("Nothing to cancel: the last sale was already posted.")
        undo = _("To undo it, a manager refunds it: /refund {number} all reason").format(
            number=last["tx"]
        )
    await message.answer("\n".join([head, what, *filter(None, [charged, undo])]))


def build() -> Router:
    router = Router(name="till")
    router.message.filter(PrivateChat(), IsStaff("sale"))
    router.callback_query.filter(IsStaff("sale"))
    router.message.register(
        scanned_link, CommandStart(deep_link=True, magic=F.args.startswith(CARD))
    )
    router.message.register(cancel, Command("cancel"))
    # A card, in whatever step the cashier is, opens that member's sale: the next amount can
    # only ever go to the member last shown (no amount has 12 digits and a check digit).
    router.message.register(card_photo, HasPhoto())
    router.message.register(card_number, IsCardNumber())
    router.message.register(card_number, StateFilter(None), TextMatches(CARD_NUMBER))
    router.message.register(amount_entered, StateFilter(Till.amount), HasText(), ~IsCommand())
    router.message.register(points_entered, StateFilter(Till.points), HasText(), ~IsCommand())
    router.callback_query.register(max_points, TillCb.filter(F.action == "max"))
    router.callback_query.register(post_again, TillCb.filter(F.action.in_({"again", "pay"})))
    router.callback_query.register(earn_only, EarnOnlyCb.filter())
    router.callback_query.register(choose, TillCb.filter())
    return router
