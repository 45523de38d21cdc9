"""Who sent an update: the member, the figures /balance shows of their wallet and the staff
record of a Telegram user, in one query outside any transaction. Every update needs who sent
it before any handler runs; /balance, the most used command, then needs no query of its own,
and an update that only reads starts no transaction (the session's first statement does)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import BigInteger, and_, bindparam, cast, select
from sqlalchemy.ext.asyncio import AsyncEngine

from db.engine import QuickRead
from db.ledger.models import Account, AccountKind, Member, Partner, Staff
from db.queries.stamps import held_by_card, held_column
from db.queries.wallet import WalletFigures, figures_columns
from db.rules.program import TIER_WINDOW
from db.usecases.members import MemberInfo
from db.usecases.staff import StaffInfo


@dataclass(frozen=True, slots=True)
class Sender:
    member: MemberInfo | None  # None: not joined
    staff: StaffInfo | None  # None: not active staff
    wallet: WalletFigures | None  # the member's


_m, _a = Member.__table__.c, Account.__table__.c
_s, _p = Staff.__table__.c, Partner.__table__.c
_who = select(cast(bindparam("telegram_id", type_=BigInteger), BigInteger).label("tg")).subquery()
_MEMBER = (
    "id",
    "telegram_id",
    "card_number",
    "first_name",
    "language",
    "tier",
    "marketing_consent",
    "referred_by_id",
    "wallet_id",
    "balance",
    "joined_at",
    "held",
)
_IDENTIFY = QuickRead(
    select(
        _m.id,
        _m.telegram_id,
        _m.card_number,
        _m.first_name,
        _m.language,
        _m.tier,
        _m.marketing_consent,
        _m.referred_by_id,
        _a.id.label("wallet_id"),
        _a.balance,
        _m.joined_at,
        _a.held,
        *figures_columns(_m.id),
        held_column(_m.id),
        _s.id.label("staff_id"),
        _s.role,
        _s.partner_id,
        _p.slug,
        _p.name,
    ).select_from(
        _who.outerjoin(Member, _m.telegram_id == _who.c.tg)
        .outerjoin(Account, and_(_a.member_id == _m.id, _a.kind == AccountKind.MEMBER))
        .outerjoin(Staff, and_(_s.telegram_id == _who.c.tg, _s.revoked_at.is_(None)))
        .outerjoin(Partner, _p.id == _s.partner_id)
    )
)


async def identify(engine: AsyncEngine, telegram_id: int, now: datetime | None = None) -> Sender:
    since = (now or datetime.now(UTC)) - TIER_WINDOW
    row = await _IDENTIFY.one(engine, telegram_id=telegram_id, since=since)
    member = wallet = None
    if row["id"] is not None and row["wallet_id"] is not None:
        member = MemberInfo(**{name: row[name] for name in _MEMBER})
        wallet = WalletFigures(
            row["spend"], row["soonest_expiry"], int(row["expiring"]), held_by_card(row["stamps"])
        )
    staff = None
    if row["staff_id"] is not None:
        staff = StaffInfo(
            row["staff_id"], telegram_id, row["role"], row["partner_id"], row["slug"], row["name"]
        )
    return Sender(member, staff, wallet)
