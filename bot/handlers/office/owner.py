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

from bot.config import Settings
from bot.filters import IsOwner, PrivateChat
from bot.roles import role_name
from bot.views import formatting as fmt
from bot.views.links import start_link
from bot.views.menus import clear_chat_menu, set_owner_menus
from db.rules.cards import CARD_DIGITS, format_card_number, normalize_card_number
from db.rules.errors import UnknownMember
from db.rules.program import Program
from db.usecases.adjust import adjust
from db.usecases.api_keys import KEY_PREFIX
from db.usecases.members import find_by_card
from db.usecases.staff import StaffInfo, create_invite, list_staff, recent_audit, revoke_staff

# ASCII digits only (str.isdigit() also passes "²", which int() refuses), and no more than
# a bigint holds.
ID = re.compile(r"[0-9]{1,18}")
# Points always carry their sign: nothing typed after a card number is read as its digits.
POINTS = re.compile(r"[+-][0-9]{1,18}")
ADJUST_USAGE = "/adjust 4507 1667 1208 +50 reason"
INVITE_USAGE = (
    "/staff_invite coffee cashier · /staff_invite coffee manager · /staff_invite marketer"
)


async def staff_invite(
    message: Message, command: CommandObject, bot: Bot, session: AsyncSession, program: Program
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
        ).format(
            role=role_name(role),
            where=f" ({escape(fmt.partner_name(program, slug))})" if slug else "",
        )
        + f"\n{link}"
    )


def _who(s: StaffInfo, program: Program) -> str:
    """ "Carl · cashier · Bean There Coffee": the name Telegram gave when they joined."""
    name = escape(s.first_name) if s.first_name else f"tg {s.telegram_id}"
    where = f" · {fmt.partner_html(program, s.partner_slug)}" if s.partner_slug else ""
    return f"{name} · {role_name(s.role)}{where}"


async def staff_list(message: Message, session: AsyncSession, program: Program) -> None:
    staff = await list_staff(session)
    if not staff:
        await message.answer(_("No staff yet. Invite someone: {usage}").format(usage=INVITE_USAGE))
        return
    lines = [_("👥 Staff (revoke with /staff_revoke ID):")]
    lines += [f"{s.id}: {_who(s, program)}" for s in staff]
    await message.answer("\n".join(lines))


async def staff_revoke(
    message: Message,
    command: CommandObject,
    session: AsyncSession,
    program: Program,
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
        _("Revoked: {id}: {who}. Their staff buttons stop working now.").format(
            id=staff.id, who=_who(staff, program)
        )
    )
    # Their chat's menu goes back to the members' one (an owner keeps the owner's menu).
    if staff.telegram_id in settings.admin_ids:
        await set_owner_menus(bot, i18n, [staff.telegram_id])
    else:
        await clear_chat_menu(bot, staff.telegram_id)


def split_adjust(args: str) -> tuple[str, str, str] | None:
    """(card number, points, reason) of `/adjust`'s arguments, or None. The card number may
    be typed in groups ("4507 1667 1208", as /card shows it): leading groups of digits are
    taken until they make exactly twelve digits, so the points that follow are never read
    as part of the number."""
    parts = args.split()
    digits, used = "", 0
    while used < len(parts) and len(digits) < CARD_DIGITS:
        group = parts[used].replace("-", "")
        if not (group.isascii() and group.isdigit()):
            break
        digits += group
        used += 1
    number = normalize_card_number(digits) if len(digits) == CARD_DIGITS else None
    if number is None or len(parts) < used + 2 or not POINTS.fullmatch(parts[used]):
        return None
    reason = args.split(maxsplit=used + 1)[used + 1]
    return number, parts[used], reason


async def adjust_points(
    message: Message,
    command: CommandObject,
    session: AsyncSession,
    program: Program,
) -> None:
    parsed = split_adjust(command.args or "")
    if parsed is None:
        await message.answer(
            _("Usage: /adjust CARD-NUMBER +POINTS|-POINTS REASON, like {example}").format(
                example=ADJUST_USAGE
            )
        )
        return
    number, points, reason = parsed
    member = await find_by_card(session, number)
    if member is None:
        raise UnknownMember()
    assert message.from_user is not None
    result = await adjust(
        session,
        program,
        member_id=member.id,
        points=int(points),
        reason=reason,
        key=f"adjust:{message.chat.id}:{message.message_id}",
        actor=message.from_user.id,
    )
    await message.answer(
        _("Done: {points} for {name} (card {card}). Balance: {balance}.").format(
            points=f"{int(points):+d}",
            name=escape(member.first_name) or "—",
            card=format_card_number(number),
            balance=fmt.points(result.balance),
        )
    )


async def audit_log(
    message: Message,
    command: CommandObject,
    session: AsyncSession,
    program: Program,
    settings: Settings,
) -> None:
    arg = command.args or ""
    limit = int(arg) if ID.fullmatch(arg) else 20
    entries = await recent_audit(session, min(limit, 100))
    if not entries:
        await message.answer(_("The audit log is empty."))
        return
    zone = program.program.zone
    lines: list[str] = []
    for e in entries:
        if e.api_key:
            who = _("API key {key}…").format(key=escape(KEY_PREFIX + e.api_key))
        elif e.actor_name:
            who = escape(e.actor_name)
        elif e.actor_telegram_id in settings.admin_ids:
            who = _("owner")
        elif e.actor_deleted:
            who = _("a member who deleted their data")
        else:
            who = f"tg {e.actor_telegram_id}" if e.actor_telegram_id else "—"
        parts = [fmt.moment(e.created_at.astimezone(zone)), who, escape(e.action)]
        if e.partner:
            parts.append(fmt.partner_html(program, e.partner))
        if e.staff_telegram_id is not None and e.staff_telegram_id != e.actor_telegram_id:
            parts.append(
                _("staff: {name}").format(
                    name=escape(e.staff_name or "") or f"tg {e.staff_telegram_id}"
                )
            )
        if e.member_id:
            parts.append(
                _("member: {name} ({card})").format(
                    name=escape(e.member_name), card=format_card_number(e.member_card or "")
                )
                if e.member_name
                else _("member {id}").format(id=e.member_id)
            )
        if e.transaction_id:
            parts.append(_("No. {number}").format(number=e.transaction_id))
        extra = ", ".join(f"{k}={v}" for k, v in e.details.items() if v is not None)
        if extra:
            parts.append(escape(extra))
        line = " · ".join(parts)
        if sum(len(x) + 1 for x in lines) + len(line) > 3900:
            break  # whole lines only: a cut could split an escaped character
        lines.append(line)
    head = _("🗒 Last {n} staff actions:").format(n=len(lines))
    await message.answer("\n".join([head, *lines]))


def build() -> Router:
    router = Router(name="owner")
    router.message.filter(PrivateChat(), IsOwner())
    router.message.register(staff_invite, Command("staff_invite"))
    router.message.register(staff_list, Command("staff_list"))
    router.message.register(staff_revoke, Command("staff_revoke"))
    router.message.register(adjust_points, Command("adjust"))
    router.message.register(audit_log, Command("audit"))
    return router
