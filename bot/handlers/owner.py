"""The program's owners (ADMIN_IDS): staff invites and revocation, manual adjustments, the
audit log."""

from __future__ import annotations

import re
from html import escape

from aiogram import Bot, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from bot import formatting as fmt
from bot.config import Settings
from bot.filters import IsOwner, PrivateChat
from bot.handlers.staff_join import role_name
from bot.links import start_link
from bot.menus import clear_chat_menu, set_owner_menus
from db.adjust import adjust
from db.cards import normalize_card_number
from db.errors import UnknownMember
from db.members import find_by_card
from db.program import Program
from db.staff import create_invite, list_staff, recent_audit, revoke_staff

# ASCII digits only (str.isdigit() also passes "²", which int() refuses), and no more than
# a bigint holds.
ID = re.compile(r"[0-9]{1,18}")
POINTS = re.compile(r"[+-]?[0-9]{1,18}")
INVITE_USAGE = (
    "/staff_invite coffee cashier · /staff_invite coffee manager · /staff_invite marketer"
)


async def staff_invite(
    message: Message, command: CommandObject, bot: Bot, session: AsyncSession
) -> None:
    parts = (command.args or "").split()
    if parts == ["marketer"]:
        slug, role = None, "marketer"
    elif len(parts) == 2 and parts[1] in ("cashier", "manager"):
        slug, role = parts
    else:
        await message.answer(_("Usage: {usage}").format(usage=INVITE_USAGE))
        return
    assert message.from_user is not None
    token = await create_invite(
        session, created_by=message.from_user.id, role=role, partner_slug=slug
    )
    link = await start_link(bot, token)
    await message.answer(
        _(
            "A one-time invite for a {role}{where}, valid 24 hours. Send it to that person only:"
        ).format(role=role_name(role), where=f" ({slug})" if slug else "")
        + f"\n{link}"
    )


async def staff_list(message: Message, session: AsyncSession) -> None:
    staff = await list_staff(session)
    if not staff:
        await message.answer(_("No staff yet. Invite someone: {usage}").format(usage=INVITE_USAGE))
        return
    lines = [_("👥 Staff (revoke with /staff_revoke ID):")]
    for s in staff:
        lines.append(
            f"{s.id}: tg {s.telegram_id} · {role_name(s.role)}"
            + (f" · {escape(s.partner_slug)}" if s.partner_slug else "")
        )
    await message.answer("\n".join(lines))


async def staff_revoke(
    message: Message,
    command: CommandObject,
    session: AsyncSession,
    bot: Bot,
    i18n: I18n,
    settings: Settings,
) -> None:
    arg = (command.args or "").strip()
    if not ID.fullmatch(arg):
        await message.answer(_("Usage: /staff_revoke ID (the IDs are in /staff_list)"))
        return
    assert message.from_user is not None
    staff = await revoke_staff(session, int(arg), actor=message.from_user.id)
    await message.answer(
        _("Revoked: {id} ({role}). Their staff buttons stop working now.").format(
            id=staff.id, role=role_name(staff.role)
        )
    )
    # Their chat's menu goes back to the members' one (an owner keeps the owner's menu).
    if staff.telegram_id in settings.admin_ids:
        await set_owner_menus(bot, i18n, [staff.telegram_id])
    else:
        await clear_chat_menu(bot, staff.telegram_id)


async def adjust_points(
    message: Message,
    command: CommandObject,
    session: AsyncSession,
    program: Program,
) -> None:
    parts = (command.args or "").split(maxsplit=2)
    number = normalize_card_number(parts[0]) if parts else None
    if len(parts) < 3 or number is None or not POINTS.fullmatch(parts[1]):
        await message.answer(_("Usage: /adjust CARD-NUMBER +POINTS|-POINTS REASON"))
        return
    member = await find_by_card(session, number)
    await session.rollback()
    if member is None:
        raise UnknownMember()
    assert message.from_user is not None
    result = await adjust(
        session,
        program,
        member_id=member.id,
        points=int(parts[1]),
        reason=parts[2],
        key=f"adjust:{message.chat.id}:{message.message_id}",
        actor=message.from_user.id,
    )
    await message.answer(
        _("Done: {points} for card {card}. Balance: {balance}.").format(
            points=parts[1], card=number, balance=fmt.points(result.balance)
        )
    )


async def audit_log(message: Message, command: CommandObject, session: AsyncSession) -> None:
    arg = command.args or ""
    limit = int(arg) if ID.fullmatch(arg) else 20
    entries = await recent_audit(session, min(limit, 100))
    if not entries:
        await message.answer(_("The audit log is empty."))
        return
    lines = [_("🗒 Last {n} staff actions:").format(n=len(entries))]
    for e in entries:
        who = f"tg {e.actor_telegram_id}" if e.actor_telegram_id else "—"
        extra = ", ".join(f"{k}={v}" for k, v in e.details.items() if v is not None)
        lines.append(
            escape(
                f"{fmt.moment(e.created_at)} · {who} · {e.action}"
                + (f" · {e.partner}" if e.partner else "")
                + (f" · member {e.member_id}" if e.member_id else "")
                + (f" · #{e.transaction_id}" if e.transaction_id else "")
                + (f" · {extra}" if extra else "")
            )
        )
    await message.answer("\n".join(lines)[:4000])


def build() -> Router:
    router = Router(name="owner")
    router.message.filter(PrivateChat(), IsOwner())
    router.message.register(staff_invite, Command("staff_invite"))
    router.message.register(staff_list, Command("staff_list"))
    router.message.register(staff_revoke, Command("staff_revoke"))
    router.message.register(adjust_points, Command("adjust"))
    router.message.register(audit_log, Command("audit"))
    return router
