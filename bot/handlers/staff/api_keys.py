"""/api_key: a partner's keys to the partner API (bot/api), for its manager (their own
partner's) and for owners (`/api_key PARTNER`, any partner's). Who may, and what a key is,
is the use case's (db/usecases/api_keys.py): a button pressed twice makes one key and
revokes once."""

from __future__ import annotations

import secrets
from typing import Any

from aiogram import F, Router
from aiogram.filters import Command, CommandObject, or_f
from aiogram.types import CallbackQuery, Message
from sqlalchemy.ext.asyncio import AsyncSession

from bot.callbacks import ApiKeyCb
from bot.config import Settings
from bot.filters import IsOwner, IsStaff, PrivateChat
from bot.views import api_keys as views
from bot.views.editing import edit_markup, edit_text
from db.rules.program import Program
from db.usecases.api_keys import create_key, list_keys, revoke_key
from db.usecases.staff import StaffInfo


def _partner(command: CommandObject, staff: StaffInfo | None) -> str | None:
    """The partner asked for: an owner names one; a manager's is their own."""
    if command.args:
        return command.args.strip().lower()
    return staff.partner_slug if staff is not None else None


async def api_key(
    message: Message,
    command: CommandObject,
    session: AsyncSession,
    program: Program,
    settings: Settings,
    staff: StaffInfo | None = None,
) -> None:
    assert message.from_user is not None
    partner = _partner(command, staff)
    if partner is None:
        await message.answer(views.usage(program))
        return
    slug, keys = await list_keys(
        session,
        actor=message.from_user.id,
        owners=settings.admin_ids,
        staff=staff,
        partner_slug=partner,
    )
    text, markup = views.listing(program, slug, keys, secrets.token_urlsafe(9))
    await message.answer(text, reply_markup=markup)


async def new_key(
    query: CallbackQuery,
    callback_data: ApiKeyCb,
    session: AsyncSession,
    program: Program,
    settings: Settings,
    staff: StaffInfo | None = None,
) -> None:
    info, key = await create_key(
        session,
        actor=query.from_user.id,
        owners=settings.admin_ids,
        staff=staff,
        partner_slug=callback_data.partner,
        scopes=views.CHOICES.get(callback_data.scopes, ()),
        op=callback_data.op,
    )
    if key is None:
        await query.answer(views.made_already(), show_alert=True)
        return
    await query.answer()
    if isinstance(query.message, Message):
        await edit_markup(query.message, None)  # its buttons made their key
        await query.message.answer(views.created(program, info, key))


async def ask_revoke(
    query: CallbackQuery,
    callback_data: ApiKeyCb,
    session: AsyncSession,
    settings: Settings,
    staff: StaffInfo | None = None,
) -> None:
    await query.answer()
    _slug, keys = await list_keys(
        session,
        actor=query.from_user.id,
        owners=settings.admin_ids,
        staff=staff,
        partner_slug=callback_data.partner,
    )
    info = next((k for k in keys if k.id == callback_data.key), None)
    if not isinstance(query.message, Message):
        return
    if info is None:  # revoked meanwhile, or not this partner's
        await query.message.answer(views.gone())
        return
    text, markup = views.ask_revoke(info)
    await query.message.answer(text, reply_markup=markup)


async def revoke(
    query: CallbackQuery,
    callback_data: ApiKeyCb,
    session: AsyncSession,
    settings: Settings,
    staff: StaffInfo | None = None,
) -> None:
    info, now = await revoke_key(
        session,
        actor=query.from_user.id,
        owners=settings.admin_ids,
        staff=staff,
        key_id=callback_data.key,
    )
    await query.answer()
    if isinstance(query.message, Message):
        await edit_text(query.message, views.revoked(info, now))


async def keep(query: CallbackQuery) -> None:
    await query.answer()
    if isinstance(query.message, Message):
        await edit_text(query.message, views.kept())


def build() -> Router:
    router = Router(name="api keys")
    allowed: Any = or_f(IsStaff("api_keys"), IsOwner())
    router.message.filter(PrivateChat(), allowed)
    router.callback_query.filter(allowed)
    router.message.register(api_key, Command("api_key"))
    router.callback_query.register(new_key, ApiKeyCb.filter(F.action == "new"))
    router.callback_query.register(ask_revoke, ApiKeyCb.filter(F.action == "revoke"))
    router.callback_query.register(revoke, ApiKeyCb.filter(F.action == "sure"))
    router.callback_query.register(keep, ApiKeyCb.filter(F.action == "keep"))
    return router
