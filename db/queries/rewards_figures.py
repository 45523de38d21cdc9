"""The rewards' figures for a period: vouchers issued, claimed and expired, and stamp cards
filled; for the coalition, or for one partner (the vouchers it honours, the cards that filled
at its till)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


@dataclass(frozen=True, slots=True)
class RewardFigures:
    vouchers_issued: int  # created in the period (taken from the catalogue or given)
    vouchers_claimed: int  # claimed in the period
    vouchers_expired: int  # reached their expiry unclaimed in the period
    cards_filled: int  # stamp cards that filled in the period


_FIGURES = text(
    """
    SELECT
        count(*) FILTER (WHERE v.created_at >= :start AND v.created_at < :end) AS issued,
        count(*) FILTER (WHERE v.status = 'claimed'
                           AND v.resolved_at >= :start AND v.resolved_at < :end) AS claimed,
        count(*) FILTER (WHERE v.status = 'expired'
                           AND v.resolved_at >= :start AND v.resolved_at < :end) AS expired,
        (SELECT count(*) FROM transactions AS t
         WHERE t.kind = 'card_filled' AND t.created_at >= :start AND t.created_at < :end
           AND (CAST(:partner_id AS bigint) IS NULL OR t.partner_id = :partner_id)) AS filled
    FROM vouchers AS v
    WHERE (v.created_at < :end AND (v.resolved_at IS NULL OR v.resolved_at >= :start))
      AND (CAST(:partner_id AS bigint) IS NULL OR v.partner_id = :partner_id)
    """
)


async def reward_figures(
    session: AsyncSession, *, start: datetime, end: datetime, partner_id: int | None = None
) -> RewardFigures:
    """[start, end): all vouchers and cards, or those of `partner_id`."""
    row = (
        await session.execute(_FIGURES, {"start": start, "end": end, "partner_id": partner_id})
    ).one()
    return RewardFigures(int(row.issued), int(row.claimed), int(row.expired), int(row.filled))
