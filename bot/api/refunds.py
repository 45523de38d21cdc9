"""POST /refunds: refund one of the partner's sales, fully or partly, by its document
number."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, BeforeValidator, Field, WithJsonSchema
from pydantic_core import PydanticCustomError

from bot.api.context import Actor, Context, IdempotencyKey, Session
from bot.api.problems import POST_CODES, responses
from bot.api.route import ApiRoute
from bot.api.sales import sale_url
from bot.api.schemas import Amount, Document, Money, Points, Strict, Timestamp
from db.rules.errors import UnknownMember
from db.usecases.members import get_member
from db.usecases.partner_api import api_refund, business_day

router = APIRouter(prefix="/refunds", tags=["refunds"], route_class=ApiRoute)


MAX_REASON = 500


def _reason(value: Any) -> str:
    if isinstance(value, str) and value.strip() and len(value) <= MAX_REASON:
        return value
    raise PydanticCustomError(
        "reason_required",
        "a refund needs a reason: 1 to {max} characters, not only spaces",
        {"max": MAX_REASON},
    )


Reason = Annotated[
    str,
    BeforeValidator(_reason),
    WithJsonSchema({"type": "string", "minLength": 1, "maxLength": MAX_REASON, "pattern": r"\S"}),
]


class RefundIn(Strict):
    document: Document = Field(description="The sale's document number")
    day: date | None = Field(default=None, description="The sale's business day; default: today")
    amount: Amount | None = Field(
        default=None,
        description="How much of the money the sale charged (its total less the member's "
        "discount) to refund; left out or null: all that is left",
    )
    reason: Reason = Field(
        default=None,
        validate_default=True,
        description="Why it is refunded (required: 1 to 500 characters, not only spaces)",
    )


class PromotionBackView(BaseModel):
    promotion: str = Field(description="The promotion's slug in the program")
    points: Points = Field(description="Its points taken back from the member's wallet")
    shortfall: Points = Field(description="Its points due back that the member had spent")
    stamps: int = Field(description="Its stamps taken back")


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
    points_clawed_back: Points = Field(
        description="Every point the refund took back from the member's wallet: the sale's "
        "earned points, the invitation reward on a full refund, and what its promotions "
        "gave (listed in `promotions`), as the member's chat and the ledger tell it"
    )
    promotions: list[PromotionBackView] = Field(
        description="What it took back of each promotion the sale got (points part of "
        "points_clawed_back, shortfall part of shortfall)"
    )
    shortfall: Points = Field(
        description="Points due back that the member had already spent (earned or given by "
        "a promotion): their value is kept from cash_back"
    )
    points_available: Points = Field(
        description="The points the member can spend right after the refund (their balance "
        "less points held by open requests, as the lookup's `points`); in a replay, now"
    )
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
        **responses(
            404,
            409,
            codes=(
                *POST_CODES,
                "unknown_sale",
                "unknown_transaction",
                "invalid_receipt",
                "invalid_amount",
                "not_reversible",
                "already_reversed",
                "refund_too_large",
                "reason_required",
                "wrong_partner",
                "idempotency_conflict",
            ),
        ),
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
    try:
        available = (await get_member(session, result.member_id)).available
    except UnknownMember:  # deleted their data since: their points are gone
        available = 0
    url = sale_url(request, body.document, day)
    response.headers["Location"] = url
    return RefundView(
        document=body.document,
        business_day=day,
        amount=result.amount,
        money_refund=result.money_refund,
        cash_back=result.cash_back,
        points_returned=result.points_returned,
        points_clawed_back=result.points_clawed_back + sum(p.points for p in result.promotions),
        promotions=[
            PromotionBackView(
                promotion=p.promotion, points=p.points, shortfall=p.shortfall, stamps=p.stamps
            )
            for p in result.promotions
        ],
        shortfall=result.shortfall,
        points_available=available,
        created_at=result.created_at,
        sale_url=url,
    )
