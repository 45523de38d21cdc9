"""Who acts through the partner API: a partner's API key (ApiActor), the one actor type the
HTTP layer (bot/api), the key's use cases (db/usecases/api_keys.py authenticate) and the
API's use cases (db/usecases/partner_api.py, db/usecases/api/) all use."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from db.rules import access
from db.usecases.staff import audit


@dataclass(frozen=True, slots=True)
class ApiActor:
    """A partner's API key acting at that partner's till (db/usecases/staff.py Actor): its
    id (the audit log names it), its partner, and its roles, one per scope it was given
    (access.API_ROLES: "sales" posts and refunds, "read" only reads), checked against the
    same table as staff's. It has no Telegram chat and no staff row: what it posts carries
    no staff id, and nothing is owed to a cashier."""

    key_id: int
    partner_id: int
    partner_slug: str
    partner_name: str = ""
    scopes: frozenset[str] = frozenset({"sales"})
    prefix: str = ""
    roles: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "roles", frozenset(access.API_ROLES[s] for s in self.scopes))

    @property
    def id(self) -> None:
        """No staff row: a key is not a person."""
        return None

    @property
    def telegram_id(self) -> None:
        return None

    @property
    def api_key_id(self) -> int:
        return self.key_id

    def require(self, action: str) -> None:
        """Refuse (NotStaff) unless one of the key's scopes allows `action`."""
        access.require_any(self.roles, action)

    def may(self, action: str) -> bool:
        return access.may_any(self.roles, action)

    async def audit(
        self,
        session: AsyncSession,
        action: str,
        *,
        member_id: int | None = None,
        transaction_id: int | None = None,
        **details: Any,
    ) -> None:
        """An audit row in the caller's transaction, naming the key (its `api_key_id`, and
        `api_key` in its details)."""
        await audit(
            session,
            action,
            actor=None,
            staff=self,
            member_id=member_id,
            partner_id=self.partner_id,
            transaction_id=transaction_id,
            api_key=self.key_id,
            **details,
        )
