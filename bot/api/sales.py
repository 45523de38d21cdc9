"""POST /sales (a sale keyed by the till's document number: earning at once, with points a
request the member confirms in Telegram, or without a member card), GET /sales/{document}
(one of the partner's sales in any state, long-polled with `wait`), and what the till does
with a sale with points: POST /sales/{document}/withdraw and
POST /sales/{document}/finish-without-points.

A sale's URL is `/sales/{document}?day=YYYY-MM-DD`: the document number (URL-encoded) and
the business day it counts in. A document number may hold a slash ("FV/2026/12"), so
GET /sales/{document} takes the rest of the path: a GET at a deeper path under /sales would
be registered on this router before get_sale, or it would be read as part of a number (the
POSTs at deeper paths are not: the GET route only partly matches a POST)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from datetime import date
from decimal import Decimal
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, Field

from bot.api.context import Actor, Context, Session
from bot.api.problems import POST_CODES, responses
from bot.api.quotes import QUOTE_CODES
from bot.api.route import ApiRoute
from bot.api.schemas import (
    Amount,
    Document,
    LineIn,
    MemberRef,
    Money,
    Percent,
    Points,
    PointsAsked,
    Strict,
    Timestamp,
    card_of,
    lines_of,
)
from db.rules.errors import RequestClosed, UnknownMember
from db.rules.points import earned_points
from db.rules.program import Program
from db.usecases.api import requests
from db.usecases.api.state import PENDING, POSTED, RECORDED, SaleState
from db.usecases.members import get_member
from db.usecases.partner_api import SaleRecord, api_read_sale, api_sale, business_day
from db.usecases.promotions import Awarded
from db.usecases.purchases import PurchaseResult

SALE_CODES = (*QUOTE_CODES, "invalid_receipt", "receipt_taken", "discount_changed")

router = APIRouter(prefix="/sales", tags=["sales"], route_class=ApiRoute)

MAX_WAIT = 30  # seconds a GET may wait for a pending sale to change
POLL = 0.25  # seconds between two reads while it waits
WITHDRAWN = "withdrawn"
# The state as the till reads it: a request the till withdrew is "cancelled" in the ledger.
_SHOWN = {"cancelled": WITHDRAWN}
SaleStatus = Literal[
    "posted", "pending", "declined", "expired", "unreachable", "withdrawn", "recorded"
]


class SaleIn(Strict):
    member: MemberRef | None = Field(
        description="The member's card; null: a customer without a card (a walk-in), "
        "recorded for the partner's figures only: no points, nothing in the ledger"
    )
    amount: Amount = Field(description="The purchase total, before the member's discount")
    document: Document
    discount_percent: Percent | None = Field(
        default=None,
        description="The member's discount the till applied, as the lookup or quote gave "
        "it: if it changed meanwhile the sale is refused (409 discount_changed). Left out: "
        "the member's discount now, whatever it is (see the answer's `discount`).",
    )
    points: PointsAsked = Field(
        default=0,
        description='Points the member pays with (0: none; "max": as many as allowed). '
        "A sale with points is answered 202 `pending`: the member confirms it in Telegram; "
        "read (poll) the sale at its URL.",
    )
    lines: list[LineIn] = Field(
        default_factory=list,
        max_length=200,
        description="Itemised lines, none or adding up to `amount`: promotions may name "
        "their categories",
    )


class FinishIn(Strict):
    discount_percent: Percent | None = Field(
        default=None,
        description="The discount charged; left out: the one the sale's request showed",
    )


class RefundLineView(BaseModel):
    amount: Money = Field(description="Of the money the sale charged")
    money_refund: Money = Field(description="Its money part (the rest was paid in points)")
    created_at: Timestamp


class PromotionView(BaseModel):
    promotion: str = Field(description="The promotion's slug in the program")
    title: str = Field(description="The promotion's title")
    points: Points = Field(description="Points it gave the member, on top of points_earned")
    stamps: int = Field(description="Stamps it added on each of the partner's stamp cards")
    reward: str | None = Field(
        default=None,
        description="The reward's slug when it gave the member a voucher (null: none). The "
        "voucher's code is the member's own: it is in their Telegram chat, not here",
    )
    reward_title: str | None = Field(default=None, description="The reward's title: tell them")
    voucher_expires_at: Timestamp | None = Field(
        default=None, description="Until when the voucher it gave may be claimed"
    )


class LineView(BaseModel):
    sku: str | None
    category: str | None
    quantity: str = Field(description="A decimal string, up to three decimals")
    amount: Money


class SaleView(BaseModel):
    document: str
    business_day: date = Field(description="The day (program's time zone) it counts in")
    status: SaleStatus = Field(
        description="posted: in the ledger; pending: waiting for the member to confirm in "
        "Telegram (until `expires_at`); declined, expired, unreachable (the member cannot be "
        "asked) or withdrawn (by the till): not posted, finish it without points or leave "
        "it; recorded: a sale without a member card, for the figures only"
    )
    member: bool = Field(description="Whether it is a member's sale (false: no card)")
    amount: Money = Field(description="The purchase total")
    points_requested: Points = Field(description="Points asked of the member (0: none)")
    expires_at: Timestamp | None = Field(
        description="While pending: until when the member may confirm it (2 minutes after "
        "it was posted); null in every other state"
    )
    lines: list[LineView]
    discount: Money | None = Field(description="The member's discount on it (once posted)")
    to_pay: Money | None = Field(description="The total less the discount")
    paid: Money | None = Field(description="Paid in money: to_pay less what points paid")
    points_redeemed: Points | None
    points_earned: Points | None
    points_available: Points | None = Field(
        description="The points the member can spend as this answer is made (their balance "
        "less points held by open requests, as the lookup's `points`): in the answer to the "
        "post, right after the sale; in a later read, now. null for a sale not posted or "
        "without a member"
    )
    tier: str | None = Field(
        description="The member's tier the sale earned at (points_earned is at its rate); "
        "null while not posted"
    )
    tier_after: str | None = Field(
        description="The member's tier after the sale (a sale may move them up: then "
        "above `tier`); in a later read, their tier now. null while not posted"
    )
    promotions: list[PromotionView]
    refunded: Money = Field(description="Refunded so far, of the money charged")
    refunds: list[RefundLineView]
    created_at: Timestamp = Field(
        description="When the till posted it, or the cashier who typed its receipt in the "
        "bot first (it never changes; never after posted_at)"
    )
    posted_at: Timestamp | None = Field(
        description="When it went into the ledger: at once without points, when the member "
        "confirmed or the till finished it without points; null while not posted"
    )
    url: str = Field(description="This sale's address in the API")


def sale_url(request: Request, document: str, day: date) -> str:
    root = request.scope.get("root_path", "")
    return f"{root}/sales/{quote(document, safe='')}?day={day.isoformat()}"


def _promotion(program: Program, a: Awarded) -> PromotionView:
    reward = program.reward(a.reward) if a.reward is not None else None
    return PromotionView(
        promotion=a.promotion,
        title=a.title,
        points=a.points,
        stamps=a.stamps,
        reward=a.reward,
        reward_title=None if a.reward is None else str(reward.title) if reward else a.reward,
        voucher_expires_at=a.voucher_expires,
    )


async def available_now(session: Session, record: SaleRecord) -> int | None:
    """The member's spendable points now, for a posted member's sale (else None)."""
    result = record.state.result
    if result is None:
        return None
    try:
        return (await get_member(session, result.member_id)).available
    except UnknownMember:
        return None


def earned_tier(program: Program, result: PurchaseResult) -> str | None:
    """The tier the sale earned at: the member's at the posting, as the posting says; for a
    sale read back from the ledger (which does not keep it), the highest tier up to the
    member's now whose rate gives the points it earned (a member moves up at a sale, so the
    sale's tier is never above theirs after it). None if no tier's rate does (the program's
    rules changed since)."""
    if result.earned_tier is not None:
        return str(program.tier(result.earned_tier).name)
    rules = program.partner(result.partner)
    if rules is None:
        return None
    now = program.tier(result.tier)
    for tier in reversed(program.tiers):
        if tier.min_spend > now.min_spend:
            continue
        pv = program.program.point_value
        rate = earned_points(result.paid, rules.earn_percent, tier.multiplier, pv)
        if rate == result.points_earned:
            return str(tier.name)
    return None


def sale_view(
    request: Request, program: Program, record: SaleRecord, available: int | None = None
) -> SaleView:
    state, result = record.state, record.state.result
    posted: dict[str, Any] = dict.fromkeys(
        ("discount", "to_pay", "paid", "points_redeemed", "points_earned"), None
    )
    posted |= {"points_available": None, "tier": None, "tier_after": None, "promotions": []}
    if result is not None:
        posted = {
            "discount": result.discount,
            "to_pay": result.to_pay,
            "paid": result.paid,
            "points_redeemed": result.points_redeemed,
            "points_earned": result.points_earned,
            "points_available": available,
            "tier": earned_tier(program, result),
            "tier_after": str(program.tier(result.tier).name),
            "promotions": [_promotion(program, a) for a in result.promotions],
        }
    elif state.state == RECORDED:
        zero = Decimal("0.00")
        posted |= {"discount": zero, "to_pay": state.amount, "paid": state.amount}
        posted |= {"points_redeemed": 0, "points_earned": 0}
    return SaleView(
        document=state.document,
        business_day=state.business_day,
        status=_SHOWN.get(state.state, state.state),  # type: ignore[arg-type]
        member=state.member_id is not None or result is not None,
        amount=state.amount,
        points_requested=state.points,
        expires_at=state.expires_at,
        lines=[
            LineView(
                sku=line.sku,
                category=line.category,
                quantity=format(line.quantity.normalize(), "f"),
                amount=line.amount,
            )
            for line in state.lines
        ],
        refunded=record.refunded,
        refunds=[
            RefundLineView(amount=r.amount, money_refund=r.money_refund, created_at=r.created_at)
            for r in record.refunds
        ],
        created_at=state.created_at,
        posted_at=result.created_at if result is not None else None,
        url=sale_url(request, state.document, state.business_day),
        **posted,
    )


async def _record(
    ctx: Context, session: Session, actor: Actor, document: str, day: date
) -> SaleRecord:
    return await api_read_sale(
        session, ctx.program, actor, document=document, day=day, now=ctx.clock()
    )


async def _answer(
    request: Request,
    response: Response,
    session: Session,
    program: Program,
    record: SaleRecord,
    new: int,
) -> SaleView:
    """The sale's view, its URL as Location, and its status: `new` if this call did what it
    asked, 200 if the sale was so already."""
    view = sale_view(request, program, record, await available_now(session, record))
    response.status_code = 200 if record.state.replayed else new
    response.headers["Location"] = view.url
    return view


@router.post(
    "",
    status_code=201,
    response_model=SaleView,
    summary="Post a sale",
    description="Needs the `sales` scope and an `Idempotency-Key`. The document number is "
    "unique at the partner per business day: the same sale posted again (same member, "
    "amount, points, discount and lines) answers 200 with the sale as it is now; another "
    "sale with that number today is refused (409 receipt_taken).\n\n"
    "Without points a member's sale is posted at once (201, `posted`): points are earned "
    "on what the member pays after their discount. With `points` it is a request the "
    "member confirms in Telegram: 202 `pending` with the sale's URL as `Location`; read "
    "it there (`?wait=30` long-polls) until it is `posted` or closed, then finish it "
    "without points or leave it. With `member: null` it is recorded (201, `recorded`).",
    responses={
        200: {"model": SaleView, "description": "The same sale, posted before"},
        202: {
            "model": SaleView,
            "description": "A sale with points, waiting for the member (`pending`, for 2 "
            "minutes), or `unreachable` at once: the member cannot be asked; finish it "
            "without points",
        },
        **responses(404, 409, codes=SALE_CODES),
    },
)
async def post_sale(
    body: SaleIn,
    request: Request,
    response: Response,
    ctx: Context,
    session: Session,
    actor: Actor,
) -> SaleView:
    now = ctx.clock()
    state = await api_sale(
        session,
        ctx.program,
        actor,
        secret=ctx.secret,
        **(card_of(body.member) if body.member is not None else {}),
        amount=body.amount,
        document=body.document,
        discount_percent=body.discount_percent,
        lines=lines_of(body.lines),
        points=body.points,
        now=now,
    )
    if state.replayed:  # as it is now, with its refunds
        record = await _record(ctx, session, actor, state.document, state.business_day)
        record = SaleRecord(_keep_replayed(record.state, state), record.refunds)
    else:
        record = SaleRecord(state, [])
    done = state.state in (POSTED, RECORDED)
    return await _answer(request, response, session, ctx.program, record, 201 if done else 202)


Day = Annotated[
    date | None, Query(description="The sale's business day, YYYY-MM-DD; default: today")
]
DocumentPath = Annotated[Document, Path(description="The document number (URL-encoded)")]


@router.post(
    "/{document:path}/withdraw",
    response_model=SaleView,
    summary="Withdraw a pending sale's request",
    description="Needs the `sales` scope and an `Idempotency-Key`. The member can no longer "
    "confirm it; the sale is `withdrawn` (finish it without points, or leave it). "
    "Withdrawing a withdrawn sale answers it as it is (200); one the member answered "
    "meanwhile is 409 request_closed, with its `status`: read the sale.",
    responses=responses(
        404, 409, codes=(*POST_CODES, "unknown_sale", "invalid_receipt", "request_closed")
    ),
)
async def withdraw(
    document: DocumentPath,
    request: Request,
    response: Response,
    ctx: Context,
    session: Session,
    actor: Actor,
    day: Day = None,
) -> SaleView:
    day = day or business_day(ctx.program, ctx.clock())
    try:
        await requests.withdraw(
            session, ctx.program, actor, document=document, day=day, now=ctx.clock()
        )
    except RequestClosed as closed:
        if closed.params.get("status") != "cancelled":
            raise
    record = await _record(ctx, session, actor, document, day)
    if record.state.state != "cancelled":  # withdrawn, then finished without points
        raise RequestClosed(status=record.state.state)
    return await _answer(request, response, session, ctx.program, record, 200)


@router.post(
    "/{document:path}/finish-without-points",
    status_code=201,
    response_model=SaleView,
    summary="Post a sale whose request closed, without points",
    description="Needs the `sales` scope and an `Idempotency-Key`. For a sale with points "
    "the member declined, let expire, could not be asked, or the till withdrew: it is "
    "posted as it was, without points (201). Already posted (the member confirmed "
    "meanwhile): 200 with the sale as it is. Still pending, or a sale without a member: "
    "409 request_closed. The discount charged is the one the request showed; "
    "`discount_percent` is a check of the one you charge, which must be the member's now "
    "(409 discount_changed, with theirs as `discount_percent`, if it is not).",
    responses={
        200: {"model": SaleView, "description": "Posted already"},
        **responses(
            404,
            409,
            codes=(
                *POST_CODES,
                "unknown_sale",
                "invalid_receipt",
                "request_closed",
                "discount_changed",
                "receipt_taken",
            ),
        ),
    },
)
async def finish_without_points(
    document: DocumentPath,
    request: Request,
    response: Response,
    ctx: Context,
    session: Session,
    actor: Actor,
    day: Day = None,
    body: FinishIn | None = None,
) -> SaleView:
    day = day or business_day(ctx.program, ctx.clock())
    state = await requests.finish_without_points(
        session,
        ctx.program,
        actor,
        document=document,
        day=day,
        discount_percent=body.discount_percent if body is not None else None,
        now=ctx.clock(),
    )
    record = await _record(ctx, session, actor, document, day)
    record = SaleRecord(_keep_replayed(record.state, state), record.refunds)
    return await _answer(request, response, session, ctx.program, record, 201)


def _keep_replayed(read: SaleState, done: SaleState) -> SaleState:
    return replace(read, replayed=done.replayed)


@router.get(
    "/{document:path}",
    response_model=SaleView,
    summary="Read one of the partner's sales",
    description="By its document number and business day (default: today in the "
    "program's time zone). Needs the `sales` or `read` scope. Another partner's sale is "
    f"not found here. With `wait` (seconds, at most {MAX_WAIT}) a `pending` sale is "
    "answered as soon as its state changes (the member confirmed or declined, it expired, "
    "it was withdrawn) or when the wait is over, still pending.",
    responses=responses(404, codes=("unknown_transaction", "invalid_receipt")),
)
async def get_sale(
    document: DocumentPath,
    request: Request,
    ctx: Context,
    session: Session,
    actor: Actor,
    day: Day = None,
    wait: Annotated[
        int,
        Query(ge=0, description=f"Seconds to wait while the sale is pending (at most {MAX_WAIT})"),
    ] = 0,
) -> SaleView:
    day = day or business_day(ctx.program, ctx.clock())
    record = await _record(ctx, session, actor, document, day)
    deadline = time.monotonic() + min(wait, MAX_WAIT)
    while record.state.state == PENDING and (left := deadline - time.monotonic()) > 0:
        await session.close()  # no connection held while it waits
        await asyncio.sleep(min(POLL, left))
        record = await _record(ctx, session, actor, document, day)
    return sale_view(request, ctx.program, record, await available_now(session, record))
