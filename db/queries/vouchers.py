"""What a member sees of the rewards catalogue and of their own vouchers (reads only)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.ledger.models import Partner, RewardStock, Voucher, VoucherSource
from db.rules.vouchers import STANDING


@dataclass(frozen=True, slots=True)
class RewardState:
    issued: int  # standing catalogue vouchers of the reward (open or claimed), everyone's
    mine: int  # the member's own standing ones


async def catalogue_state(session: AsyncSession, member_id: int) -> dict[str, RewardState]:
    """Per reward slug: how much of its stock is taken, and how many the member holds."""
    issued = dict((await session.execute(select(RewardStock.slug, RewardStock.issued))).all())
    mine = dict(
        (
            await session.execute(
                select(Voucher.reward, func.count())
                .where(
                    Voucher.member_id == member_id,
                    Voucher.source == VoucherSource.CATALOGUE,
                    Voucher.status.in_(STANDING),
                )
                .group_by(Voucher.reward)
            )
        ).all()
    )
    return {
        slug: RewardState(int(issued.get(slug, 0)), int(mine.get(slug, 0)))
        for slug in set(issued) | set(mine)
    }


@dataclass(frozen=True, slots=True)
class OpenVoucher:
    id: int
    code: str
    reward: str
    partner: str  # the honouring partner's slug
    points: int
    expires_at: datetime


def _open(member_id: int, now: datetime) -> Select[int, str, str, str, int, datetime]:
    return (
        select(
            Voucher.id,
            Voucher.code,
            Voucher.reward,
            Partner.slug,
            Voucher.points,
            Voucher.expires_at,
        )
        .join(Partner, Partner.id == Voucher.partner_id)
        .where(Voucher.member_id == member_id, Voucher.status == "open", Voucher.expires_at > now)
    )


async def open_vouchers(session: AsyncSession, member_id: int, now: datetime) -> list[OpenVoucher]:
    """The member's vouchers that can still be claimed, the soonest to expire first."""
    rows = await session.execute(_open(member_id, now).order_by(Voucher.expires_at, Voucher.id))
    return [OpenVoucher(*row) for row in rows]


async def open_voucher_of(
    session: AsyncSession, member_id: int, code: str, now: datetime
) -> OpenVoucher | None:
    """One of the member's open vouchers by its code (None: not theirs, or no longer open)."""
    row = (await session.execute(_open(member_id, now).where(Voucher.code == code))).one_or_none()
    return OpenVoucher(*row) if row is not None else None


async def vouchers_export(session: AsyncSession, member_id: int) -> list[dict[str, object]]:
    """Every voucher of the member, for their data export."""
    rows = await session.execute(
        select(Voucher, Partner.slug)
        .join(Partner, Partner.id == Voucher.partner_id)
        .where(Voucher.member_id == member_id)
        .order_by(Voucher.id)
    )
    return [
        {
            "reward": v.reward,
            "partner": partner,
            "code": v.code,
            "points": v.points,
            "source": v.source,
            "status": v.status,
            "created_at": v.created_at.isoformat(),
            "expires_at": v.expires_at.isoformat(),
            "resolved_at": v.resolved_at.isoformat() if v.resolved_at else None,
        }
        for v, partner in rows
    ]
