"""Who may use which command: one table of roles × commands. /help, the Telegram command
menus, the staff welcome messages and the fallback's "this is for managers" all read it, so
a command is described once. Who may do what is db/rules/access.py's table, which the routers'
filters and the use cases read (a menu is a convenience, never a permission)."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import Any

from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import lazy_gettext as __

from bot.views import formatting as fmt
from db.rules import access
from db.rules.access import CASHIER, MANAGER, MARKETER
from db.rules.program import Program

MEMBER, OWNER = "member", "owner"
# The order /help and the menus show a person's roles in: their work first, then their own
# card (staff and owners keep their member side).
ROLES = (OWNER, MANAGER, CASHIER, MARKETER, MEMBER)
STAFF_ROLES = access.STAFF_ROLES


@dataclass(frozen=True, slots=True)
class Cmd:
    name: str  # without the slash
    menu: Any  # lazy translation: the short description in Telegram's command menu
    help: Any  # lazy translation: its one line in /help, starting with the command


CARD = Cmd("card", __("Your member card"), __("/card: your member card to show at the till"))
BALANCE = Cmd(
    "balance",
    __("Points, tier and expiry"),
    __("/balance: your points, tier and what expires next"),
)
STAMPS = Cmd(
    "stamps",
    __("Your stamp cards"),
    __("/stamps: your stamp cards, where to collect them and what a full card gives"),
)
HISTORY = Cmd("history", __("Your transactions"), __("/history: your transactions"))
INVITE = Cmd("invite", __("Invite friends"), __("/invite: invite friends and both get points"))
GIFT = Cmd(
    "gift",
    __("Give points to a friend"),
    __("/gift [POINTS]: give points to a friend with a link; your open gifts"),
)
DONATE = Cmd(
    "donate",
    __("Give points to a charity"),
    __("/donate: give points to one of the program's charities"),
)
PARTNERS = Cmd(
    "partners",
    __("Partners and offers"),
    __("/partners: where to earn and spend, and current offers"),
)
OFFERS = Cmd(
    "offers",
    __("Promotions for you"),
    __("/offers: the promotions open to you, where and when"),
)
REWARDS = Cmd(
    "rewards",
    __("Rewards for your points"),
    __("/rewards: rewards you can take for your points, at each partner"),
)
VOUCHERS = Cmd(
    "vouchers",
    __("Your vouchers"),
    __("/vouchers: your vouchers to use at the till, with their QR codes"),
)
CLUB = Cmd(
    "club",
    __("The club: perks and membership"),
    __("/club: the club's perks and price, your membership, join or stop renewal"),
)
PAYSUPPORT = Cmd(
    "paysupport",
    __("Help with a payment"),
    __("/paysupport: your club payments, and help with one from the program's owner"),
)
LANGUAGE = Cmd("language", __("Change the language"), __("/language: change the language"))
PRIVACY = Cmd(
    "privacy",
    __("Your data and consent"),
    __("/privacy: your data, offers on or off, your birthday, delete your account"),
)
HELP = Cmd("help", __("What this bot can do"), __("/help: this list"))

SHIFT = Cmd("shift", __("Your operations today"), __("/shift: your operations today, with totals"))
CANCEL = Cmd(
    "cancel",
    __("Leave a sale or a dialog"),
    __("/cancel: leave the sale or dialog you are in; right after a sale, what it posted"),
)
VOUCHER = Cmd(
    "voucher",
    __("Claim a voucher by its code"),
    __("/voucher CODE: claim a member's voucher (or scan its QR code, or send a photo of it)"),
)
REFUND = Cmd(
    "refund",
    __("Refund a sale"),
    __("/refund NUMBER all|AMOUNT REASON: refund a sale of your partner (numbers in /shift)"),
)
TODAY = Cmd("today", __("Your partner's figures today"), __("/today: your partner's sales today"))
WEEK = Cmd("week", __("Your partner's figures this week"), __("/week: the same for this week"))
PARTNER_STATS = Cmd(
    "stats",
    __("Your partner's figures with a chart"),
    __("/stats [period]: your partner's figures with a chart"),
)
API_KEY = Cmd(
    "api_key",
    __("Keys for tills and shop software"),
    __("/api_key: your partner's keys to the partner API, for tills and shop software"),
)
OWNER_API_KEY = Cmd(
    "api_key",
    __("A partner's keys for tills and software"),
    __("/api_key PARTNER: a partner's keys to the partner API, to make or revoke"),
)
CAMPAIGN = Cmd(
    "campaign",
    __("Write a campaign"),
    __("/campaign: choose an audience, write a message, send it now or later"),
)
CAMPAIGNS = Cmd(
    "campaigns",
    __("Scheduled and past campaigns"),
    __("/campaigns: the scheduled campaigns (to cancel) and the results of past ones"),
)
STATS = Cmd(
    "stats",
    __("The program's figures"),
    __("/stats [period]: the program's and each partner's figures with a chart"),
)
SETTLEMENT = Cmd(
    "settlement",
    __("Settlement between partners"),
    __("/settlement [period]: who owes whom, as a CSV"),
)
SIMULATE = Cmd(
    "simulate",
    __("Test a program file before launch"),
    __("/simulate [FROM TO]: replay a period's sales through a proposed program file"),
)
STAFF_INVITE = Cmd(
    "staff_invite",
    __("Invite staff"),
    __("/staff_invite PARTNER cashier|manager, or /staff_invite marketer: a one-time invite"),
)
STAFF_LIST = Cmd("staff_list", __("Who is staff"), __("/staff_list: who is staff, with IDs"))
STAFF_REVOKE = Cmd(
    "staff_revoke",
    __("Take staff rights away"),
    __("/staff_revoke ID: take every staff action away from someone at once"),
)
ADJUST = Cmd(
    "adjust",
    __("Add or take points"),
    __("/adjust CARD-NUMBER +POINTS|-POINTS REASON: points in or out of a wallet"),
)
CLUB_REFUND = Cmd(
    "club_refund",
    __("Refund a club payment"),
    __("/club_refund CARD-NUMBER: a member's club payments, to refund one"),
)
AUDIT = Cmd("audit", __("The audit log"), __("/audit [n]: the last n staff actions"))
POSTER = Cmd(
    "poster",
    __("A poster to print"),
    __("/poster [PARTNER] [LANGUAGE]: an A4 poster with the join QR code, as PDF and PNG"),
)
PARTNER_POSTER = Cmd(
    "poster",
    __("A poster to print"),
    __("/poster [LANGUAGE]: your partner's A4 poster with the join QR code, as PDF and PNG"),
)
LINK = Cmd(
    "link",
    __("A join link that counts its source"),
    __("/link SOURCE: a join link whose joins /stats counts under SOURCE"),
)

COMMANDS: dict[str, tuple[Cmd, ...]] = {
    MEMBER: (
        CARD,
        BALANCE,
        STAMPS,
        HISTORY,
        REWARDS,
        VOUCHERS,
        INVITE,
        GIFT,
        DONATE,
        PARTNERS,
        OFFERS,
        CLUB,
        LANGUAGE,
        PRIVACY,
        PAYSUPPORT,
        HELP,
    ),
    CASHIER: (SHIFT, CANCEL, VOUCHER),
    MANAGER: (
        SHIFT,
        CANCEL,
        VOUCHER,
        REFUND,
        TODAY,
        WEEK,
        PARTNER_STATS,
        PARTNER_POSTER,
        API_KEY,
    ),
    MARKETER: (CAMPAIGN, CAMPAIGNS, STATS, SETTLEMENT, SIMULATE, LINK),
    OWNER: (
        STAFF_INVITE,
        STAFF_LIST,
        STAFF_REVOKE,
        ADJUST,
        AUDIT,
        CLUB_REFUND,
        CAMPAIGN,
        CAMPAIGNS,
        STATS,
        SETTLEMENT,
        SIMULATE,
        POSTER,
        LINK,
        OWNER_API_KEY,
    ),
}


def role_name(role: str) -> str:
    return {
        MEMBER: _("member"),
        CASHIER: _("cashier"),
        MANAGER: _("manager"),
        MARKETER: _("marketer"),
        OWNER: _("owner"),
    }.get(role, role)


def roles_of(*, member: Any = None, staff: Any = None, owner: bool = False) -> list[str]:
    """A person's roles, in ROLES order: owner (ADMIN_IDS), their staff role, member."""
    have = {MEMBER} if member is not None else set()
    if staff is not None:
        have.add(staff.role)
    if owner:
        have.add(OWNER)
    return [role for role in ROLES if role in have]


