"""GET /settlement: the partner's own settlement position for a period."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from bot.api.context import Actor, Context, Session
from bot.api.problems import problem, responses
from bot.api.route import ApiRoute
from bot.api.schemas import Money, Points
from db.usecases.partner_api import api_settlement

router = APIRouter(prefix="/settlement", tags=["settlement"], route_class=ApiRoute)
MAX_DAYS = 366


class SettlementView(BaseModel):
    """(points redeemed here − points issued here) × point value: positive, the coalition
    pays the partner; negative, the partner pays the coalition. Refunds count in the
    period they are posted, so a period's figures never change later."""

    partner: str = Field(description="The partner's slug")
    from_: date = Field(alias="from", description="The first day (program's time zone)")
    to: date = Field(description="The day after the last (exclusive)")
    currency: str
    point_value: str = Field(description="Money one point is worth, a decimal string")
    points_issued: Points
    points_redeemed: Points
    net_points: Points = Field(description="points_redeemed − points_issued")
    net_money: Money = Field(description="net_points × point_value")
    amount: Money = Field(
        description="net_money − club_money, the settlement CSV's Amount: positive, the "
        "coalition pays you; negative, you pay the coalition"
    )
    vouchers_honoured: Points = Field(description="Of points_redeemed: vouchers claimed here")
    donations: Points = Field(description="Of points_redeemed: members' gifts (a charity)")
    vouchers_funded: Points = Field(description="Of points_issued: vouchers you funded")
    stamp_rewards: Points = Field(description="Of points_issued: your stamp cards' rewards")
    promotions_funded: Points = Field(description="Of points_issued: your promotions' share")
    club_money: Money = Field(
        description="Money your till took for club months, less refunds: owed to the coalition"
    )
    outstanding_points: Points = Field(
        description="Your share of the points members held at the end of the period"
    )
    liability: Money = Field(description="outstanding_points × point_value")

    model_config = {"populate_by_name": True}


@router.get(
    "",
    response_model=SettlementView,
    response_model_by_alias=True,
    summary="The partner's settlement for a period",
    description="Whole days of the program's time zone, `from` included, `to` excluded "
    f"(at most {MAX_DAYS} days), as the owners' settlement CSV counts them. Needs the "
    "`read` scope.",
    responses=responses(404, codes=("unknown_partner",)),
)
async def get_settlement(
    ctx: Context,
    session: Session,
    actor: Actor,
    first: Annotated[date, Query(alias="from", description="YYYY-MM-DD, included")],
    end: Annotated[date, Query(alias="to", description="YYYY-MM-DD, excluded")],
) -> object:
    if not first < end <= first + timedelta(days=MAX_DAYS):
        message = f"`to` must be after `from`, at most {MAX_DAYS} days later"
        return problem(
            "invalid_request",
            message + ".",
            extra={"errors": [{"location": "query.to", "message": message}]},
        )
    found = await api_settlement(session, ctx.program, actor, first=first, end=end)
    p, pv = found.position, ctx.program.program.point_value
    return SettlementView(
        partner=p.slug,
        from_=first,
        to=end,
        currency=ctx.program.program.currency,
        point_value=str(pv),
        points_issued=p.points_issued,
        points_redeemed=p.points_redeemed,
        net_points=p.net_points,
        net_money=found.report.money(p.net_points),
        amount=found.report.money(p.net_points) - p.club_money,
        vouchers_honoured=p.vouchers_honoured,
        donations=p.donations,
        vouchers_funded=p.vouchers_funded,
        stamp_rewards=p.stamp_rewards,
        promotions_funded=p.promotions_funded,
        club_money=p.club_money,
        outstanding_points=p.outstanding,
        liability=found.report.money(p.outstanding),
    )
