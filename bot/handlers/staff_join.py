"""Opening a staff invite link: whoever opens a valid one becomes staff (once)."""

from __future__ import annotations

from html import escape

from aiogram import F, Router
from aiogram.filters import CommandObject, CommandStart
from aiogram.types import Message
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from bot.filters import PrivateChat
from db.staff import INVITE_PREFIX, accept_invite
from db.tokens import SOURCE


def role_name(role: str) -> str:
    return {
        "cashier": _("cashier"),
        "manager": _("manager"),
        "marketer": _("marketer"),
    }.get(role, role)


async def join_staff(message: Message, command: CommandObject, session: AsyncSession) -> None:
    assert message.from_user is not None
    staff = await accept_invite(
        session,
        command.args or "",
        message.from_user.id,
        first_name=message.from_user.first_name,
    )
    where = f" · {escape(staff.partner_name)}" if staff.partner_name else ""
    await message.answer(
        _("👋 You are now {role}{where}.").format(role=role_name(staff.role), where=where)
        + "\n"
        + (
            _(
                "At the till: scan the member's QR code with the phone camera, send a photo of "
                "the card, or type the card number. /shift shows your operations today."
            )
            if staff.role in ("cashier", "manager")
            else _("Campaigns and figures are yours.")
        )
    )


def build() -> Router:
    router = Router(name="staff_join")
    router.message.filter(PrivateChat())
    router.message.register(
        join_staff,
        CommandStart(
            deep_link=True,
            # "src-…" is a join link's source (db/tokens.py), not an invite.
            magic=F.args.startswith(INVITE_PREFIX) & ~F.args.startswith(SOURCE),
        ),
    )
    return router
