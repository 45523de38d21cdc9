"""What a member's `/offers` needs to know about them (db.rules.offers.MemberFacts)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.ledger.models import Member, Partner, PromotionUse, Transaction, TxKind
from db.rules.offers import MemberFacts


async def member_facts(session: AsyncSession, member_id: int) -> MemberFacts:
    """The member's tier, joining day and birthday, their last purchase at each partner,
    and their uses of limited promotions: three short reads."""
    member = (
        await session.execute(
            select(Member.tier, Member.joined_at, Member.birthday).where(Member.id == member_id)
        )
    ).one()
    bought = (
        await session.execute(
            select(Partner.slug, func.max(Transaction.created_at))
            .join(Partner, Partner.id == Transaction.partner_id)
            .where(Transaction.member_id == member_id, Transaction.kind.in_(TxKind.SALES))
            .group_by(Partner.slug)
        )
    ).all()
    uses = (
        await session.execute(
            select(PromotionUse.promotion, PromotionUse.uses).where(
                PromotionUse.member_id == member_id
            )
        )
    ).all()
    return MemberFacts(
        tier=member.tier,
        joined_at=member.joined_at,
        birthday=member.birthday,
        bought_at={slug: at for slug, at in bought},
        uses={key: n for key, n in uses},
    )
