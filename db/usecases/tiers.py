"""The daily tier recalculation: each member's tier from money spent in the last 365 days."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import case, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from db.ledger.models import Member, Transaction, TxKind
from db.ledger.writer import unit_of_work
from db.rules.program import Program
from db.usecases.purchases import PURCHASE_KINDS, spend_expression


async def recalculate_tiers(
    session: AsyncSession, program: Program, now: datetime | None = None
) -> int:
    """One statement for all members; returns how many changed tier."""
    now = now or datetime.now(UTC)
    spend = (
        select(Transaction.member_id, spend_expression().label("spend"))  # type: ignore[call-overload]
        .where(
            Transaction.kind.in_((*PURCHASE_KINDS, TxKind.REVERSE)),
            Transaction.created_at > now - timedelta(days=365),
        )
        .group_by(Transaction.member_id)
        .subquery()
    )
    amount = func.coalesce(
        select(spend.c.spend).where(spend.c.member_id == Member.id).scalar_subquery(), 0
    )
    tiers = sorted(program.tiers, key=lambda t: t.min_spend, reverse=True)
    tier = case(*((amount >= t.min_spend, t.name) for t in tiers[:-1]), else_=tiers[-1].name)
    async with unit_of_work(session):
        result = await session.execute(
            update(Member)
            .where(Member.deleted_at.is_(None), Member.tier.is_distinct_from(tier))
            .values(tier=tier)
        )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
