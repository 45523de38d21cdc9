"""Partners: synced from the program file, never deleted (their history stays)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, true, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from db.ledger.models import Account, AccountKind, Partner, RewardStock
from db.ledger.writer import unit_of_work
from db.rules.errors import UnknownPartner
from db.rules.program import Program


@dataclass(frozen=True, slots=True)
class PartnerAccounts:
    id: int
    slug: str
    name: str
    issued_id: int
    redeemed_id: int


async def sync_partners(session: AsyncSession, program: Program) -> None:
    """Make the partners table match the program file: add and update partners, deactivate
    those no longer listed, and give each its two ledger accounts. Touches no history."""
    async with unit_of_work(session):
        slugs = [p.slug for p in program.partners]
        for rules in program.partners:
            stmt = pg_insert(Partner).values(
                slug=rules.slug,
                name=rules.name,
                category=rules.category,
                earn_percent=rules.earn_percent,
                kind=rules.kind,
                active=True,
            )
            partner_id = (
                await session.execute(
                    stmt.on_conflict_do_update(
                        index_elements=[Partner.slug],
                        set_={
                            "name": stmt.excluded.name,
                            "category": stmt.excluded.category,
                            "earn_percent": stmt.excluded.earn_percent,
                            "kind": stmt.excluded.kind,
                            "active": True,
                        },
                    ).returning(Partner.id)
                )
            ).scalar_one()
            for kind in (AccountKind.PARTNER_ISSUED, AccountKind.PARTNER_REDEEMED):
                await session.execute(
                    pg_insert(Account)
                    .values(kind=kind, partner_id=partner_id)
                    .on_conflict_do_nothing(
                        index_elements=[Account.partner_id, Account.kind],
                        index_where=Account.partner_id.is_not(None),
                    )
                )
        await session.execute(
            update(Partner).where(Partner.slug.not_in(slugs)).values(active=False)
        )
        # Each stamp card's pool of stamps, and each catalogue reward's count of vouchers.
        for card in program.stamp_cards:
            await session.execute(
                pg_insert(Account)
                .values(kind=AccountKind.STAMP_POOL, unit=stamp_unit(card.slug))
                .on_conflict_do_nothing(
                    index_elements=[Account.kind, Account.unit],
                    index_where=Account.member_id.is_(None) & Account.partner_id.is_(None),
                )
            )
        if program.rewards:
            await session.execute(
                pg_insert(RewardStock)
                .values([{"slug": r.slug} for r in program.rewards])
                .on_conflict_do_nothing(index_elements=[RewardStock.slug])
            )


def stamp_unit(card: str) -> str:
    """The ledger unit of a stamp card's stamps."""
    return f"stamps:{card}"


_issued = aliased(Account)
_redeemed = aliased(Account)


async def partner_accounts(
    session: AsyncSession, slug: str, *, former: bool = False
) -> PartnerAccounts:
    """The partner and its two ledger accounts; UnknownPartner unless it is in the program
    (or, with `former`, ever was: a voucher it funded is still honoured)."""
    row = (
        await session.execute(
            select(Partner.id, Partner.slug, Partner.name, _issued.id, _redeemed.id)
            .join(
                _issued,
                (_issued.partner_id == Partner.id) & (_issued.kind == AccountKind.PARTNER_ISSUED),
            )
            .join(
                _redeemed,
                (_redeemed.partner_id == Partner.id)
                & (_redeemed.kind == AccountKind.PARTNER_REDEEMED),
            )
            .where(Partner.slug == slug, true() if former else Partner.active.is_(True))
        )
    ).one_or_none()
    if row is None:
        raise UnknownPartner(partner=slug)
    return PartnerAccounts(*row)
