"""Joining the program and reading a member."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.ledger.models import Account, AccountKind, Member, RewardedIdentity, TxKind
from db.ledger.writer import Leg, Lot, fingerprint, post, system_account, unit_of_work
from db.rules.cards import new_card_number
from db.rules.errors import UnknownMember
from db.rules.program import Program


@dataclass(frozen=True, slots=True)
class MemberInfo:
    id: int
    telegram_id: int | None
    card_number: str
    first_name: str
    language: str
    tier: str
    marketing_consent: bool
    referred_by_id: int | None
    wallet_id: int
    balance: int
    joined_at: datetime
    created: bool = False
    held: int = 0  # points open redemption requests hold: promised, not to be spent again

    @property
    def available(self) -> int:
        """What the member may spend now: the balance less the points held."""
        return self.balance - self.held


def expiry_for(program: Program, earned_at: datetime) -> datetime | None:
    days = program.program.expire_days
    return earned_at + timedelta(days=days) if days else None


async def _load(session: AsyncSession, *conditions: object, created: bool = False) -> MemberInfo:
    row = (
        await session.execute(
            select(Member, Account.id, Account.balance, Account.held)
            .join(Account, (Account.member_id == Member.id) & (Account.kind == AccountKind.MEMBER))
            .where(*conditions)  # type: ignore[arg-type]
        )
    ).one_or_none()
    if row is None:
        raise UnknownMember()
    member, wallet_id, balance, held = row
    return MemberInfo(
        id=member.id,
        telegram_id=member.telegram_id,
        card_number=member.card_number,
        first_name=member.first_name,
        language=member.language,
        tier=member.tier,
        marketing_consent=member.marketing_consent,
        referred_by_id=member.referred_by_id,
        wallet_id=wallet_id,
        balance=balance,
        joined_at=member.joined_at,
        created=created,
        held=held,
    )


async def get_member(session: AsyncSession, member_id: int) -> MemberInfo:
    return await _load(session, Member.id == member_id, Member.deleted_at.is_(None))


async def find_by_telegram(session: AsyncSession, telegram_id: int) -> MemberInfo | None:
    try:
        return await _load(session, Member.telegram_id == telegram_id)
    except UnknownMember:
        return None


async def find_by_card(session: AsyncSession, card_number: str) -> MemberInfo | None:
    try:
        return await _load(session, Member.card_number == card_number, Member.deleted_at.is_(None))
    except UnknownMember:
        return None


async def register_member(session: AsyncSession, program: Program, **request: Any) -> MemberInfo:
    """Join the program (`_register`), as one unit of work."""
    async with unit_of_work(session):
        return await _register(session, program, **request)


async def _register(
    session: AsyncSession,
    program: Program,
    *,
    telegram_id: int,
    first_name: str = "",
    language: str = "en",
    inviter_id: int | None = None,
    marketing_consent: bool = False,
    identity: str | None = None,
    source: str | None = None,
    now: datetime | None = None,
) -> MemberInfo:
    """Join the program; joining twice returns the existing member and changes nothing.

    `source` is where they came from (db/rules/tokens.py: a link's `src-<source>`, or "referral").

    The welcome points, if the program gives any, are posted in the same transaction.
    `identity` is the keyed hash of the Telegram id (tokens.identity_hash): someone who had
    an account before gets no second welcome gift, and no inviter is paid for them again.
    """
    now = now or datetime.now(UTC)
    existing = await find_by_telegram(session, telegram_id)
    if existing is not None:
        return existing
    welcomed, referred = await rewards_taken(session, identity) if identity else (False, False)
    if referred:
        inviter_id = None
    if inviter_id is not None:
        inviter = await session.get(Member, inviter_id)
        if inviter is None or inviter.deleted_at is not None:
            inviter_id = None
    member_id = None
    while member_id is None:
        # ON CONFLICT covers both a concurrent join of the same user and, very rarely, a
        # random card number that is already taken (then we draw another).
        member_id = (
            await session.execute(
                pg_insert(Member)
                .values(
                    telegram_id=telegram_id,
                    card_number=new_card_number(),
                    # PostgreSQL refuses NUL in text; Telegram names are not checked for it.
                    first_name=first_name.replace("\x00", "")[:200],
                    language=language,
                    tier=program.tiers[0].name,
                    rules_accepted_at=now,
                    marketing_consent=marketing_consent,
                    referred_by_id=inviter_id,
                    joined_at=now,
                    source=source,
                )
                .on_conflict_do_nothing()
                .returning(Member.id)
            )
        ).scalar_one_or_none()
        if member_id is None and (found := await find_by_telegram(session, telegram_id)):
            return found
    wallet_id = (
        await session.execute(
            pg_insert(Account)
            .values(kind=AccountKind.MEMBER, member_id=member_id)
            .returning(Account.id)
        )
    ).scalar_one()
    welcome = 0 if welcomed else program.program.welcome_points
    if welcome > 0:
        posted = await program_gift(
            session, program, member_id, wallet_id, welcome, TxKind.WELCOME, now=now
        )
        assert posted  # a brand-new member has no welcome posting yet
    return await _load(session, Member.id == member_id, created=True)


async def program_gift(
    session: AsyncSession,
    program: Program,
    member_id: int,
    wallet_id: int,
    points: int,
    kind: str,
    *,
    now: datetime,
) -> bool:
    """Points the program gives a member once (a welcome gift: `kind` welcome, or the
    club's): from the program's account to a new lot in their wallet, under the key
    "<kind>-welcome:<member>". False when that key was posted before."""
    program_acc = await system_account(session, AccountKind.PROGRAM)
    key = "welcome" if kind == TxKind.WELCOME else f"{kind}-welcome"
    posted = await post(
        session,
        [Leg(program_acc, -points), Leg(wallet_id, points)],
        [Lot(member_id, points, earned_at=now, expires_at=expiry_for(program, now))],
        kind=kind,
        key=f"{key}:{member_id}",
        digest=fingerprint(kind, member_id, points),
        member_id=member_id,
        created_at=now,
    )
    return posted is not None


async def rewards_taken(session: AsyncSession, identity: str) -> tuple[bool, bool]:
    """(welcome gift, invitation reward) already paid to this person in an earlier account."""
    row = await session.get(RewardedIdentity, identity)
    return (row.welcome, row.referral) if row else (False, False)


@dataclass(frozen=True, slots=True)
class Contact:
    telegram_id: int
    language: str
    first_name: str


async def contact(session: AsyncSession, member_id: int) -> Contact | None:
    """How to reach a member: None if they left or blocked the bot."""
    row = (
        await session.execute(
            select(Member.telegram_id, Member.language, Member.first_name).where(
                Member.id == member_id,
                Member.deleted_at.is_(None),
                Member.reachable.is_(True),
                Member.telegram_id.is_not(None),
            )
        )
    ).one_or_none()
    return Contact(*row) if row else None  # type: ignore[arg-type]  # telegram_id IS NOT NULL


async def inviter_name(session: AsyncSession, member_id: int) -> str:
    """The first name an invitation link's owner goes by ("" if they left)."""
    name = await session.scalar(
        select(Member.first_name).where(Member.id == member_id, Member.deleted_at.is_(None))
    )
    return name or ""
