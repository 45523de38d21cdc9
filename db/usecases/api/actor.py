"""Who acts through the partner API: a partner's API key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from db.rules import access
from db.usecases.staff import audit


@dataclass(frozen=True, slots=True)
class ApiActor:
    """A partner's API key acting at that partner's till: its id (the audit log names it),
    its partner, and its role in db/rules/access.py's table (`api`). It has no Telegram chat
    and no staff row: what it posts carries no staff id, and nothing is owed to a cashier.
    What a key may do beyond its role (its scopes) is the HTTP layer's to check."""

    key_id: int
    partner_id: int
    partner_slug: str
    role: str = access.API

    def require(self, action: str) -> None:
        """Refuse (NotStaff) unless the role may do `action` (db/rules/access.py)."""
        access.require(self.role, action)

    async def audit(
        self,
        session: AsyncSession,
        action: str,
        *,
        member_id: int | None = None,
        transaction_id: int | None = None,
        **details: Any,
    ) -> None:
        """An audit row in the caller's transaction, naming the key (`api_key`)."""
        await audit(
            session,
            action,
            actor=None,
            member_id=member_id,
            partner_id=self.partner_id,
            transaction_id=transaction_id,
            api_key=self.key_id,
            **details,
        )
