"""POST /sales (an earn-only sale, keyed by the till's document number) and
GET /sales/{document} (one of the partner's sales, with its refunds).

A document number may hold a slash ("FV/2026/12"), so GET /sales/{document} takes the rest
of the path: an operation at a deeper path under /sales (GET /sales/{document}/…) is
registered on this router before get_sale, or it would be read as part of a number."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Literal
from urllib.parse import quote

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, Field

from bot.api.context import Actor, Context, Session
from bot.api.problems import responses
from bot.api.route import ApiRoute
from bot.api.schemas import (
    Amount,
    Document,
    MemberRef,
    Money,
    Percent,
    Points,
    Strict,
    Timestamp,
    card_of,
)
from db.rules.program import Program
from db.usecases.partner_api import (
    RefundLine,
    SaleRecord,
    api_read_sale,
    api_sale,
    business_day,
)
from db.usecases.purchases import PurchaseResult

router = APIRouter(prefix="/sales", tags=["sales"], route_class=ApiRoute)


class SaleIn(Strict):
    member: MemberRef
    amount: Amount = Field(description="The purchase total, before the member's discount")
    document: Document
    discount_percent: Percent | None = Field(
        default=None,
        description="The member's discount the till applied, as the lookup gave it: if it "
        "changed meanwhile the sale is refused (409 discount_changed). Left out: the "
        "member's discount now, whatever it is (see the answer's `discount`).",
    )


class RefundLineView(BaseModel):
    amount: Money = Field(description="Of the money the sale charged")
    money_refund: Money = Field(description="Its money part (the rest was paid in points)")
    created_at: Timestamp


class PromotionView(BaseModel):
    promotion: str = Field(description="The promotion's slug in the program")
    points: Points
    stamps: int


class SaleView(BaseModel):
    document: str
    business_day: date = Field(description="The day (program's time zone) it counts in")
    status: Literal["posted"] = Field(description="posted: in the ledger")
    amount: Money = Field(description="The purchase total")
    discount: Money = Field(description="The member's discount on it")
    to_pay: Money = Field(description="The total less the discount")
    paid: Money = Field(description="Paid in money: to_pay less what points paid")
    points_redeemed: Points
    points_earned: Points
    points_balance: Points = Field(description="The member's points after the sale")
    tier: str = Field(description="The member's tier after the sale")
    promotions: list[PromotionView]
    refunded: Money = Field(description="Refunded so far, of the money charged")
    refunds: list[RefundLineView]
    created_at: Timestamp
    url: str = Field(description="This sale's address in the API")


def sale_url(request: Request, document: str, day: date) -> str:
    root = request.scope.get("root_path", "")
    return f"{root}/sales/{quote(document, safe='')}?day={day.isoformat()}"


def sale_view(
    request: Request,
    program: Program,
    result: PurchaseResult,
    document: str,
    refunds: list[RefundLine],
) -> SaleView:
    day = business_day(program, result.created_at)
    return SaleView(
        document=document,
        business_day=day,
        status="posted",
        amount=result.amount,
        discount=result.discount,
        to_pay=result.to_pay,
        paid=result.paid,
        points_redeemed=result.points_redeemed,
        points_earned=result.points_earned,
        points_balance=result.balance,
        tier=str(program.tier(result.tier).name),
        promotions=[
            PromotionView(promotion=a.promotion, points=a.points, stamps=a.stamps)
            for a in result.promotions
        ],
        refunded=sum((r.amount for r in refunds), Decimal("0.00")),
        refunds=[
            RefundLineView(amount=r.amount, money_refund=r.money_refund, created_at=r.created_at)
            for r in refunds
        ],
        created_at=result.created_at,
        url=sale_url(request, document, day),
    )


def record_view(request: Request, program: Program, record: SaleRecord) -> SaleView:
    return sale_view(request, program, record.sale, record.document, record.refunds)


@router.post(
    "",
    status_code=201,
    response_model=SaleView,
    summary="Post a sale that earns points",
    description="Needs the `sales` scope and an `Idempotency-Key`. The document number is "
    "unique at the partner per business day: the same sale posted again (same member, "
    "amount and discount) answers 200 with the sale as it is; another sale with that "
    "number today is refused (409 receipt_taken). Points are earned on what the member "
    "pays after their discount.",
    responses={
        200: {"model": SaleView, "description": "The same sale, posted before"},
        **responses(404, 409),
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
    result = await api_sale(
        session,
        ctx.program,
        actor,
        secret=ctx.secret,
        **card_of(body.member),
        amount=body.amount,
        document=body.document,
        discount_percent=body.discount_percent,
        now=ctx.clock(),
    )
    if result.replayed:
        response.status_code = 200
        day = business_day(ctx.program, result.created_at)
        record = await api_read_sale(session, ctx.program, actor, document=body.document, day=day)
        view = record_view(request, ctx.program, record)
    else:
        view = sale_view(request, ctx.program, result, body.document, [])
    response.headers["Location"] = view.url
    return view


@router.get(
    "/{document:path}",
    response_model=SaleView,
    summary="Read one of the partner's sales",
    description="By its document number and business day (default: today in the "
    "program's time zone). Needs the `sales` or `read` scope. Another partner's sale is "
    "not found here.",
    responses=responses(404),
)
async def get_sale(
    document: Annotated[Document, Path(description="The document number (URL-encoded)")],
    request: Request,
    ctx: Context,
    session: Session,
    actor: Actor,
    day: Annotated[date | None, Query(description="The business day, YYYY-MM-DD")] = None,
) -> SaleView:
    record = await api_read_sale(
        session,
        ctx.program,
        actor,
        document=document,
        day=day or business_day(ctx.program, ctx.clock()),
    )
    return record_view(request, ctx.program, record)
