"""A member's right to their data: export all of it, or delete the account.

Deleting keeps the ledger whole: the person's details are erased, their remaining points
are forfeited to breakage by an ordinary posting, and the anonymised rows stay, so every
balance and every past settlement stays correct."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from db.cards import new_card_number
from db.ledger import (
    Leg,
    consume_lots,
    fingerprint,
    lock_accounts,
    open_transaction,
    post_entries,
    system_account,
    unit_of_work,
)
from db.members import MemberInfo
from db.models import AccountKind, Member, PointLot, TxKind
from db.wallet import history, referral_stats


async def export_member_data(session: AsyncSession, member: MemberInfo) -> dict[str, Any]:
    row = await session.get_one(Member, member.id)
    lots = (
        await session.execute(
            select(PointLot).where(PointLot.member_id == member.id).order_by(PointLot.id)
        )
    ).scalars()
    items, total = await history(session, member, limit=1_000_000)
    stats = await referral_stats(session, member.id)
    data = {
        "exported_at": datetime.now(UTC).isoformat(),
        "member": {
            "telegram_id": row.telegram_id,
            "card_number": row.card_number,
            "first_name": row.first_name,
            "language": row.language,
            "tier": row.tier,
            "joined_at": row.joined_at.isoformat(),
            "rules_accepted_at": row.rules_accepted_at.isoformat()
            if row.rules_accepted_at
            else None,
            "marketing_consent": row.marketing_consent,
            "invited_by_member": row.referred_by_id is not None,
        },
        "balance": member.balance,
        "point_lots": [
            {
                "points": lot.points,
                "remaining": lot.remaining,
                "earned_at": lot.earned_at.isoformat(),
                "expires_at": lot.expires_at.isoformat() if lot.expires_at else None,
            }
            for lot in lots
        ],
        "transactions": [
            {
                "id": item.transaction_id,
                "kind": item.kind,
                "partner": item.partner,
                "amount": str(item.amount) if item.amount is not None else None,
                "points_in": item.points_in,
                "points_out": item.points_out,
                "reason": item.reason,
                "at": item.created_at.isoformat(),
            }
            for item in items
        ],
        "transactions_total": total,
        "friends_invited": stats.invited,
        "friends_rewarded": stats.rewarded,
    }
    await session.rollback()  # only after reading the rows: a rollback expires them
    return data


async def delete_member(
    session: AsyncSession, member: MemberInfo, now: datetime | None = None
) -> int:
    """Erase the member; returns the points forfeited. Deleting twice changes nothing."""
    now = now or datetime.now(UTC)
    async with unit_of_work(session):
        breakage = await system_account(session, AccountKind.BREAKAGE)
        balances = await lock_accounts(session, [breakage, member.wallet_id])
        points = balances[member.wallet_id]
        if points > 0:
            tx_id = await open_transaction(
                session,
                kind=TxKind.EXPIRE,
                key=f"forfeit:{member.id}",
                digest=fingerprint("forfeit", member.id),
                member_id=member.id,
                reason="account deleted at the member's request",
                created_at=now,
            )
            if tx_id is not None:
                await post_entries(
                    session, tx_id, [Leg(member.wallet_id, -points), Leg(breakage, points)]
                )
                await consume_lots(session, member.id, points)
        await session.execute(
            update(Member)
            .where(Member.id == member.id, Member.deleted_at.is_(None))
            .values(
                telegram_id=None,
                first_name="",
                # A fresh random number: the old card, printed or photographed, names no one.
                card_number=new_card_number(),
                marketing_consent=False,
                reachable=False,
                deleted_at=now,
            )
        )
        return points
