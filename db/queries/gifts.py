"""What a member sees of their gifts (reads only)."""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.ledger.models import Gift


async def gifts_export(session: AsyncSession, member_id: int) -> list[dict[str, object]]:
    """Every gift the member gave or received, for their data export (the friend is not
    named: their data is theirs)."""
    rows = await session.execute(
        select(Gift)
        .where(or_(Gift.giver_id == member_id, Gift.receiver_id == member_id))
        .order_by(Gift.id)
    )
    return [
        {
            "direction": "given" if g.giver_id == member_id else "received",
            "code": g.code,
            "points": g.points,
            "status": g.status,
            "created_at": g.created_at.isoformat(),
            "expires_at": g.expires_at.isoformat(),
            "resolved_at": g.resolved_at.isoformat() if g.resolved_at else None,
        }
        for g in rows.scalars()
    ]
