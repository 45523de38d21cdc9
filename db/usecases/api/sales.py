"""Sales a till's software posts through the partner API, by document number.

A document number is unique at a partner within a business day (in the program's time zone):
the same document sent again with the same content is the same sale (a replay: nothing is
posted again, its state is returned); with other content it is refused (ReceiptTaken). A
member's sale is posted under the key a cashier's sale with that receipt number would have
(db/usecases/till.py sale_key), so the two cannot post one receipt twice either.

- Without points it is posted at once (post_purchase), with the member's news owed.
- With points it is a redemption request (db/usecases/till.py open_request) that the member
  confirms or declines in Telegram, as at a cashier's till; nothing is owed to a staff chat:
  the till polls `sale_state` (pending, then posted with its result, or declined, expired,
  unreachable or cancelled). A request that closed without a posting can be finished
  without points (`finish_without_points`, the cashier's "post without points"), or
  withdrawn while pending (`withdraw`).
- Without a member card (`member_id` None) it is recorded in `api_sales` only, for the
  partner's figures (members' and non-members' average checks): no points, no ledger
  posting.

Its itemised lines, if any, are kept with it (`api_sale_lines`) and the promotions with
categories decide on them (db/rules/promotions.py), also when the member confirms later."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Literal

from sqlalchemy import insert, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.ledger.models import ApiSale, ApiSaleLine, Transaction
from db.ledger.writer import fingerprint, unit_of_work
from db.queries.api_sales import ApiSaleRow, find_sale
from db.queries.reports import sale_refunds
from db.rules.discounts import ZERO
from db.rules.errors import (
    IdempotencyConflict,
    InvalidPoints,
    ReceiptTaken,
    RequestClosed,
    UnknownMember,
    UnknownSale,
)
from db.rules.lines import Line, check_lines, line_digest
from db.rules.points import check_purchase, check_receipt
from db.rules.program import Program
from db.usecases import discounts
from db.usecases.api.actor import ApiActor
from db.usecases.members import get_member
from db.usecases.outbox import owe, owed_for_purchase
from db.usecases.purchases import PurchaseResult, Sale, post_purchase, purchase_result
from db.usecases.till import (
    RequestInfo,
    business_date,
    close_locked,
    open_request,
    receipt_key,
    request_by_id,
    sells,
)

# A sale's state, as the till reads it. A request that closed without a posting keeps its
# request's status: "declined", "expired", "unreachable" or "cancelled".
POSTED = "posted"  # in the ledger: `result` says what it gave
PENDING = "pending"  # waiting for the member to confirm in Telegram
RECORDED = "recorded"  # without a member card: recorded for the figures only
CLOSED = ("declined", "expired", "unreachable", "cancelled")

MAX: Literal["max"] = "max"  # points: as many as the member may pay


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


async def post_sale(
    session: AsyncSession,
    program: Program,
    actor: ApiActor,
    *,
    document: str,
    member_id: int | None,
    amount: Decimal,
    lines: Sequence[Line] = (),
    points: int | Literal["max"] = 0,
    discount_percent: Decimal | None = None,
    now: datetime | None = None,
) -> SaleState:
    """Post the till's sale `document` at the key's partner (see the module's doc): for the
    member `member_id` (None: a sale without a member card, recorded only), of `amount`
    with its itemised `lines` (none, or adding up to it), paying `points` of it (0: none;
    MAX: as many as allowed; a request the member confirms). `discount_percent`: the
    discount the till charged (a quote's, the tier's and the club's; DiscountChanged if the
    member's no longer gives it); None: the member's now.

    Returns its state: posted (without points), pending (or unreachable: the member cannot
    be asked, finish it without points), recorded (without a member); a replay's as it is
    now. Refused (nothing written): InvalidReceipt, InvalidAmount, AmountTooLarge,
    InvalidLines, LinesDontAddUp, InvalidPoints (points without a member), UnknownMember,
    CharityTakesNoSales, DiscountChanged, NotEnoughPoints, RedeemLimitExceeded, and
    ReceiptTaken for a document number taken today by another sale."""
    actor.require("sale")
    if points:
        actor.require("redeem")
    sells(program, actor.partner_slug)
    document = check_receipt(document)
    amount = check_purchase(amount, program.program.max_purchase)
    lines = check_lines(lines, amount)
    if member_id is None and points:
        raise InvalidPoints(points=points)  # points are a member's
    now = now or datetime.now(UTC)
    day = business_date(program, now)
    digest = fingerprint(
        "api_sale",
        member_id,
        str(amount),
        points,
        None if discount_percent is None else str(discount_percent),
        line_digest(lines),
    )
    async with unit_of_work(session):
        member = await get_member(session, member_id) if member_id is not None else None
        sale_id = await _open(session, actor, day, document, member_id, amount, digest, now)
        if sale_id is None:
            return await _replay(session, program, actor, day, document, digest, now)
        await _keep_lines(session, sale_id, lines)
        if member is None:
            await actor.audit(session, "api_sale_without_member", amount=amount, receipt=document)
            return SaleState(document, day, None, amount, RECORDED, now, lines)
        if discount_percent is None:
            discount_percent = (
                await discounts.quote(session, program, member.id, amount, now)
            ).percent
        if not points:
            result = await _post(
                session,
                program,
                actor,
                sale_id,
                member.id,
                amount,
                document,
                day,
                now,
                discount_percent,
                lines,
            )
            refunded = ZERO if not result.replayed else await _refunded(session, result)
            return SaleState(
                document,
                day,
                member.id,
                amount,
                POSTED,
                now,
                lines,
                result=result,
                refunded=refunded,
            )
        info, _created = await open_request(
            session,
            program,
            member,
            partner_id=actor.partner_id,
            partner_slug=actor.partner_slug,
            staff_id=None,
            staff_chat_id=None,
            amount=amount,
            points=None if points == MAX else int(points),
            public_id=secrets.token_urlsafe(12),
            receipt=document,
            now=now,
            discount_percent=discount_percent,
        )
        await session.execute(
            update(ApiSale).where(ApiSale.id == sale_id).values(request_id=info.id)
        )
        await actor.audit(
            session,
            "redeem_request" if info.status == PENDING else "redeem_unreachable",
            member_id=member.id,
            amount=amount,
            points=info.points,
            receipt=document,
        )
        return _requested(document, day, amount, now, lines, info)


async def _open(
    session: AsyncSession,
    actor: ApiActor,
    day: date,
    document: str,
    member_id: int | None,
    amount: Decimal,
    digest: str,
    now: datetime,
) -> int | None:
    """The sale's row (its id), or None: the document was taken (a concurrent post of it
    waits here until the first commits, then finds it)."""
    return (
        await session.execute(
            pg_insert(ApiSale)
            .values(
                partner_id=actor.partner_id,
                business_day=day,
                document=document,
                member_id=member_id,
                amount=amount,
                fingerprint=digest,
                api_key_id=actor.key_id,
                created_at=now,
            )
            .on_conflict_do_nothing(
                index_elements=[ApiSale.partner_id, ApiSale.business_day, ApiSale.document]
            )
            .returning(ApiSale.id)
        )
    ).scalar_one_or_none()


async def _keep_lines(session: AsyncSession, sale_id: int, lines: Sequence[Line]) -> None:
    if lines:
        await session.execute(
            insert(ApiSaleLine),
            [
                {
                    "sale_id": sale_id,
                    "position": i,
                    "sku": line.sku,
                    "category": line.category,
                    "quantity": line.quantity,
                    "amount": line.amount,
                }
                for i, line in enumerate(lines)
            ],
        )


async def _replay(
    session: AsyncSession,
    program: Program,
    actor: ApiActor,
    day: date,
    document: str,
    digest: str,
    now: datetime,
) -> SaleState:
    """The document was posted before: the same sale (its state now), or ReceiptTaken."""
    row = await find_sale(session, actor.partner_id, day, document)
    assert row is not None  # the insert met it
    if row.fingerprint != digest:
        raise ReceiptTaken(receipt=document)
    return replace(await _state(session, program, row, now), replayed=True)


async def _post(
    session: AsyncSession,
    program: Program,
    actor: ApiActor,
    sale_id: int,
    member_id: int,
    amount: Decimal,
    document: str,
    day: date,
    now: datetime,
    discount_percent: Decimal,
    lines: tuple[Line, ...],
) -> PurchaseResult:
    """The member's sale without points, in the ledger under its receipt's key, linked to
    its row; audited and the member's news owed (not for a replay: a cashier posted this
    very receipt already)."""
    try:
        result = await post_purchase(
            session,
            program,
            Sale(
                member_id=member_id,
                partner=actor.partner_slug,
                amount=amount,
                key=receipt_key(actor.partner_id, day, document),
                receipt=document,
                now=now,
                discount_percent=discount_percent,
                lines=lines,
            ),
        )
    except IdempotencyConflict:
        raise ReceiptTaken(receipt=document) from None
    await session.execute(
        update(ApiSale).where(ApiSale.id == sale_id).values(transaction_id=result.transaction_id)
    )
    if not result.replayed:
        await actor.audit(
            session,
            "sale",
            member_id=member_id,
            transaction_id=result.transaction_id,
            amount=amount,
            points=result.points_earned,
            receipt=document,
        )
        await owe(session, *owed_for_purchase(result))
    return result


def _requested(
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


async def _refunded(session: AsyncSession, result: PurchaseResult) -> Decimal:
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


async def _state(
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
        base = _requested(
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
    actor.require("sale")
    now = now or datetime.now(UTC)
    document = check_receipt(document)
    row = await find_sale(session, actor.partner_id, day or business_date(program, now), document)
    if row is None:
        raise UnknownSale(document=document)
    return await _state(session, program, row, now)


async def finish_without_points(
    session: AsyncSession,
    program: Program,
    actor: ApiActor,
    *,
    document: str,
    day: date | None = None,
    discount_percent: Decimal | None = None,
    now: datetime | None = None,
) -> SaleState:
    """Post the sale `document` (of the business day `day`, default today) without points,
    after its request closed without a posting (declined, expired, unreachable, withdrawn;
    a pending one past its time is closed as expired first): the cashier's "post without
    points". Under its receipt's key, with its lines; `discount_percent`: the discount
    charged (None: the one the request showed; DiscountChanged if the member's no longer
    gives it: quote again and finish with the new one). A sale posted already (so, its
    request confirmed meanwhile) is returned as it is, `replayed`. UnknownSale; RequestClosed
    (status "pending") while the member may still answer, and for a sale without a member
    ("recorded")."""
    actor.require("sale")
    now = now or datetime.now(UTC)
    document = check_receipt(document)
    day = day or business_date(program, now)
    async with unit_of_work(session):
        row = await find_sale(session, actor.partner_id, day, document, lock=True)
        if row is None:
            raise UnknownSale(document=document)
        if row.member_id is None:
            raise RequestClosed(status=RECORDED)
        if row.transaction_id is not None or row.request_id is None:
            return replace(await _state(session, program, row, now), replayed=True)
        req = await request_by_id(session, program, row.request_id, lock=True)
        if req.status == PENDING:
            if req.expires_at > now:
                raise RequestClosed(status=PENDING)
            req = await close_locked(
                session, program, req, status="expired", actor=None, now=now, api_key=actor.key_id
            )
        if req.status not in CLOSED:  # confirmed meanwhile: posted with its points
            return replace(await _state(session, program, row, now), replayed=True)
        result = await _post(
            session,
            program,
            actor,
            row.id,
            row.member_id,
            row.amount,
            document,
            day,
            now,
            req.discount_percent if discount_percent is None else discount_percent,
            row.lines,
        )
        return SaleState(
            document,
            day,
            row.member_id,
            row.amount,
            POSTED,
            row.created_at,
            row.lines,
            points=req.points,
            result=result,
        )


async def withdraw(
    session: AsyncSession,
    program: Program,
    actor: ApiActor,
    *,
    document: str,
    day: date | None = None,
    now: datetime | None = None,
) -> SaleState:
    """Withdraw the pending request of the sale `document` (of the business day `day`,
    default today): the member can no longer confirm it (their buttons are closed), and the
    till may finish the sale without points or leave it. RequestClosed when it is not
    pending (the member answered meanwhile: read the sale), UnknownSale."""
    actor.require("sale")
    now = now or datetime.now(UTC)
    document = check_receipt(document)
    day = day or business_date(program, now)
    async with unit_of_work(session):
        row = await find_sale(session, actor.partner_id, day, document, lock=True)
        if row is None:
            raise UnknownSale(document=document)
        if row.request_id is None:
            raise RequestClosed(status=POSTED if row.member_id is not None else RECORDED)
        req = await request_by_id(session, program, row.request_id, lock=True)
        await close_locked(
            session,
            program,
            req,
            status="cancelled",
            actor=None,
            now=now,
            why="withdrawn",
            api_key=actor.key_id,
        )
        return await _state(session, program, row, now)
