"""Who sent an update: the member and the staff record of a Telegram user, in one query
(every update needs both, before any handler runs)."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from db.usecases.members import MemberInfo
from db.usecases.staff import StaffInfo

_IDENTIFY = text(
    """
    SELECT m.id, m.telegram_id, m.card_number, m.first_name, m.language, m.tier,
           m.marketing_consent, m.referred_by_id, a.id AS wallet_id, a.balance, m.joined_at,
           a.held,
           s.id AS staff_id, s.role, s.partner_id, p.slug, p.name
    FROM (SELECT CAST(:tg AS bigint) AS tg) AS who
    LEFT JOIN members m ON m.telegram_id = who.tg
    LEFT JOIN accounts a ON a.member_id = m.id AND a.kind = 'member'
    LEFT JOIN staff s ON s.telegram_id = who.tg AND s.revoked_at IS NULL
    LEFT JOIN partners p ON p.id = s.partner_id
    """
)


async def identify(
    session: AsyncSession, telegram_id: int
) -> tuple[MemberInfo | None, StaffInfo | None]:
    row = (await session.execute(_IDENTIFY, {"tg": telegram_id})).one()
    member = None
    if row.id is not None and row.wallet_id is not None:
        member = MemberInfo(
            row.id,
            row.telegram_id,
            row.card_number,
            row.first_name,
            row.language,
            row.tier,
            row.marketing_consent,
            row.referred_by_id,
            row.wallet_id,
            row.balance,
            row.joined_at,
            held=row.held,
        )
    staff = None
    if row.staff_id is not None:
        staff = StaffInfo(row.staff_id, telegram_id, row.role, row.partner_id, row.slug, row.name)
    return member, staff
