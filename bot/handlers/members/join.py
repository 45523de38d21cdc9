"""/start: joining (rules, consent, language), referral links, and card links opened by
someone who is not at a till."""

from __future__ import annotations

from html import escape

from aiogram import F, Router
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from bot.callbacks import ConsentCb, JoinCb, LanguageCb
from bot.filters import PrivateChat, TextIs
from bot.handlers.members import gifts
from bot.views import formatting as fmt
from bot.views import keyboards, texts
from bot.views.editing import edit_markup, edit_text
from db.queries.wallet import set_language, set_marketing_consent
from db.rules.program import Program
from db.rules.tokens import (
    CARD,
    REFERRAL,
    REFERRAL_SOURCE,
    SOURCE,
    CardExpired,
    InvalidToken,
    identity_hash,
    read_card_token,
    read_referral_token,
    read_source,
)
from db.usecases.members import MemberInfo, inviter_name, register_member, rewards_taken


async def _returning(session: AsyncSession, secret: bytes, user_id: int) -> tuple[bool, bool]:
    """(welcome gift, invitation reward) this person had in an account they deleted."""
    taken = await rewards_taken(session, identity_hash(secret, user_id))
    return taken


async def _offer_to_join(
    message: Message, program: Program, taken: tuple[bool, bool] = (False, False)
) -> None:
    text = texts.rules_summary(program, welcome=not taken[0])
    if any(taken):
        text += "\n\n" + _(
            "You had an account with us before: the welcome gift and invitation rewards are "
            "given once per person."
        )
    await message.answer(
        text,
        reply_markup=keyboards.join_keyboard(
            str(program.program.rules_url) if program.program.rules_url else None
        ),
    )


async def offer_to_join(
    message: Message, session: AsyncSession, program: Program, secret: bytes
) -> None:
    """The rules and the join button, for someone who is not a member yet."""
    assert message.from_user is not None
    await _offer_to_join(message, program, await _returning(session, secret, message.from_user.id))


async def _welcome_back(message: Message, member: MemberInfo) -> None:
    await message.answer(
        _("Welcome back, {name}! You have {points}.").format(
            name=escape(member.first_name) or "🙂", points=fmt.points(member.balance)
        ),
        reply_markup=keyboards.main_menu(),
    )


async def start_with_payload(
    message: Message,
    command: CommandObject,
    state: FSMContext,
    session: AsyncSession,
    program: Program,
    secret: bytes,
    member: MemberInfo | None = None,
) -> None:
    payload = command.args or ""
    assert message.from_user is not None
    taken = (False, False) if member else await _returning(session, secret, message.from_user.id)
    if payload.startswith(REFERRAL):
        await _referral(message, payload, session, state, program, secret, member, taken)
    elif payload.startswith(SOURCE):
        await _from_source(message, payload, state, program, member, taken)
    elif payload.startswith(CARD):
        # Staff scanning a card are served by the staff router before this one.
        try:
            read_card_token(secret, payload)
        except CardExpired:
            await message.answer(_("This card code has expired: card codes last a few minutes."))
        except InvalidToken:
            await message.answer(_("This link is not valid. Check it, or ask for a new one."))
        else:
            await message.answer(_("This is a member card: it is for partner staff to scan."))
        if member is None:
            await _offer_to_join(message, program, taken)
    else:
        await message.answer(_("This link is not valid. Check it, or ask for a new one."))
        await (
            _welcome_back(message, member) if member else _offer_to_join(message, program, taken)
        )


async def _from_source(
    message: Message,
    payload: str,
    state: FSMContext,
    program: Program,
    member: MemberInfo | None,
    taken: tuple[bool, bool],
) -> None:
    """A join link with a source (a poster's, an ad's): the source is kept until they join
    (the last such link opened before joining counts)."""
    if member is not None:
        await _welcome_back(message, member)
        return
    try:
        source = read_source(payload)
    except InvalidToken:
        await message.answer(_("This link is not valid. Check it, or ask for a new one."))
    else:
        await state.update_data(source=source)
    await _offer_to_join(message, program, taken)


async def _referral(
    message: Message,
    payload: str,
    session: AsyncSession,
    state: FSMContext,
    program: Program,
    secret: bytes,
    member: MemberInfo | None,
    taken: tuple[bool, bool],
) -> None:
    if member is not None:
        await message.answer(_("You are already a member: invitations are for new members."))
        await _welcome_back(message, member)
        return
    try:
        inviter = read_referral_token(secret, payload)
    except InvalidToken:
        await message.answer(_("This invitation link is not valid, but you can still join."))
    else:
        await state.update_data(source=REFERRAL_SOURCE)
        if taken[1]:  # an invitation already paid for this person: promise nothing
            await _offer_to_join(message, program, taken)
            return
        await state.update_data(inviter=inviter)
        friend = await inviter_name(session, inviter)
        await message.answer(texts.invitation(program, friend))
    await _offer_to_join(message, program, taken)


