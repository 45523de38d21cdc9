"""The sales a till's software posted through the partner API (`api_sales`, migration 0024),
read: by partner, business day and document number, with their itemised lines."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.ledger.models import ApiSale, ApiSaleLine
from db.rules.lines import Line


@dataclass(frozen=True, slots=True)
class ApiSaleRow:
    id: int
    partner_id: int
    business_day: date
    document: str
    member_id: int | None  # None: a sale without a member card
    amount: Decimal
    fingerprint: str
    transaction_id: int | None  # the sale posted without points (at once, or after a request)
    request_id: int | None  # the redemption request of a sale with points
    created_at: datetime
    lines: tuple[Line, ...] = ()


_LINES = select(
    ApiSaleLine.amount, ApiSaleLine.quantity, ApiSaleLine.category, ApiSaleLine.sku
).order_by(ApiSaleLine.position)


async def sale_lines(session: AsyncSession, sale_id: int) -> tuple[Line, ...]:
    rows = await session.execute(_LINES.where(ApiSaleLine.sale_id == sale_id))
    return tuple(Line(*row) for row in rows)


async def request_lines(session: AsyncSession, request_id: int) -> tuple[Line, ...]:
    """The itemised lines of the API sale the redemption request `request_id` is for (none
    for a cashier's request)."""
    rows = await session.execute(
        _LINES.join(ApiSale, ApiSale.id == ApiSaleLine.sale_id).where(
            ApiSale.request_id == request_id
        )
    )
    return tuple(Line(*row) for row in rows)


async def posted_lines(session: AsyncSession, transaction_id: int) -> tuple[Line, ...]:
    """The itemised lines of the API sale posted as the ledger's sale `transaction_id`
    (none for a cashier's sale)."""
    rows = await session.execute(
        _LINES.join(ApiSale, ApiSale.id == ApiSaleLine.sale_id).where(
            ApiSale.transaction_id == transaction_id
        )
    )
    return tuple(Line(*row) for row in rows)


async def find_sale(
    session: AsyncSession, partner_id: int, day: date, document: str, *, lock: bool = False
) -> ApiSaleRow | None:
    """The partner's API sale with this document number on the business day `day` (None:
    there is none; another partner's is never found), with its lines; `lock`: its row locked
    for the caller's transaction."""
    stmt = select(
        ApiSale.id,
        ApiSale.partner_id,
        ApiSale.business_day,
        ApiSale.document,
        ApiSale.member_id,
        ApiSale.amount,
        ApiSale.fingerprint,
        ApiSale.transaction_id,
        ApiSale.request_id,
        ApiSale.created_at,
    ).where(
        ApiSale.partner_id == partner_id,
        ApiSale.business_day == day,
        ApiSale.document == document,
    )
    if lock:
        stmt = stmt.with_for_update()
    row = (await session.execute(stmt)).one_or_none()
    if row is None:
        return None
    return ApiSaleRow(
        row.id,
        row.partner_id,
        row.business_day,
        row.document,
        row.member_id,
        row.amount,
        row.fingerprint,
        row.transaction_id,
        row.request_id,
        row.created_at,
        await sale_lines(session, row.id),
    )
