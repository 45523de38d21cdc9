"""A refund by document number, through the partner API: the till's own refund
(db/usecases/purchases.py post_reversal, as a manager's /refund posts it), found by the
sale's document number at the key's partner."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from db.ledger.writer import unit_of_work
from db.queries.api_sales import find_sale
from db.rules.errors import NotReversible, UnknownSale
from db.rules.points import check_receipt
from db.rules.program import Program
from db.usecases.api.actor import ApiActor
from db.usecases.outbox import owe, owed_for_reversal
from db.usecases.purchases import Refund, ReversalResult, post_reversal
from db.usecases.till import business_date, request_by_id

MAX_KEY = 100  # a longer idempotency key is kept as its digest


def refund_key(actor: ApiActor, key: str) -> str:
    """The ledger's key of a refund the till asked for under its idempotency `key` (its
    partner's own: another partner's same key is another refund)."""
    if len(key) > MAX_KEY:
        key = hashlib.sha256(key.encode()).hexdigest()
    return f"api:{actor.partner_id}:refund:{key}"


async def refund_sale(
    session: AsyncSession,
    program: Program,
    actor: ApiActor,
    *,
    document: str,
    amount: Decimal | None,
    reason: str,
    key: str,
    day: date | None = None,
    now: datetime | None = None,
) -> ReversalResult:
    """Refund the key's partner's sale `document` (of the business day `day`, default today)
    fully (`amount` None: all that is left) or partly (`amount` of the money it charged),
    as post_reversal does (points clawed back and returned in proportion, promotions and
    stamps taken back, the member's news owed); `key`: the till's idempotency key for this
    refund (the same key again replays it, `replayed`). UnknownSale (another partner's is
    never found), NotReversible (not posted: a sale without a member, or one whose request
    is still open or closed without a posting), ReasonRequired, RefundTooLarge,
    AlreadyReversed, InvalidAmount."""
    actor.require("refund")
    now = now or datetime.now(UTC)
    document = check_receipt(document)
    async with unit_of_work(session):
        row = await find_sale(
            session, actor.partner_id, day or business_date(program, now), document
        )
        if row is None:
            raise UnknownSale(document=document)
        posted = row.transaction_id
        if posted is None and row.request_id is not None:
            posted = (await request_by_id(session, program, row.request_id)).transaction_id
        if posted is None:
            raise NotReversible(document=document, kind="not_posted")
        result = await post_reversal(
            session,
            program,
            Refund(
                transaction_id=posted,
                key=refund_key(actor, key),
                reason=reason,
                amount=amount,
                partner=actor.partner_slug,  # the ledger refuses another partner's too
                now=now,
            ),
        )
        if not result.replayed:
            await actor.audit(
                session,
                "refund",
                member_id=result.member_id,
                transaction_id=result.transaction_id,
                refunds=posted,
                amount=result.amount,
                reason=reason,
                receipt=document,
            )
            await owe(session, *owed_for_reversal(result))
        return result
