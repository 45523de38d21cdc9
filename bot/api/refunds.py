"""POST /refunds: refund one of the partner's sales, fully or partly, by its document
number."""

from __future__ import annotations

from datetime import date

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from bot.api.context import Actor, Context, IdempotencyKey, Session
from bot.api.problems import responses
from bot.api.route import ApiRoute
from bot.api.sales import sale_url
from bot.api.schemas import Amount, Document, Money, Points, Strict, Timestamp
from db.usecases.partner_api import api_refund, business_day

router = APIRouter(prefix="/refunds", tags=["refunds"], route_class=ApiRoute)


class RefundIn(Strict):
    document: Document = Field(description="The sale's document number")
    day: date | None = Field(default=None, description="The sale's business day; default: today")
    amount: Amount | None = Field(
        default=None,
        description="How much of the money the sale charged (its total less the member's "
        "discount) to refund; left out or null: all that is left",
    )
    reason: str = Field(min_length=1, max_length=500, pattern=r"\S")


class RefundView(BaseModel):
    document: str
    business_day: date = Field(description="The refunded sale's business day")
    amount: Money = Field(description="Refunded, of the money the sale charged")
    money_refund: Money = Field(description="Its money part (the rest was paid in points)")
    cash_back: Money = Field(
        description="What the till hands back: the money part less the value of points "
        "the member already spent of those this sale earned"
    )
    points_returned: Points = Field(description="Points that paid for it, back to the member")
    points_clawed_back: Points = Field(description="Points it had earned, taken back")
    shortfall: Points = Field(description="Earned points already spent: kept from cash_back")
    points_balance: Points = Field(description="The member's points after the refund")
    created_at: Timestamp
    sale_url: str


@router.post(
    "",
    status_code=201,
    response_model=RefundView,
    summary="Refund a sale, fully or partly",
    description="Needs the `sales` scope and an `Idempotency-Key`, which also keys the "
    "refund in the ledger: a retry with the same key refunds once. Points the sale earned "
    "are taken back in proportion; points that paid for it are returned.",
    responses={
        200: {"model": RefundView, "description": "The same refund, posted before"},
        **responses(404, 409),
    },
)
async def post_refund(
    body: RefundIn,
    request: Request,
    response: Response,
    ctx: Context,
    session: Session,
    actor: Actor,
    key: IdempotencyKey,
) -> RefundView:
    day = body.day or business_day(ctx.program, ctx.clock())
    result = await api_refund(
        session,
        ctx.program,
        actor,
        document=body.document,
        day=day,
        amount=body.amount,
        reason=body.reason,
        key=key,
    )
    if result.replayed:
        response.status_code = 200
    url = sale_url(request, body.document, day)
    response.headers["Location"] = url
    return RefundView(
        document=body.document,
        business_day=day,
        amount=result.amount,
        money_refund=result.money_refund,
        cash_back=result.cash_back,
        points_returned=result.points_returned,
        points_clawed_back=result.points_clawed_back,
        shortfall=result.shortfall,
        points_balance=result.balance,
        created_at=result.created_at,
        sale_url=url,
    )
