"""Manual adjustments by the owner: points in or out of a wallet, always with a reason."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from db.ledger.models import AccountKind, TxKind
from db.ledger.writer import (
    Leg,
    Lot,
    find_posted,
    fingerprint,
    lock_members,
    post,
    system_account,
    unit_of_work,
)
from db.rules.errors import ReasonRequired, UnknownMember
from db.rules.points import check_points
from db.rules.program import Program
from db.usecases.members import expiry_for, get_member
from db.usecases.outbox import Owed, owe
from db.usecases.staff import audit


@dataclass(frozen=True, slots=True)
class AdjustResult:
    transaction_id: int
    member_id: int
    points: int
    balance: int
    replayed: bool = False


async def adjust(
    session: AsyncSession,
    program: Program,
    *,
    member_id: int,
    points: int,
    reason: str,
    key: str,
    staff_id: int | None = None,
    actor: int | None = None,
    now: datetime | None = None,
) -> AdjustResult:
    """Add (positive) or take (negative) points, funded by or returned to the program.
    `actor`, the owner's Telegram id, is written to the audit log in the same transaction."""
    check_points(points, allow_negative=True)
    reason = reason.strip()
    if not reason:
        raise ReasonRequired()
    digest = fingerprint(TxKind.ADJUST, member_id, points, reason)
    now = now or datetime.now(UTC)
    async with unit_of_work(session):
        # The member row before the wallet, as every posting and the deletion lock them.
        if not await lock_members(session, [member_id]):
            raise UnknownMember()
        member = await get_member(session, member_id)
        program_acc = await system_account(session, AccountKind.PROGRAM)
        posted = await post(
            session,
            [Leg(program_acc, -points), Leg(member.wallet_id, points)],
            [
                Lot(member.id, points, earned_at=now, expires_at=expiry_for(program, now))
                if points > 0
                else Lot(member.id, points)
            ],
            kind=TxKind.ADJUST,
            key=key,
            digest=digest,
            member_id=member.id,
            staff_id=staff_id,
            reason=reason,
            created_at=now,
        )
        if posted is None:
            found = await find_posted(session, key, digest)
            return AdjustResult(found.id, member.id, points, member.balance, replayed=True)
        tx_id = posted.transaction_id
        if actor is not None:
            await audit(
                session,
                "adjust",
                actor=actor,
                member_id=member.id,
                transaction_id=tx_id,
                points=points,
                reason=reason,
            )
        balance = posted.balances[member.wallet_id]
        await owe(
            session,
            Owed(
                "adjusted",
                {"points": points, "balance": balance, "reason": reason, "transaction": tx_id},
                member_id=member.id,
            ),
        )
        return AdjustResult(tx_id, member.id, points, balance)
