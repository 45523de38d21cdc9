"""Who may do what: one table of staff roles × actions.

The routers' filters (bot/filters.py `IsStaff(action)`) and the use cases
(`StaffInfo.require(action)`) both read it, so a permission is written once; the use case's
check is the one that counts (callback data and links can be forged), the filter only keeps
an update from reaching handlers it cannot use. bot/roles.py's command table (for /help and
the menus) describes the commands; this table decides.

Owners are not staff: they are the Telegram ids in ADMIN_IDS (`IsOwner`), may do every
action below, and alone manage staff, adjust wallets and read the audit log.

A partner's API key (the partner API for tills and shop software) acts in the role `api`: at
its own partner's till, without a Telegram chat (db/usecases/api/). It is no staff member
(STAFF_ROLES: nobody is invited to it); what each key may do besides is its scopes'.
"""

from __future__ import annotations

from collections.abc import Collection

from db.rules.errors import NotStaff

CASHIER, MANAGER, MARKETER = "cashier", "manager", "marketer"
STAFF_ROLES = (CASHIER, MANAGER, MARKETER)
API = "api"  # a partner's API key: not a staff role

ACTIONS: dict[str, frozenset[str]] = {
    # At the till, for the staff member's own partner.
    "lookup": frozenset({CASHIER, MANAGER, API}),  # find a member by card, QR or number
    "sale": frozenset({CASHIER, MANAGER, API}),  # credit a sale, finish one earn-only
    "redeem": frozenset({CASHIER, MANAGER, API}),  # ask a member to pay with points
    "shift": frozenset({CASHIER, MANAGER}),  # their own operations today
    "claim_voucher": frozenset({CASHIER, MANAGER, API}),  # honour a member's voucher
    "club_sale": frozenset({CASHIER, MANAGER}),  # sell a month of the club for money
    "refund": frozenset({MANAGER, API}),
    "partner_figures": frozenset({MANAGER, API}),  # /today, /week, /stats of their partner
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


def require_actor(actor: int, owners: Collection[int], role: str | None, action: str) -> None:
    """Refuse (NotStaff) unless `actor` (a Telegram id) is an owner (in ADMIN_IDS: every
    action) or staff whose `role` may do `action`."""
    if actor not in owners:
        require(role, action)