def roles_for(command: str) -> list[str]:
    """The roles whose commands include `command`, in ROLES order."""
    return [role for role in ROLES if any(c.name == command for c in COMMANDS[role])]


def known(command: str) -> bool:
    return any(c.name == command for cmds in COMMANDS.values() for c in cmds)


def menu(roles: list[str]) -> list[tuple[str, str]]:
    """(command, description) for Telegram's menu, in the current language: every command
    of these roles once. A staff menu keeps the member commands: staff have a card too."""
    seen: dict[str, str] = {}
    for role in [r for r in ROLES if r in roles] or [MEMBER]:
        for cmd in COMMANDS[role]:
            seen.setdefault(cmd.name, str(cmd.menu))
    if roles and MEMBER not in roles:
        for cmd in COMMANDS[MEMBER]:
            seen.setdefault(cmd.name, str(cmd.menu))
    # /help last, where a member's menu has it.
    help_line = seen.pop(HELP.name)
    return [*seen.items(), (HELP.name, help_line)]


def section_title(role: str, partner: str | None = None) -> str:
    if role == CASHIER and partner:
        return _("🧾 As a cashier of {partner}:").format(partner=escape(partner))
    if role == MANAGER and partner:
        return _("🧾 As a manager of {partner}:").format(partner=escape(partner))
    return {
        MEMBER: _("👤 As a member:"),
        CASHIER: _("🧾 As a cashier:"),
        MANAGER: _("🧾 As a manager:"),
        MARKETER: _("📣 As a marketer:"),
        OWNER: _("👑 As an owner of the program:"),
    }[role]


