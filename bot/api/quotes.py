"""POST /quotes: what a sale would give, before the till posts it (a dry run: nothing is
written; the sale decides again when it is posted)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from bot.api.context import Actor, Context, Session
from bot.api.problems import CARD, POST_CODES, responses
from bot.api.route import ApiRoute
from bot.api.schemas import (
    Amount,
    LineIn,
    MemberRef,
    Money,
    Percent,
    Points,
    PointsAsked,
    Strict,
    lines_of,
)
from db.rules.points import check_purchase
from db.usecases.api.quote import quote
from db.usecases.till import lookup_member

QUOTE_CODES = (
    *POST_CODES,
    *CARD,
    "too_many_lookups",
    "invalid_amount",
    "amount_too_large",
    "invalid_points",
    "redeem_limit_exceeded",
    "not_enough_points",
    "invalid_lines",
    "lines_dont_add_up",
    "charity_takes_no_sales",
    "unknown_partner",
    "own_card",
)

router = APIRouter(prefix="/quotes", tags=["sales"], route_class=ApiRoute)


class QuoteIn(Strict):
    member: MemberRef | None = Field(
        description="The member's card; null: a customer without a card (the quote is the "
        "amount's: no discount, no points)"
    )
    amount: Amount = Field(description="The purchase total, before the member's discount")
    points: PointsAsked = Field(
        default=0,
        description='Points the member would pay with (0: none; "max": as many as they may)',
    )
    lines: list[LineIn] = Field(
        default_factory=list, max_length=200, description="Itemised lines, as for a sale"
    )


class QuotedPromotion(BaseModel):
    promotion: str = Field(description="The promotion's slug in the program")
    title: str
    points: Points
    stamps: int
    reward: str | None = Field(description="A voucher's reward, if it gives one")


class QuotedStamps(BaseModel):
    card: str = Field(description="The stamp card's slug in the program")
    status: str = Field(description="added, filled, or why no stamp would be added")
    stamps: int = Field(description="The card's stamps after the sale")
    of: int


class QuoteView(BaseModel):
    amount: Money
    member: bool = Field(description="Whether it is a member's quote")
    tier: str | None
    discount_percent: Percent = Field(description="The member's discount (tier and club)")
    discount: Money
    to_pay: Money = Field(description="The amount less the discount")
    points: Points = Field(description="Points asked to pay with")
    points_value: Money = Field(description="What those points pay")
    paid: Money = Field(description="Money left to pay: to_pay less points_value")
    points_earned: Points = Field(description="Points the sale would earn")
    points_available: Points = Field(description="Points the member can spend now")
    max_points: Points = Field(description="The most points they may pay this sale with")
    max_points_value: Money
    promotions: list[QuotedPromotion]
    stamps: list[QuotedStamps]


@router.post(
    "",
    response_model=QuoteView,
    summary="Quote a sale (a dry run)",
    description="Needs the `sales` scope and an `Idempotency-Key`. What the sale would give "
    "now: the member's discount, points earned, the most points they may pay with, the "
    "promotions and stamps that would apply. Nothing is written; points asked for that "
    "the member cannot pay are refused as the sale would be (409 not_enough_points, 422 "
    "redeem_limit_exceeded).",
    responses=responses(404, 409, codes=QUOTE_CODES),
)
async def post_quote(body: QuoteIn, ctx: Context, session: Session, actor: Actor) -> QuoteView:
    actor.require("sale")
    check_purchase(body.amount, ctx.program.program.max_purchase)  # before the card is read
    member_id = None
    if body.member is not None:
        ref = body.member
        member = await lookup_member(
            session,
            actor,
            secret=ctx.secret,
            token=getattr(ref, "card_token", None),
            card_number=getattr(ref, "card_number", None),
            how="api",
        )
        member_id = member.id
    q = await quote(
        session,
        ctx.program,
        actor,
        member_id=member_id,
        amount=body.amount,
        lines=lines_of(body.lines),
        points=body.points,
        now=ctx.clock(),
    )
    return QuoteView(
        amount=q.amount,
        member=q.member_id is not None,
        tier=q.tier,
        discount_percent=q.discount_percent,
        discount=q.discount,
        to_pay=q.to_pay,
        points=q.points,
        points_value=q.points_money,
        paid=q.paid,
        points_earned=q.points_earned,
        points_available=q.available,
        max_points=q.max_points,
        max_points_value=q.max_points_money,
        promotions=[
            QuotedPromotion(
                promotion=a.promotion,
                title=a.title,
                points=a.points,
                stamps=a.stamps,
                reward=a.reward,
            )
            for a in q.promotions
        ],
        stamps=[
            QuotedStamps(card=s.card, status=s.status, stamps=s.stamps, of=s.of) for s in q.stamps
        ],
    )
