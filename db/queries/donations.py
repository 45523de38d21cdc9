"""Donations' figures for a period: for the coalition, or for one charity partner.

A donation is a `donation` transaction (db/usecases/donations.py); its points are the entry
on the charity's `partner_redeemed` account, so these figures are the settlement's own
(donations count as points redeemed at the charity there)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


@dataclass(frozen=True, slots=True)
class DonationFigures:
    donations: int
    points: int
    donors: int  # distinct members who gave


_DONATIONS = text(
    """
    SELECT count(DISTINCT t.id) AS donations, coalesce(sum(e.amount), 0) AS points,
           count(DISTINCT t.member_id) AS donors
    FROM transactions AS t
    JOIN entries AS e ON e.transaction_id = t.id
    JOIN accounts AS a ON a.id = e.account_id AND a.kind = 'partner_redeemed'
    WHERE t.kind = 'donation' AND t.created_at >= :start AND t.created_at < :end
      AND (CAST(:partner_id AS bigint) IS NULL OR t.partner_id = :partner_id)
    """
)


async def donation_figures(
    session: AsyncSession, *, start: datetime, end: datetime, partner_id: int | None = None
) -> DonationFigures:
    """Donations posted in [start, end): all of them, or those to `partner_id`."""
    row = (
        await session.execute(_DONATIONS, {"start": start, "end": end, "partner_id": partner_id})
    ).one()
    return DonationFigures(int(row.donations), int(row.points), int(row.donors))
