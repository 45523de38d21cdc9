"""Who owes whom for a period.

A partner's position is (points redeemed at it − points issued by it) × point_value:
positive, the coalition pays the partner; negative, the partner pays the coalition.
Reversals count in the period they are posted, so a period's figures never change later.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Account, AccountKind, Entry, Partner, Transaction
from db.program import Program
from db.rules import CENT


@dataclass(frozen=True, slots=True)
class PartnerPosition:
    slug: str
    name: str
    points_issued: int
    points_redeemed: int

    @property
    def net_points(self) -> int:
        return self.points_redeemed - self.points_issued


@dataclass(frozen=True, slots=True)
class Settlement:
    start: datetime
    end: datetime
    point_value: Decimal
    partners: list[PartnerPosition]
    program_funded: int  # welcome, referral and manual points paid by the program
    breakage: int  # points that expired in the period

    def money(self, points: int) -> Decimal:
        return (points * self.point_value).quantize(CENT)

    @property
    def wallets_change(self) -> int:
        """Net points that went into members' wallets: what the other lines must explain."""
        issued = sum(p.points_issued for p in self.partners) + self.program_funded
        return issued - sum(p.points_redeemed for p in self.partners) - self.breakage


async def settlement(
    session: AsyncSession, program: Program, *, start: datetime, end: datetime
) -> Settlement:
    """Positions for [start, end) straight from the entries."""
    totals = (
        await session.execute(
            select(Account.kind, Account.partner_id, func.sum(Entry.amount))
            .join(Entry, Entry.account_id == Account.id)
            .join(Transaction, Transaction.id == Entry.transaction_id)
            .where(
                Transaction.created_at >= start,
                Transaction.created_at < end,
                Account.kind != AccountKind.MEMBER,
            )
            .group_by(Account.kind, Account.partner_id)
        )
    ).all()
    by_key = {(kind, partner_id): int(total) for kind, partner_id, total in totals}
    partners = (await session.execute(select(Partner).order_by(Partner.id))).scalars().all()
    positions = [
        PartnerPosition(
            slug=p.slug,
            name=p.name,
            points_issued=-by_key.get((AccountKind.PARTNER_ISSUED, p.id), 0),
            points_redeemed=by_key.get((AccountKind.PARTNER_REDEEMED, p.id), 0),
        )
        for p in partners
    ]
    await session.commit()
    return Settlement(
        start=start,
        end=end,
        point_value=program.program.point_value,
        partners=positions,
        program_funded=-by_key.get((AccountKind.PROGRAM, None), 0),
        breakage=by_key.get((AccountKind.BREAKAGE, None), 0),
    )