def till_club(program: Program) -> str | None:
    """The club's name (escaped) when tills sell its months (it has a price in money): the
    staff's help says how; None otherwise."""
    club = program.club
    return escape(fmt.text(club.name)) if club is not None and club.price else None


def _intro(role: str, club: str | None = None) -> list[str]:
    if role not in (CASHIER, MANAGER):
        return []
    lines = [
        _(
            "To serve a member: scan their card's QR code with the phone camera, send a photo "
            "of the card, or type the card number."
        )
    ]
    if club:
        lines.append(
            _(
                "To sell a month of {club}: on the member's panel press ⭐, take the money, "
                "then press Taken."
            ).format(club=club)
        )
    return lines


def section(
    role: str,
    partner: str | None = None,
    *,
    skip: frozenset[str] = frozenset(),
    club: str | None = None,
) -> str:
    """One role's part of /help (and of a staff welcome): a title, then one line each.
    `club`: the club's name when tills sell its months (till_club)."""
    lines = [f"<b>{section_title(role, partner)}</b>", *_intro(role, club)]
    lines += [str(cmd.help) for cmd in COMMANDS[role] if cmd.name not in skip]
    return "\n".join(lines)


def help_text(roles: list[str], partner: str | None = None, club: str | None = None) -> str:
    """/help for someone with these roles: each role's commands, a command said once;
    `club` as in `section`."""
    parts = [_("What I can do:")]
    shown: set[str] = set()
    for role in roles:
        if all(cmd.name in shown for cmd in COMMANDS[role]):
            continue  # every command of this role is listed already: no empty heading
        parts.append(section(role, partner, skip=frozenset(shown), club=club))
        shown.update(cmd.name for cmd in COMMANDS[role])
    if MEMBER not in roles:
        if roles:
            parts.append(
                _("To collect points yourself too, join the program as a member: /start.")
            )
        else:
            parts.append(section(MEMBER))
            parts.append(_("You are not a member yet: send /start to join."))
    return "\n\n".join(parts)
