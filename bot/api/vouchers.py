"""POST /vouchers/{code}/claim: honour a member's voucher at the key's partner (the code
the member shows, as a cashier types it)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, Field

from bot.api.context import Actor, Context, Session
from bot.api.problems import POST_CODES, responses
from bot.api.route import ApiRoute
from bot.api.schemas import Points, Timestamp
from db.ledger.models import VoucherSource
from db.rules.program import Program
from db.rules.vouchers import display_code
from db.usecases.api.vouchers import claim

router = APIRouter(prefix="/vouchers", tags=["vouchers"], route_class=ApiRoute)


class ClaimView(BaseModel):
    code: str = Field(description="The voucher's code, as the member's voucher shows it")
    status: str = Field(description="claimed")
    reward: str = Field(description="The reward's slug in the program")
    title: str = Field(description="The reward's title: what to hand over")
    name_initial: str = Field(description="The first letter of the member's first name")
    points: Points = Field(
        description="Points the member paid for it in the catalogue; 0 for a voucher a stamp "
        "card or a promotion gave (see `source`)"
    )
    source: Literal["catalogue", "stamp_card", "promotion"] = Field(
        description="Where the voucher came from: bought with points in the catalogue, a "
        "full stamp card, or a promotion"
    )
    expires_at: Timestamp
    claimed_at: Timestamp | None


def _title(program: Program, slug: str) -> str:
    reward = program.reward(slug)
    return str(reward.title) if reward is not None else slug


@router.post(
    "/{code:path}/claim",
    status_code=201,
    response_model=ClaimView,
    summary="Claim a member's voucher",
    description="Needs the `sales` scope and an `Idempotency-Key`. The voucher is claimed "
    "once, at the partner that honours it: hand the reward over when this answers 201. "
    "A voucher claimed already is 409 voucher_claimed (a retry with the same "
    "Idempotency-Key replays the first answer instead); another partner's is 403 "
    "voucher_wrong_partner; 409 voucher_expired, voucher_voided; 404 unknown_voucher.",
    responses=responses(
        404,
        409,
        codes=(
            *POST_CODES,
            "unknown_voucher",
            "invalid_token",
            "voucher_wrong_partner",
            "own_voucher",
            "voucher_expired",
            "voucher_claimed",
            "voucher_voided",
            "too_many_voucher_codes",
        ),
    ),
)
async def claim_voucher(
    code: Annotated[
        str,
        Path(
            max_length=300,
            description="The code the member shows (ABCD-EFGH), or what the voucher's QR "
            "holds: its token or its whole t.me link (URL-encoded)",
        ),
    ],
    response: Response,
    ctx: Context,
    session: Session,
    actor: Actor,
) -> ClaimView:
    claimed = await claim(
        session, ctx.program, actor, code=code, secret=ctx.secret, now=ctx.clock()
    )
    v = claimed.voucher
    if claimed.replayed:
        response.status_code = 200
    return ClaimView(
        code=display_code(v.code),
        status="claimed",
        reward=v.reward,
        title=_title(ctx.program, v.reward),
        name_initial=v.member_first_name.strip()[:1].upper(),
        points=v.points if v.source == VoucherSource.CATALOGUE else 0,
        source=v.source,  # type: ignore[arg-type]
        expires_at=v.expires_at,
        claimed_at=v.resolved_at,
    )
