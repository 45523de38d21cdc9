"""The daily tier recalculation: each member's tier from the money spent in the trailing
window (db/rules/program.py's TIER_WINDOW), by Program.tier_for_spend, the rule's one
statement (the sale that crosses a threshold uses it too)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import bindparam, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from db.ledger.models import Member, Transaction, TxKind
from db.ledger.writer import unit_of_work
from db.rules.program import TIER_WINDOW, Program
from db.usecases.purchases import spend_expression

# Only rows whose tier is still the one read move: a sale in between moved that member up.
_MOVE = text(
    "UPDATE members AS m SET tier = v.new FROM unnest(CAST(:ids AS bigint[]), "
    "CAST(:olds AS text[]), CAST(:news AS text[])) AS v(id, old, new) "
    "WHERE m.id = v.id AND m.tier = v.old"
).bindparams(bindparam("ids"), bindparam("olds"), bindparam("news"))


async def recalculate_tiers(
    session: AsyncSession, program: Program, now: datetime | None = None
) -> int:
    """Read every member's trailing spend in one statement, move those whose tier differs
    in another; returns how many changed tier."""
    now = now or datetime.now(UTC)
    spend = (
        select(Transaction.member_id, spend_expression().label("spend"))  # type: ignore[call-overload]
        .where(
            Transaction.kind.in_(TxKind.SPEND),
            Transaction.created_at > now - TIER_WINDOW,
        )
        .group_by(Transaction.member_id)
        .subquery()
    )
    rows = select(Member.id, Member.tier, func.coalesce(spend.c.spend, 0)).outerjoin(
        spend, spend.c.member_id == Member.id
    )
    async with unit_of_work(session):
        moves = [
            (member_id, tier, new)
            for member_id, tier, amount in await session.execute(
                rows.where(Member.deleted_at.is_(None))
            )
            if (new := program.tier_for_spend(amount).name) != tier
        ]
        if moves:
            ids, olds, news = (list(column) for column in zip(*moves, strict=True))
            result = await session.execute(_MOVE, {"ids": ids, "olds": olds, "news": news})
            return int(result.rowcount or 0)  # type: ignore[attr-defined]
    return 0
