"""Who may do what: one table of staff roles × actions.

The routers' filters (bot/filters.py `IsStaff(action)`) and the use cases
(`StaffInfo.require(action)`) both read it, so a permission is written once; the use case's
check is the one that counts (callback data and links can be forged), the filter only keeps
an update from reaching handlers it cannot use. bot/roles.py's command table (for /help and
the menus) describes the commands; this table decides.

Owners are not staff: they are the Telegram ids in ADMIN_IDS (`IsOwner`), may do every
action below, and alone manage staff, adjust wallets and read the audit log.

A partner's API key (bot/api) acts at that partner's till too, with a role per scope it was
given (API_ROLES): the same table says what each scope allows, and the use cases check it as
they check staff. The staff table's own check (cashier, manager, marketer) keeps these roles
from ever being a person's.
"""

from __future__ import annotations

from collections.abc import Collection

from db.rules.errors import NotStaff

CASHIER, MANAGER, MARKETER = "cashier", "manager", "marketer"
STAFF_ROLES = (CASHIER, MANAGER, MARKETER)
# An API key's roles, one per scope: "sales" posts and refunds, "read" only reads.
API_SALES, API_READ = "api_sales", "api_read"
API_ROLES = {"sales": API_SALES, "read": API_READ}

ACTIONS: dict[str, frozenset[str]] = {
    # At the till, for the staff member's own partner.
    "lookup": frozenset({CASHIER, MANAGER, API_SALES, API_READ}),  # by card, QR or number
    "sale": frozenset({CASHIER, MANAGER, API_SALES}),  # credit a sale, finish one earn-only
    "redeem": frozenset({CASHIER, MANAGER, API_SALES}),  # ask a member to pay with points
    "shift": frozenset({CASHIER, MANAGER}),  # their own operations today
    "claim_voucher": frozenset({CASHIER, MANAGER, API_SALES}),  # honour a member's voucher
    "club_sale": frozenset({CASHIER, MANAGER}),  # sell a month of the club for money
    "refund": frozenset({MANAGER, API_SALES}),
    "sale_read": frozenset({API_SALES, API_READ}),  # one sale of the partner, by document
    "partner_settlement": frozenset({API_READ}),  # the partner's own settlement position
    "api_keys": frozenset({MANAGER}),  # create, list and revoke their partner's API keys
    "partner_figures": frozenset({MANAGER}),  # /today, /week, /stats of their partner
    "partner_poster": frozenset({MANAGER}),
    # For the whole coalition.
    "campaigns": frozenset({MARKETER}),
    "coalition_figures": frozenset({MARKETER}),  # /stats, /settlement
    "source_link": frozenset({MARKETER}),
    "simulate": frozenset({MARKETER}),  # replay a proposed program file, writing nothing
    # Owners alone: no staff role.
    "club_refund": frozenset(),  # give a member's club payment back (/club_refund)
}


def may(role: str | None, action: str) -> bool:
    """Whether staff with `role` may do `action` (an unknown action is a bug: KeyError)."""
    return role in ACTIONS[action]


def require(role: str | None, action: str) -> None:
    if not may(role, action):
        raise NotStaff(role=role, action=action)


def may_any(roles: Collection[str], action: str) -> bool:
    """Whether one of `roles` (an API key's, one per scope) may do `action`."""
    return not ACTIONS[action].isdisjoint(roles)


def require_any(roles: Collection[str], action: str) -> None:
    if not may_any(roles, action):
        raise NotStaff(role=",".join(sorted(roles)), action=action)


def require_actor(actor: int, owners: Collection[int], role: str | None, action: str) -> None:
    """Refuse (NotStaff) unless `actor` (a Telegram id) is an owner (in ADMIN_IDS: every
    action) or staff whose `role` may do `action`."""
    if actor not in owners:
        require(role, action)
