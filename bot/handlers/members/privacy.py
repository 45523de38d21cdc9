"""/privacy: export everything we hold about the member, switch offers, give (change once a
year, remove) the birthday, delete the account."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import date, datetime

from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import Command, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import BufferedInputFile, CallbackQuery, Message, ReplyKeyboardRemove
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from bot.callbacks import OffersCb, PrivacyCb
from bot.filters import HasText, IsCommand, IsMember, PrivateChat, TextIs
from bot.views import formatting as fmt
from bot.views import keyboards
from bot.views import offers as offers_view
from bot.views.editing import edit_text
from db.queries.club import membership
from db.queries.wallet import set_marketing_consent
from db.rules.birthdays import BadBirthday, parse_birthday
from db.rules.program import Program
from db.rules.tokens import identity_hash
from db.usecases.birthdays import (
    Birthday,
    BirthdayLocked,
    get_birthday,
    remove_birthday,
    set_birthday,
)
from db.usecases.members import MemberInfo
from db.usecases.privacy import delete_member, export_member_data

log = logging.getLogger(__name__)


def _overview(member: MemberInfo, birthday: Birthday) -> str:
    return "\n".join(
        [
            _("🔐 <b>Your data</b>"),
            _(
                "We keep your Telegram id, first name, language, card number, your points and "
                "transactions, and your consents. Partners see your first name and tier at the "
                "till, never your Telegram account."
            ),
            _(
                "Your birthday is optional: we keep only its day and month, for the "
                "birthday promotions, and you may change it once a year (so a birthday "
                "week cannot be moved around for them) or remove it at any time."
            ),
            _(
                "If you delete your account, your Telegram id and name are erased everywhere "
                "and your remaining points are forfeited. The program's accounts keep the "
                "account's transactions (amounts, partners, dates) and its staff audit rows "
                "under a number that no longer leads to you, as bookkeeping requires. If you "
                "had a welcome gift, an invitation reward or the club's welcome points, we also "
                "keep a keyed hash of your Telegram id (not the id itself; only the program's "
                "secret key could match it to an id), so that these rewards are given once per "
                "person."
            ),
            _("Offers and news: {state}.").format(
                state=_("on") if member.marketing_consent else _("off")
            ),
            birthday_line(birthday),
        ]
    )


def birthday_line(birthday: Birthday) -> str:
    """The birthday, and when it may next be given or changed (said before any button is
    tapped: removing it does not restart the year, so giving it again may have to wait)."""
    if birthday.day is None and birthday.locked_until is not None:
        return _("Birthday: not given. You can give it again from {date}.").format(
            date=fmt.day(birthday.locked_until)
        )
    if birthday.day is None:
        return _("Birthday: not given.")
    line = _("Birthday: {day}.").format(day=offers_view.day_and_month(birthday.day))
    if birthday.locked_until is not None:
        line += " " + _("You may change it from {date}.").format(
            date=fmt.day(birthday.locked_until)
        )
    return line


async def _birthday(
    session: AsyncSession, member: MemberInfo, program: Program, now: datetime
) -> Birthday:
    return await get_birthday(session, member.id, now, program.program.zone)


async def privacy(
    message: Message,
    session: AsyncSession,
    member: MemberInfo,
    program: Program,
    clock: Callable[[], datetime],
) -> None:
    birthday = await _birthday(session, member, program, clock())
    await message.answer(
        _overview(member, birthday),
        reply_markup=keyboards.privacy_keyboard(
            member.marketing_consent, birthday.day is not None
        ),
    )


async def export(query: CallbackQuery, session: AsyncSession, member: MemberInfo) -> None:
    data = await export_member_data(session, member)
    await query.answer()
    if isinstance(query.message, Message):
        await query.message.answer_document(
            BufferedInputFile(
                json.dumps(data, ensure_ascii=False, indent=2).encode(), filename="my-data.json"
            ),
            caption=_("Everything we hold about you."),
        )


async def set_offers(
    query: CallbackQuery,
    callback_data: PrivacyCb,
    session: AsyncSession,
    member: MemberInfo,
    program: Program,
    clock: Callable[[], datetime],
) -> None:
    """Offers on or off as the button says (not a toggle: a double tap changes nothing more);
    the overview is redrawn, so its status line and its button agree."""
    consent = callback_data.action == "offers_on"
    if consent != member.marketing_consent:
        await set_marketing_consent(session, member.id, consent)
    await query.answer(_("Offers are on.") if consent else _("Offers are off."))
    birthday = await _birthday(session, member, program, clock())
    await _redraw(query, replace(member, marketing_consent=consent), birthday)


async def _redraw(query: CallbackQuery, member: MemberInfo, birthday: Birthday) -> None:
    if isinstance(query.message, Message):
        await edit_text(
            query.message,
            _overview(member, birthday),
            reply_markup=keyboards.privacy_keyboard(
                member.marketing_consent, birthday.day is not None
            ),
        )


async def ask_birthday(
    query: CallbackQuery,
    session: AsyncSession,
    state: FSMContext,
    member: MemberInfo,
    program: Program,
    clock: Callable[[], datetime],
) -> None:
    """Ask for the birthday, unless it was changed less than a year ago (then say when)."""
    birthday = await _birthday(session, member, program, clock())
    await query.answer()
    if not isinstance(query.message, Message):
        return
    if birthday.locked_until is not None:
        await query.message.answer(_locked(birthday.locked_until, given=birthday.day is not None))
        return
    await state.set_state(BirthdayDialog.day)
    await query.message.answer(
        _(
            "Send your birthday as day.month, like 14.03 (you may add the year, 14.03.1990: "
            "we keep only the day and the month). /cancel to leave it as it is."
        )
    )


def _locked(until: date, given: bool = True) -> str:
    if not given:  # removed within the year: giving it again is a change
        return _(
            "Your birthday can be changed once a year, and giving it again after removing it "
            "is a change: you can give it again from {date}."
        ).format(date=fmt.day(until))
    return _(
        "Your birthday can be changed once a year: you may change it from {date}. You can "
        "remove it at any time."
    ).format(date=fmt.day(until))


BAD_BIRTHDAY = {
    "format": lambda: _("That is not a date. Send the day and the month, like 14.03."),
    "no_such_day": lambda: _("There is no such day. Send the day and the month, like 14.03."),
    "future": lambda: _("That day has not come yet. Send your birthday, like 14.03.1990."),
    "too_old": lambda: _("Please check the year, or send only the day and the month."),
}


async def not_a_birthday(message: Message) -> None:
    await message.answer(BAD_BIRTHDAY["format"]())


async def take_birthday(
    message: Message,
    session: AsyncSession,
    state: FSMContext,
    member: MemberInfo,
    program: Program,
    clock: Callable[[], datetime],
) -> None:
    now = clock()
    zone = program.program.zone
    try:
        day = parse_birthday(message.text or "", now.astimezone(zone).date())
    except BadBirthday as bad:
        await message.answer(BAD_BIRTHDAY[bad.reason]())  # the prompt stays open
        return
    await state.clear()
    try:
        birthday = await set_birthday(session, member.id, day, now, zone)
    except BirthdayLocked as locked:
        await message.answer(_locked(locked.until))
        return
    lines = [_("🎂 Your birthday: {day}.").format(day=offers_view.day_and_month(day))]
    if birthday.locked_until is not None:
        lines.append(
            _("You may change it once a year: from {date}.").format(
                date=fmt.day(birthday.locked_until)
            )
        )
    lines.append(_("Birthday promotions for you are in /offers."))
    await message.answer("\n".join(lines))


async def drop_birthday(
    query: CallbackQuery,
    session: AsyncSession,
    member: MemberInfo,
    program: Program,
    clock: Callable[[], datetime],
) -> None:
    birthday = await remove_birthday(session, member.id, clock(), program.program.zone)
    await query.answer(_("Your birthday is removed."))
    await _redraw(query, member, birthday)


async def ask_delete(
    query: CallbackQuery,
    session: AsyncSession,
    member: MemberInfo,
    program: Program,
    clock: Callable[[], datetime],
) -> None:
    await query.answer()
    if not isinstance(query.message, Message):
        return
    text = _("Delete your account? Your {points} will be lost and this cannot be undone.").format(
        points=fmt.points(member.balance)
    )
    club = await membership(session, member.id)
    if club is not None and club.active(clock()):
        # Paid time is lost too: said before, not after.
        until = fmt.day(club.ends_at.astimezone(program.program.zone))
        text += "\n" + (
            _(
                "Your club membership, paid until {date}, ends with it, and its Telegram "
                "Stars subscription is cancelled."
            )
            if club.renewing(clock())
            else _("Your club membership, paid until {date}, ends with it.")
        ).format(date=until)
    await query.message.answer(text, reply_markup=keyboards.delete_keyboard())


async def cancel_delete(query: CallbackQuery) -> None:
    await query.answer()
    if isinstance(query.message, Message):
        await edit_text(query.message, _("Nothing was deleted."))


async def confirm_delete(
    query: CallbackQuery,
    bot: Bot,
    session: AsyncSession,
    member: MemberInfo,
    secret: bytes,
    clock: Callable[[], datetime],
) -> None:
    # Read before the deletion, which ends the membership: Telegram must stop charging.
    club = await membership(session, member.id)
    forfeited = await delete_member(
        session, member, identity=identity_hash(secret, query.from_user.id)
    )
    if club is not None and club.renewing(clock()) and club.subscription_charge_id:
        await _stop_subscription(bot, query.from_user.id, club.subscription_charge_id)
    await query.answer()
    if isinstance(query.message, Message):
        await edit_text(query.message, _("Your account is deleted."))
        await query.message.answer(
            _(
                "We erased your details; {points} were forfeited. Send /start if you ever want "
                "to join again."
            ).format(points=fmt.points(forfeited)),
            reply_markup=ReplyKeyboardRemove(),
        )


async def _stop_subscription(bot: Bot, user_id: int, charge_id: str) -> None:
    """Cancel a deleted account's Telegram Stars subscription. The account is deleted
    whatever Telegram says; a refusal is logged (a renewal that still comes is refunded:
    bot/handlers/members/club.py)."""
    try:
        await bot.edit_user_star_subscription(
            user_id=user_id, telegram_payment_charge_id=charge_id, is_canceled=True
        )
    except TelegramAPIError as exc:
        log.warning("could not cancel the club subscription of a deleted account: %s", exc)


async def stop_offers(
    query: CallbackQuery, session: AsyncSession, member: MemberInfo | None = None
) -> None:
    """The "stop offers" button under every campaign message. Pressing it again, or after
    leaving, changes nothing and gets the same answer."""
    if member is not None and member.marketing_consent:
        await set_marketing_consent(session, member.id, False)
    await query.answer(_("Offers are off. You can turn them on again in /privacy."))


class BirthdayDialog(StatesGroup):
    day = State()


def build_offers() -> Router:
    """Campaign messages' button, for anyone who got one (members who left included)."""
    router = Router(name="offers")
    router.callback_query.register(stop_offers, OffersCb.filter())
    return router


