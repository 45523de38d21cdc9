"""Vouchers: rewards to claim once at their partner.

A voucher bought from the catalogue holds the member's points (db.ledger.writer.hold, key
`voucher:<code>`): claiming it posts the hold to the honouring partner, expiry voids it. A
voucher that a stamp card or a promotion gives is funded by a partner and moves nothing
until it is honoured: then the funder's points go to the honouring partner (settlement
moves the money); unclaimed, it costs nobody anything.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.ledger.models import Partner, Voucher
from db.rules.errors import UnknownPartner
from db.rules.program import Program

# Crockford's base32 without the letters read as digits: what a cashier types is
# unambiguous, and 8 characters give 40 random bits (codes are also single-use and expire).
CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_LENGTH = 8


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def hold_key(code: str) -> str:
    return f"voucher:{code}"


@dataclass(frozen=True, slots=True)
class IssuedVoucher:
    id: int
    code: str
    reward: str
    partner: str
    points: int
    expires_at: datetime


async def _partner_id(session: AsyncSession, slug: str) -> int:
    found = (
        await session.execute(select(Partner.id).where(Partner.slug == slug, Partner.active))
    ).scalar_one_or_none()
    if found is None:
        raise UnknownPartner(partner=slug)
    return found


async def issue_voucher(
    session: AsyncSession,
    program: Program,
    *,
    member_id: int,
    reward: str,
    source: str,
    now: datetime,
    funder: str | None = None,
    source_tx_id: int | None = None,
    code: str | None = None,
) -> IssuedVoucher:
    """Write the voucher row (inside the caller's transaction). A catalogue voucher's caller
    holds the points under hold_key(code) first; a funded one names its `funder`."""
    rules = program.reward(reward)
    if rules is None:
        raise ValueError(f"no reward {reward!r} in the program")
    code = code or new_code()
    partner_id = await _partner_id(session, rules.partner)
    funder_id = await _partner_id(session, funder) if funder is not None else None
    expires_at = now + timedelta(days=rules.valid_days)
    while True:
        row = (
            await session.execute(
                pg_insert(Voucher)
                .values(
                    code=code,
                    reward=reward,
                    member_id=member_id,
                    partner_id=partner_id,
                    points=rules.points,
                    funder_id=funder_id,
                    hold_key=hold_key(code) if source == "catalogue" else None,
                    source=source,
                    source_tx_id=source_tx_id,
                    created_at=now,
                    expires_at=expires_at,
                )
                .on_conflict_do_nothing(index_elements=[Voucher.code])
                .returning(Voucher.id)
            )
        ).scalar_one_or_none()
        if row is not None:
            return IssuedVoucher(row, code, reward, rules.partner, rules.points, expires_at)
        code = new_code()  # a collision of random codes: draw again
