"""Opening a staff invite link: whoever opens a valid one becomes staff (once)."""

from __future__ import annotations

from html import escape

from aiogram import Bot, F, Router
from aiogram.filters import CommandObject, CommandStart
from aiogram.types import Message
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from bot import roles
from bot.config import Settings
from bot.filters import PrivateChat
from bot.views.menus import set_chat_menu
from db.rules.program import Program
from db.rules.tokens import SOURCE
from db.usecases.members import MemberInfo
from db.usecases.staff import INVITE_PREFIX, accept_invite


def _full_name(message: Message) -> str:
    user = message.from_user
    assert user is not None
    name = " ".join(part for part in (user.first_name, user.last_name) if part)
    return name + (f" (@{user.username})" if user.username else "")


async def join_staff(
    message: Message,
    command: CommandObject,
    session: AsyncSession,
    bot: Bot,
    i18n: I18n,
    settings: Settings,
    program: Program,
    member: MemberInfo | None = None,
) -> None:
    """The invite is spent and its owner told (owed in the same transaction); the new staff
    member gets their role's commands, here and in their chat's command menu."""
    assert message.from_user is not None
    staff = await accept_invite(
        session,
        command.args or "",
        message.from_user.id,
        first_name=message.from_user.first_name,
        name=_full_name(message),
    )
    where = f" · {escape(staff.partner_name)}" if staff.partner_name else ""
    await message.answer(
        "\n\n".join(
            [
                _("👋 You are now {role}{where}.").format(
                    role=roles.role_name(staff.role), where=where
                ),
                roles.section(staff.role, staff.partner_name, club=roles.till_club(program)),
                _("/help lists all your commands; they are in the menu too."),
            ]
        )
    )
    owner = message.from_user.id in settings.admin_ids
    who = roles.roles_of(member=member, staff=staff, owner=owner)
    await set_chat_menu(bot, i18n, message.chat.id, who)


def build() -> Router:
    router = Router(name="staff_join")
    router.message.filter(PrivateChat())
    router.message.register(
        join_staff,
        CommandStart(
            deep_link=True,
            # "src-…" is a join link's source (db/rules/tokens.py), not an invite.
            magic=F.args.startswith(INVITE_PREFIX) & ~F.args.startswith(SOURCE),
        ),
    )
    return router
