"""Staff: one-time invites, roles, revocation and the audit log of everything they do.

Every till use case takes the acting StaffInfo, loaded fresh for the update, and checks it
again itself: callback data and deep links come from clients and can be forged."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, cast

from sqlalchemy import Table, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from db.ledger.models import (
    ApiKey,
    AuditLog,
    Member,
    Partner,
    RedemptionRequest,
    Staff,
    StaffInvite,
)
from db.ledger.writer import unit_of_work
from db.rules import access
from db.rules.errors import DomainError, InvalidInvite, NotStaff, UnknownPartner
from db.rules.tokens import SOURCE
from db.usecases.outbox import Owed, owe

ROLES = access.STAFF_ROLES
INVITE_PREFIX = "s"
INVITE_TTL = timedelta(hours=24)
_AUDIT_LOG = cast(Table, AuditLog.__table__)


@dataclass(frozen=True, slots=True)
class StaffInfo:
    id: int
    telegram_id: int
    role: str
    partner_id: int | None
    partner_slug: str | None
    partner_name: str | None
    first_name: str = ""

    def require(self, action: str) -> None:
        """Refuse (NotStaff) unless this role may do `action` (db/rules/access.py's table)."""
        access.require(self.role, action)

    def may(self, action: str) -> bool:
        return access.may(self.role, action)

    def require_partner(self, partner_id: int | None) -> None:
        if self.partner_id is None or self.partner_id != partner_id:
            raise NotStaff(partner=partner_id)

    @property
    def api_key_id(self) -> None:
        """Staff act as themselves, never through an API key (see Actor)."""
        return None


class Actor(Protocol):
    """Who acts at a partner's till in a use case: a staff member (StaffInfo), or a partner's
    API key (db/usecases/api/actor.py ApiActor), which has no staff row (`id` None) and is
    nobody's Telegram account (`telegram_id` None). Both answer `require` from
    db/rules/access.py's one table; the audit row names the key's id for a key."""

    @property
    def id(self) -> int | None: ...

    @property
    def telegram_id(self) -> int | None: ...

    @property
    def partner_id(self) -> int | None: ...

    @property
    def partner_slug(self) -> str | None: ...

    @property
    def api_key_id(self) -> int | None: ...

    def require(self, action: str) -> None: ...

    def may(self, action: str) -> bool: ...


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def audit(
    session: AsyncSession,
    action: str,
    *,
    actor: int | None,
    staff: Actor | None = None,
    member_id: int | None = None,
    partner_id: int | None = None,
    transaction_id: int | None = None,
    **details: Any,
) -> None:
    """Write an audit row in the caller's transaction: it stands or falls with the action.
    `staff`: the staff member or the API key (Actor) that acted."""
    await session.execute(
        insert(_AUDIT_LOG).values(
            actor_telegram_id=actor,
            staff_id=staff.id if staff else None,
            api_key_id=staff.api_key_id if staff else None,
            action=action,
            member_id=member_id,
            partner_id=partner_id if partner_id is not None else (staff and staff.partner_id),
            transaction_id=transaction_id,
            details={k: str(v) if v is not None else None for k, v in details.items()},
        )
    )


@asynccontextmanager
async def refusal_audited(
    session: AsyncSession,
    staff: Actor,
    refusal: type[DomainError],
    action: str,
    attempted: str,
) -> AsyncIterator[None]:
    """A `refusal` (staff on their own card or voucher) rolls the use case back; the attempt
    is still written down, as `action`, with what was `attempted` and the member's id."""
    try:
        yield
    except refusal as refused:
        async with unit_of_work(session):
            await audit(
                session,
                action,
                actor=staff.telegram_id,
                staff=staff,
                member_id=refused.params.get("member_id"),
                attempted=attempted,
            )
        raise


async def create_invite(
    session: AsyncSession,
    *,
    created_by: int,
    role: str,
    partner_slug: str | None,
    now: datetime | None = None,
) -> str:
    """A single-use invite token, valid for 24 hours (random, 192 bits: never guessable)."""
    now = now or datetime.now(UTC)
    if role not in ROLES:
        raise NotStaff(role=role)
    async with unit_of_work(session):
        partner_id = None
        if role != "marketer":
            partner_id = await session.scalar(
                select(Partner.id).where(Partner.slug == (partner_slug or ""), Partner.active)
            )
            if partner_id is None:
                raise UnknownPartner(partner=partner_slug)
        token = INVITE_PREFIX + secrets.token_urlsafe(24)
        while token.startswith(SOURCE):  # that is a join link's source (db/rules/tokens.py)
            token = INVITE_PREFIX + secrets.token_urlsafe(24)
        await session.execute(
            insert(StaffInvite).values(
                token_hash=_hash(token),
                partner_id=partner_id,
                role=role,
                created_by=created_by,
                created_at=now,
                expires_at=now + INVITE_TTL,
            )
        )
        await audit(session, "staff_invite", actor=created_by, partner_id=partner_id, role=role)
        return token


async def accept_invite(
    session: AsyncSession,
    token: str,
    telegram_id: int,
    now: datetime | None = None,
    *,
    first_name: str = "",
    name: str = "",
) -> StaffInfo:
    """Make the opener staff. The invite is spent atomically: two people opening one link at
    once get one staff seat. Someone already staff moves to the new role. `first_name` is
    the one Telegram gives, kept so the owner's lists name people. The owner who made the
    invite is owed the news (who used it, `name` as Telegram shows them), in their language
    if they are a member too."""
    now = now or datetime.now(UTC)
    async with unit_of_work(session):
        invite = (
            await session.execute(
                update(StaffInvite)
                .where(
                    StaffInvite.token_hash == _hash(token),
                    StaffInvite.used_at.is_(None),
                    StaffInvite.expires_at > now,
                )
                .values(used_at=now, used_by=telegram_id)
                .returning(StaffInvite.partner_id, StaffInvite.role, StaffInvite.created_by)
            )
        ).one_or_none()
        if invite is None:
            raise InvalidInvite()
        partner_id, role, created_by = invite
        await session.execute(
            update(Staff)
            .where(Staff.telegram_id == telegram_id, Staff.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        staff_id = (
            await session.execute(
                insert(Staff)
                .values(
                    telegram_id=telegram_id,
                    partner_id=partner_id,
                    role=role,
                    created_at=now,
                    first_name=first_name.replace("\x00", "")[:200],
                )
                .returning(Staff.id)
            )
        ).scalar_one()
        staff = await _load(session, Staff.id == staff_id)
        assert staff is not None
        await audit(session, "staff_join", actor=telegram_id, staff=staff, invited_by=created_by)
        language = await session.scalar(
            select(Member.language).where(Member.telegram_id == created_by)
        )
        await owe(
            session,
            Owed(
                "staff_joined",
                {"name": name, "role": role, "partner": staff.partner_name},
                chat_id=created_by,
                language=language,
            ),
        )
        return staff


# Staff rows as StaffInfo's fields, with their partner (built once; .where() copies it).
_STAFF = select(
    Staff.id,
    Staff.telegram_id,
    Staff.role,
    Staff.partner_id,
    Partner.slug,
    Partner.name,
    Staff.first_name,
).outerjoin(Partner, Partner.id == Staff.partner_id)


async def _load(session: AsyncSession, *where: Any) -> StaffInfo | None:
    row = (await session.execute(_STAFF.where(*where))).one_or_none()
    return StaffInfo(*row) if row else None


async def active_staff(session: AsyncSession, telegram_id: int) -> StaffInfo | None:
    return await _load(session, Staff.telegram_id == telegram_id, Staff.revoked_at.is_(None))


async def list_staff(session: AsyncSession) -> list[StaffInfo]:
    rows = (
        await session.execute(
            _STAFF.where(Staff.revoked_at.is_(None)).order_by(
                Partner.slug.nulls_last(), Staff.role, Staff.id
            )
        )
    ).all()
    return [StaffInfo(*row) for row in rows]


async def revoke_staff(
    session: AsyncSession, staff_id: int, *, actor: int, now: datetime | None = None
) -> StaffInfo:
    now = now or datetime.now(UTC)
    async with unit_of_work(session):
        staff = await _load(session, Staff.id == staff_id, Staff.revoked_at.is_(None))
        if staff is None:
            raise NotStaff(staff=staff_id)
        await session.execute(update(Staff).where(Staff.id == staff_id).values(revoked_at=now))
        # Their redemption requests still waiting for a member's answer close with them: a
        # later Confirm posts nothing and is told the request is closed.
        closed = await session.execute(
            update(RedemptionRequest)
            .where(RedemptionRequest.staff_id == staff_id, RedemptionRequest.status == "pending")
            .values(status="cancelled", decided_at=now)
        )
        await audit(
            session,
            "staff_revoke",
            actor=actor,
            staff=staff,
            requests_closed=closed.rowcount,  # type: ignore[attr-defined]
        )
        return staff


@dataclass(frozen=True, slots=True)
class AuditEntry:
    created_at: datetime
    actor_telegram_id: int | None
    action: str
    partner: str | None
    member_id: int | None
    transaction_id: int | None
    details: dict[str, Any]
    # Names, for people reading the log: the actor's (as staff, else as a member), the
    # staff member acted on or acting, and the member's (empty once they deleted their data).
    actor_name: str | None = None
    staff_name: str | None = None
    staff_telegram_id: int | None = None
    member_name: str | None = None
    member_card: str | None = None
    actor_deleted: bool = False
    api_key: str | None = None  # the prefix of the partner's API key that acted


def _actor_name() -> Any:
    """The actor's first name: as staff (their latest seat), else as a member."""
    as_staff = (
        select(func.nullif(Staff.first_name, ""))
        .where(Staff.telegram_id == AuditLog.actor_telegram_id)
        .order_by(Staff.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    as_member = (
        select(func.nullif(Member.first_name, ""))
        .where(Member.telegram_id == AuditLog.actor_telegram_id)
        .scalar_subquery()
    )
    return func.coalesce(as_staff, as_member)


async def recent_audit(session: AsyncSession, limit: int = 20) -> list[AuditEntry]:
    subject = aliased(Staff)
    member = aliased(Member)
    rows = (
        await session.execute(
            select(
                AuditLog.created_at,
                AuditLog.actor_telegram_id,
                AuditLog.action,
                Partner.slug,
                AuditLog.member_id,
                AuditLog.transaction_id,
                AuditLog.details,
                _actor_name(),
                func.nullif(subject.first_name, ""),
                subject.telegram_id,
                func.nullif(member.first_name, ""),
                member.card_number,
                AuditLog.actor_member_id.is_not(None),
                ApiKey.prefix,
            )
            .outerjoin(Partner, Partner.id == AuditLog.partner_id)
            .outerjoin(ApiKey, ApiKey.id == AuditLog.api_key_id)
            .outerjoin(subject, subject.id == AuditLog.staff_id)
            .outerjoin(member, member.id == AuditLog.member_id)
            .order_by(AuditLog.id.desc())
            .limit(limit)
        )
    ).all()
    return [AuditEntry(*row) for row in rows]


async def former_staff(session: AsyncSession, telegram_id: int) -> StaffInfo | None:
    """The latest staff record of someone who was staff and no longer is (None for anyone
    who still is, or never was): the bot tells them so instead of treating them as a
    stranger."""
    active = select(Staff.id).where(Staff.telegram_id == telegram_id, Staff.revoked_at.is_(None))
    row = (
        await session.execute(
            _STAFF.where(Staff.telegram_id == telegram_id, ~active.exists())
            .order_by(Staff.revoked_at.desc())
            .limit(1)
        )
    ).one_or_none()
    return StaffInfo(*row) if row else None
