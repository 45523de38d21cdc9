"""An API sale as a till's software reads it (polls it, after posting a sale with points):
its state, and once in the ledger what it gave (db/usecases/api/sales.py posts it)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from db.ledger.models import Transaction
from db.queries.api_sales import ApiSaleRow, find_sale
from db.queries.reports import sale_refunds
from db.rules.discounts import ZERO
from db.rules.errors import UnknownMember, UnknownSale
from db.rules.lines import Line
from db.rules.points import check_receipt
from db.rules.program import Program
from db.usecases.api.actor import ApiActor
from db.usecases.purchases import PurchaseResult, purchase_result
from db.usecases.till import RequestInfo, business_date, request_by_id

# A sale's state, as the till reads it. A request that closed without a posting keeps its
# request's status: "declined", "expired", "unreachable" or "cancelled".
POSTED = "posted"  # in the ledger: `result` says what it gave
PENDING = "pending"  # waiting for the member to confirm in Telegram
RECORDED = "recorded"  # without a member card: recorded for the figures only
CLOSED = ("declined", "expired", "unreachable", "cancelled")


@dataclass(frozen=True, slots=True)
class SaleState:
    """An API sale as the till reads it: its document, day and content, its `state`, the
    points it asks of the member (0: none), until when a pending request waits
    (`expires_at`), and once posted the ledger's `result` (its points, discount, promotions
    and stamps; None while not posted) and the money refunded of it so far. `replayed`:
    this call posted nothing, the document was posted before with the same content."""

    document: str
    business_day: date
    member_id: int | None
    amount: Decimal
    state: str
    created_at: datetime
    lines: tuple[Line, ...] = ()
    points: int = 0
    expires_at: datetime | None = None
    result: PurchaseResult | None = None
    refunded: Decimal = ZERO
    replayed: bool = False

    @property
    def can_finish(self) -> bool:
        """Whether finish_without_points may post it: its request closed without a posting."""
        return self.state in CLOSED


def requested(
    document: str,
    day: date,
    amount: Decimal,
    created_at: datetime,
    lines: tuple[Line, ...],
    req: RequestInfo,
    now: datetime | None = None,
) -> SaleState:
    """A sale with points as its request stands (a pending one past its time is expired:
    the job that closes it may not have run yet)."""
    state = req.status
    if state == PENDING and now is not None and req.expires_at <= now:
        state = "expired"
    return SaleState(
        document,
        day,
        req.member_id,
        amount,
        state,
        created_at,
        lines,
        points=req.points,
        expires_at=req.expires_at if state == PENDING else None,
    )


async def refunded(session: AsyncSession, result: PurchaseResult) -> Decimal:
    refunds = await sale_refunds(session, result.transaction_id)
    return refunds.refunded if refunds is not None else ZERO


async def _result(
    session: AsyncSession, program: Program, transaction_id: int
) -> PurchaseResult | None:
    """The posted sale's result from the ledger (None: its member has deleted their data)."""
    try:
        return await purchase_result(
            session, await session.get_one(Transaction, transaction_id), program=program
        )
    except UnknownMember:
        return None


async def state_of(
    session: AsyncSession, program: Program, row: ApiSaleRow, now: datetime
) -> SaleState:
    base = SaleState(
        row.document,
        row.business_day,
        row.member_id,
        row.amount,
        RECORDED,
        row.created_at,
        row.lines,
    )
    if row.member_id is None:
        return base
    req = await request_by_id(session, program, row.request_id) if row.request_id else None
    if req is not None:
        base = requested(
            row.document, row.business_day, row.amount, row.created_at, row.lines, req, now
        )
    posted = row.transaction_id or (req.transaction_id if req is not None else None)
    if posted is None:
        return base
    result = await _result(session, program, posted)
    refunds = await sale_refunds(session, posted)
    return replace(
        base,
        state=POSTED,
        expires_at=None,
        result=result,
        refunded=refunds.refunded if refunds is not None else ZERO,
    )


async def sale_state(
    session: AsyncSession,
    program: Program,
    actor: ApiActor,
    *,
    document: str,
    day: date | None = None,
    now: datetime | None = None,
) -> SaleState:
    """The key's partner's API sale `document` of the business day `day` (default: today),
    as it stands now (a read): what the till polls after posting a sale with points.
    UnknownSale if there is none (another partner's is never found)."""
    actor.require("sale_read")
    now = now or datetime.now(UTC)
    document = check_receipt(document)
    row = await find_sale(session, actor.partner_id, day or business_date(program, now), document)
    if row is None:
        raise UnknownSale(document=document)
    return await state_of(session, program, row, now)
