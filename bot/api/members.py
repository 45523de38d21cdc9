"""GET /members/lookup: the member a card names, as a till may know them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from bot.api.context import Actor, Context, Session
from bot.api.problems import CARD, problem, responses
from bot.api.route import ApiRoute
from bot.api.schemas import CardNumber, CardToken, Money, Percent, Points, Timestamp
from db.rules.points import points_money
from db.rules.program import Program
from db.usecases.partner_api import MemberCard, api_lookup

router = APIRouter(prefix="/members", tags=["members"], route_class=ApiRoute)


class VoucherView(BaseModel):
    reward: str = Field(description="The reward's slug in the program")
    title: str
    expires_at: Timestamp


class StampCardView(BaseModel):
    card: str = Field(description="The stamp card's slug in the program")
    name: str
    stamps: int = Field(ge=0, description="Stamps on the card now")
    of: int = Field(ge=1, description="Stamps that fill it")


class MemberView(BaseModel):
    """A member as the till sees them: nothing else about them leaves the program."""

    name_initial: str | None = Field(description="The first letter of their first name")
    tier: str
    discount_percent: Percent = Field(
        description="Their discount at every till now (tier and club): the sale's amount "
        "less this percent is what they pay"
    )
    points: Points = Field(ge=0, description="Points they can spend now (held ones left out)")
    points_value: Money = Field(description="What those points are worth in money")
    vouchers: list[VoucherView] = Field(description="Their open vouchers honoured here")
    stamp_cards: list[StampCardView] = Field(description="This partner's stamp cards")


def member_view(program: Program, card: MemberCard) -> MemberView:
    member = card.member
    return MemberView(
        name_initial=member.first_name[:1].upper() or None,
        tier=str(program.tier(member.tier).name),
        discount_percent=card.discount_percent,
        points=member.available,
        points_value=points_money(member.available, program.program.point_value),
        vouchers=[
            VoucherView(
                reward=v.reward, title=_reward_title(program, v.reward), expires_at=v.expires_at
            )
            for v in card.vouchers
        ],
        stamp_cards=[
            StampCardView(card=c.slug, name=str(c.name), stamps=stamps, of=c.stamps)
            for c, stamps in card.stamp_cards
        ],
    )


def _reward_title(program: Program, slug: str) -> str:
    reward = program.reward(slug)
    return str(reward.title) if reward is not None else slug


@router.get(
    "/lookup",
    response_model=MemberView,
    summary="Look a member up by their card",
    description="Give `card_token` (what the member's QR card holds, or its whole link) or "
    "`card_number`, one of them. Needs the `sales` or `read` scope. Card numbers that name "
    "nobody count against the key: after 20 within 10 minutes the key is refused further "
    "numbers for a while (`too_many_lookups`), as a cashier is.",
    responses=responses(404, codes=(*CARD, "too_many_lookups", "unknown_partner")),
)
async def lookup(
    ctx: Context,
    session: Session,
    actor: Actor,
    card_token: Annotated[CardToken | None, Query()] = None,
    card_number: Annotated[CardNumber | None, Query()] = None,
) -> object:
    if (card_token is None) == (card_number is None):
        return problem("invalid_request", "Give card_token or card_number: one of them.")
    now: datetime = ctx.clock()
    card = await api_lookup(
        session,
        ctx.program,
        actor,
        secret=ctx.secret,
        now=now,
        card_token=card_token,
        card_number=card_number,
    )
    return member_view(ctx.program, card)
