"""/privacy: export everything we hold about the member, switch offers, delete the account."""

from __future__ import annotations

import json
from dataclasses import replace

from aiogram import F, Router
from aiogram.filters import Command
from aiogram.types import BufferedInputFile, CallbackQuery, Message, ReplyKeyboardRemove
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from bot.callbacks import OffersCb, PrivacyCb
from bot.filters import IsMember, PrivateChat, TextIs
from bot.views import formatting as fmt
from bot.views import keyboards
from bot.views.editing import edit_text
from db.queries.wallet import set_marketing_consent
from db.rules.tokens import identity_hash
from db.usecases.members import MemberInfo
from db.usecases.privacy import delete_member, export_member_data


def _overview(member: MemberInfo) -> str:
    return "\n".join(
        [
            _("🔐 <b>Your data</b>"),
            _(
                "We keep your Telegram id, first name, language, card number, your points and "
                "transactions, and your consents. Partners see your first name and tier at the "
                "till, never your Telegram account."
            ),
            _(
                "If you delete your account, your Telegram id and name are erased everywhere "
                "and your remaining points are forfeited. The program's accounts keep the "
                "account's transactions (amounts, partners, dates) and its staff audit rows "
                "under a number that no longer leads to you, as bookkeeping requires. If you "
                "had a welcome gift or an invitation reward, we also keep a keyed hash of your "
                "Telegram id (not the id itself; only the program's secret key could match it "
                "to an id), so that these rewards are given once per person."
            ),
            _("Offers and news: {state}.").format(
                state=_("on") if member.marketing_consent else _("off")
            ),
        ]
    )


async def privacy(message: Message, member: MemberInfo) -> None:
    await message.answer(
        _overview(member), reply_markup=keyboards.privacy_keyboard(member.marketing_consent)
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
    query: CallbackQuery, callback_data: PrivacyCb, session: AsyncSession, member: MemberInfo
) -> None:
    """Offers on or off as the button says (not a toggle: a double tap changes nothing more);
    the overview is redrawn, so its status line and its button agree."""
    consent = callback_data.action == "offers_on"
    if consent != member.marketing_consent:
        await set_marketing_consent(session, member.id, consent)
    await query.answer(_("Offers are on.") if consent else _("Offers are off."))
    if isinstance(query.message, Message):
        await edit_text(
            query.message,
            _overview(replace(member, marketing_consent=consent)),
            reply_markup=keyboards.privacy_keyboard(consent),
        )


async def ask_delete(query: CallbackQuery, member: MemberInfo) -> None:
    await query.answer()
    if isinstance(query.message, Message):
        await query.message.answer(
            _("Delete your account? Your {points} will be lost and this cannot be undone.").format(
                points=fmt.points(member.balance)
            ),
            reply_markup=keyboards.delete_keyboard(),
        )


async def cancel_delete(query: CallbackQuery) -> None:
    await query.answer()
    if isinstance(query.message, Message):
        await edit_text(query.message, _("Nothing was deleted."))


async def confirm_delete(
    query: CallbackQuery, session: AsyncSession, member: MemberInfo, secret: bytes
) -> None:
    forfeited = await delete_member(
        session, member, identity=identity_hash(secret, query.from_user.id)
    )
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


async def stop_offers(
    query: CallbackQuery, session: AsyncSession, member: MemberInfo | None = None
) -> None:
    """The "stop offers" button under every campaign message. Pressing it again, or after
    leaving, changes nothing and gets the same answer."""
    if member is not None and member.marketing_consent:
        await set_marketing_consent(session, member.id, False)
    await query.answer(_("Offers are off. You can turn them on again in /privacy."))


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
    router.callback_query.register(ask_delete, PrivacyCb.filter(F.action == "delete"))
    router.callback_query.register(cancel_delete, PrivacyCb.filter(F.action == "cancel"))
    router.callback_query.register(confirm_delete, PrivacyCb.filter(F.action == "confirm"))
    return router
