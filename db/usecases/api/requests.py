"""What a till's software does with a sale with points after posting it: finish it without
points when its request closed without a posting (the cashier's "post without points"), or
withdraw its request while the member has not answered."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from db.ledger.writer import unit_of_work
from db.queries.api_sales import find_sale
from db.rules.discounts import check_shown
from db.rules.errors import DiscountChanged, RequestClosed, UnknownSale
from db.rules.points import check_receipt
from db.rules.program import Program
from db.usecases import discounts
from db.usecases.api.actor import ApiActor
from db.usecases.api.sales import post_member_sale
from db.usecases.api.state import CLOSED, PENDING, POSTED, RECORDED, SaleState, state_of
from db.usecases.till import business_date, close_locked, request_by_id


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
    charged (None: the one the request showed; DiscountChanged, with the member's
    `discount_percent` now, if theirs is not that: finish with theirs). A sale posted
    already (so, its request confirmed meanwhile) is returned as it is, `replayed`.
    UnknownSale; RequestClosed (status "pending") while the member may still answer, and
    for a sale without a member ("recorded")."""
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
            return replace(await state_of(session, program, row, now), replayed=True)
        req = await request_by_id(session, program, row.request_id, lock=True)
        if req.status == PENDING:
            if req.expires_at > now:
                raise RequestClosed(status=PENDING)
            req = await close_locked(
                session, program, req, status="expired", actor=None, now=now, api_key=actor.key_id
            )
        if req.status not in CLOSED:  # confirmed meanwhile: posted with its points
            return replace(await state_of(session, program, row, now), replayed=True)
        charged = req.discount_percent
        if discount_percent is not None:
            charged = check_shown(discount_percent)
        quoted = await discounts.quote(session, program, row.member_id, row.amount, now)
        member_now = quoted.percent
        if charged != member_now:  # the ledger would refuse it: say what the member's is
            raise DiscountChanged(discount_percent=str(member_now))
        result = await post_member_sale(
            session,
            program,
            actor,
            row.id,
            row.member_id,
            row.amount,
            document,
            day,
            now,
            charged,
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
        return await state_of(session, program, row, now)