async def start(
    message: Message,
    session: AsyncSession,
    program: Program,
    secret: bytes,
    member: MemberInfo | None = None,
) -> None:
    if member is not None:
        await _welcome_back(message, member)
    else:
        assert message.from_user is not None
        await _offer_to_join(
            message, program, await _returning(session, secret, message.from_user.id)
        )


async def accept_rules(
    query: CallbackQuery,
    session: AsyncSession,
    state: FSMContext,
    program: Program,
    i18n: I18n,
    secret: bytes,
    member: MemberInfo | None = None,
) -> None:
    if member is not None:  # a second tap, or an old join screen
        await query.answer(_("You are already a member."))
        return
    data = await state.get_data()
    member = await register_member(
        session,
        program,
        telegram_id=query.from_user.id,
        first_name=query.from_user.first_name,
        language=i18n.current_locale,
        inviter_id=data.get("inviter"),
        identity=identity_hash(secret, query.from_user.id),
        source=data.get("source"),
    )
    await state.clear()
    await query.answer()
    if isinstance(query.message, Message):
        await edit_markup(query.message, None)
        text = _("🎉 You are in, {name}!").format(name=escape(member.first_name) or "🙂")
        if member.balance:
            text += "\n" + _("Your welcome gift: {points}.").format(
                points=fmt.points(member.balance)
            )
        await query.message.answer(text, reply_markup=keyboards.main_menu())
        await query.message.answer(
            _(
                "Would you like partners' offers and news from us? At most a few a month; you "
                "can change this any time in /privacy."
            ),
            reply_markup=keyboards.consent_keyboard(),
        )
        if data.get("gift"):  # they came through a gift's link: offer it now
            await gifts.offer_gift(query.message, session, member, data["gift"])


async def marketing_consent(
    query: CallbackQuery,
    callback_data: ConsentCb,
    session: AsyncSession,
    member: MemberInfo | None = None,
) -> None:
    if member is None:
        await query.answer(_("Send /start to join first."), show_alert=True)
        return
    await set_marketing_consent(session, member.id, callback_data.marketing)
    await query.answer()
    if isinstance(query.message, Message):
        await edit_text(
            query.message,
            _("You will get offers. Thank you!")
            if callback_data.marketing
            else _("No offers, then. You will still hear about your own points."),
        )
        await query.message.answer(_("Show your card at the till: /card"))


async def language_menu(message: Message) -> None:
    await message.answer(_("Choose your language:"), reply_markup=keyboards.languages_keyboard())


async def choose_language(
    query: CallbackQuery,
    callback_data: LanguageCb,
    session: AsyncSession,
    state: FSMContext,
    i18n: I18n,
    program: Program,
    secret: bytes,
    member: MemberInfo | None = None,
) -> None:
    if callback_data.code == "menu":
        await query.answer()
        if isinstance(query.message, Message):
            await query.message.answer(
                _("Choose your language:"), reply_markup=keyboards.languages_keyboard()
            )
        return
    if callback_data.code not in keyboards.LANGUAGE_NAMES:
        await query.answer()
        return
    if member is not None:
        await set_language(session, member.id, callback_data.code)
    else:
        await state.update_data(language=callback_data.code)
    i18n.current_locale = callback_data.code
    await query.answer()
    if isinstance(query.message, Message):
        await edit_text(
            query.message,
            _("Language: {name}").format(name=keyboards.LANGUAGE_NAMES[callback_data.code]),
        )
        if member is not None:
            await query.message.answer(_("Done."), reply_markup=keyboards.main_menu())
        else:
            await _offer_to_join(
                query.message, program, await _returning(session, secret, query.from_user.id)
            )


def build() -> Router:
    router = Router(name="join")
    router.message.filter(PrivateChat())
    router.message.register(start_with_payload, CommandStart(deep_link=True))
    router.message.register(start, CommandStart())
    router.callback_query.register(accept_rules, JoinCb.filter(F.action == "accept"))
    router.callback_query.register(marketing_consent, ConsentCb.filter())
    router.message.register(language_menu, Command("language"))
    router.message.register(language_menu, TextIs(keyboards.LANGUAGE))
    router.callback_query.register(choose_language, LanguageCb.filter())
    return router