def build() -> Router:
    router = Router(name="privacy")
    router.message.filter(PrivateChat(), IsMember())
    router.callback_query.filter(IsMember())
    router.message.register(privacy, Command("privacy"))
    router.message.register(privacy, TextIs(keyboards.PRIVACY))
    router.callback_query.register(export, PrivacyCb.filter(F.action == "export"))
    router.callback_query.register(
        set_offers, PrivacyCb.filter(F.action.in_({"offers_on", "offers_off"}))
    )
    router.callback_query.register(ask_birthday, PrivacyCb.filter(F.action == "birthday"))
    router.callback_query.register(drop_birthday, PrivacyCb.filter(F.action == "no_birthday"))
    router.message.register(
        take_birthday, StateFilter(BirthdayDialog.day), HasText(), ~IsCommand()
    )
    # A photo or sticker while the birthday is asked for: ask again (/cancel leaves).
    router.message.register(not_a_birthday, StateFilter(BirthdayDialog.day), ~HasText())
    router.callback_query.register(ask_delete, PrivacyCb.filter(F.action == "delete"))
    router.callback_query.register(cancel_delete, PrivacyCb.filter(F.action == "cancel"))
    router.callback_query.register(confirm_delete, PrivacyCb.filter(F.action == "confirm"))
    return router
