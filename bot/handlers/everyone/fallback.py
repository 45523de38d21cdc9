"""Whatever no other router took: what happened and what to do, for the person's roles
(bot/roles.py). Staff are never told to join when they typed something meant for the till:
a closed sale, a role they do not have, or staff rights taken away are said as such."""

from __future__ import annotations

import re
from html import escape

from aiogram import Router
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from bot import roles
from bot.config import Settings
from bot.filters import PrivateChat, command_name
from db.usecases.members import MemberInfo
from db.usecases.staff import StaffInfo, former_staff

# What a cashier types at the till: an amount or a card number (digits near the start).
TILL_INPUT = re.compile(r"^\D{0,4}\d")
STAFF_COMMANDS = frozenset(
    cmd.name for role in (*roles.STAFF_ROLES, roles.OWNER) for cmd in roles.COMMANDS[role]
)


def no_longer_staff(former: StaffInfo) -> str:
    where = f" · {escape(former.partner_name)}" if former.partner_name else ""
    return _(
        "You are no longer staff ({role}{where}): staff commands and buttons do not work for "
        "you any more. If this is a mistake, ask the program's owner for a new invite."
    ).format(role=roles.role_name(former.role), where=where)


async def _former(session: AsyncSession, message: Message | CallbackQuery) -> StaffInfo | None:
    if message.from_user is None:
        return None
    return await former_staff(session, message.from_user.id)


def _not_theirs(command: str, who: list[str], staff: StaffInfo | None) -> str:
    """A known command none of the person's roles has."""
    needed = roles.roles_for(command)
    if roles.MEMBER in needed:
        if not who:
            return _("You are not a member yet: send /start to join.")
        return _(
            "/{command} is for members: to collect points yourself too, join with /start."
        ).format(command=command)
    text = _("/{command} is for: {roles}.").format(
        command=command, roles=", ".join(roles.role_name(role) for role in needed)
    )
    if staff is not None and roles.MANAGER in needed and staff.partner_id is not None:
        return text + " " + _("Ask your manager.")
    return text + " " + _("/help shows your commands; the program's owner gives roles.")


async def _at_the_till(state: FSMContext) -> str:
    """A cashier typed an amount or a number outside a sale's prompt."""
    data = await state.get_data()
    if data.get("dialog"):
        return _(
            "Tap “🧾 Sale: earn points” or “💳 Sale: use points” above first, then type the "
            "amount."
        )
    if data.get("last"):
        return _("This sale is closed. Scan the card again.")
    return _(
        "No sale is open: scan the member's card, send a photo of it, or type the card "
        "number first."
    )


async def anything_else(
    message: Message,
    session: AsyncSession,
    state: FSMContext,
    settings: Settings,
    member: MemberInfo | None = None,
    staff: StaffInfo | None = None,
) -> None:
    text = message.text or ""
    owner = message.from_user is not None and message.from_user.id in settings.admin_ids
    who = roles.roles_of(member=member, staff=staff, owner=owner)
    # A document's or a photo's caption may carry the command (/simulate with a file).
    command = command_name(text or message.caption)
    staff_like = command in STAFF_COMMANDS or bool(TILL_INPUT.match(text) or message.photo)
    if staff is None and not owner and (member is None or staff_like):
        former = await _former(session, message)
        if former is not None:
            await message.answer(no_longer_staff(former))
            return
    if command == "cancel":
        await message.answer(_("Nothing to cancel."))
    elif command is not None and roles.known(command):
        await message.answer(_not_theirs(command, who, staff))
    elif command is not None:
        await message.answer(_("I do not know that command. Send /help to see what I can do."))
    elif staff is not None and staff.role in (roles.CASHIER, roles.MANAGER) and staff_like:
        await message.answer(await _at_the_till(state))
    elif not who:
        await message.answer(_("You are not a member yet: send /start to join."))
    else:
        await message.answer(_("I did not understand that. Send /help to see what I can do."))


async def stale_button(
    query: CallbackQuery,
    session: AsyncSession,
    settings: Settings,
    staff: StaffInfo | None = None,
) -> None:
    if staff is None and query.from_user.id not in settings.admin_ids:
        former = await _former(session, query)
        if former is not None:
            await query.answer(
                _("You are no longer staff: these buttons do not work for you any more."),
                show_alert=True,
            )
            return
    await query.answer(_("This button is no longer active."))


def build() -> Router:
    router = Router(name="fallback")
    router.message.register(anything_else, PrivateChat())
    router.callback_query.register(stale_button)
    return router
