"""A quote: what a sale would give, asked by a till's software before it posts it (a dry
run: read, nothing written, nothing locked; the sale decides again when it is posted)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from db.rules.discounts import ZERO
from db.rules.errors import InvalidPoints, NotEnoughPoints, UnknownPartner
from db.rules.lines import Line, check_lines
from db.rules.points import check_points, check_purchase, check_redeem, earned_points, points_money
from db.rules.program import Program
from db.usecases import discounts, promotions
from db.usecases.api.actor import ApiActor
from db.usecases.members import get_member
from db.usecases.promotions import Awarded
from db.usecases.stamps import StampNews, would_stamp
from db.usecases.till import allowance, sells


@dataclass(frozen=True, slots=True)
class Quote:
    """What a sale of `amount` would give, as it would be posted now. Without a member
    (`member_id` None) it gives nothing: the figures are the amount's.

    `discount` (the member's tier's and club's, `discount_percent` of the amount, of which
    `discount_club_percent` the club's) leaves `to_pay`; `points` (asked for) would pay
    `points_money` of it, and `paid` is the money left, on which the sale earns
    `points_earned` at the member's tier. `max_points` is the most points they may pay on
    it now (their balance less what open requests hold, `available`, within the program's
    max_redeem_percent of `to_pay`), worth `max_points_money`. `promotions`: what each
    promotion that would apply gives (as a posted sale's result says it; a voucher is named
    by its reward only); `stamps`: what the sale would do on each of the partner's stamp
    cards (a card it fills says FILLED with its reward)."""

    amount: Decimal
    member_id: int | None = None
    tier: str | None = None
    discount: Decimal = ZERO
    discount_percent: Decimal = Decimal(0)
    discount_club_percent: Decimal = Decimal(0)
    points: int = 0
    points_money: Decimal = ZERO
    points_earned: int = 0
    max_points: int = 0
    max_points_money: Decimal = ZERO
    available: int = 0
    promotions: tuple[Awarded, ...] = ()
    stamps: tuple[StampNews, ...] = ()

    @property
    def to_pay(self) -> Decimal:
        return self.amount - self.discount

    @property
    def paid(self) -> Decimal:
        return self.to_pay - self.points_money


async def quote(
    session: AsyncSession,
    program: Program,
    actor: ApiActor,
    *,
    member_id: int | None,
    amount: Decimal,
    lines: Sequence[Line] = (),
    points: int | Literal["max"] = 0,
    now: datetime | None = None,
) -> Quote:
    """What a sale of `amount` (with its itemised `lines`, if any) at the key's partner,
    for the member `member_id` (None: no member card) paying `points` of it ("max": as many
    as they may), would give now.
    Refused as the sale would be: InvalidAmount, AmountTooLarge, InvalidLines,
    LinesDontAddUp, CharityTakesNoSales, UnknownMember, and for points InvalidPoints,
    RedeemLimitExceeded or NotEnoughPoints."""
    actor.require("sale")
    sells(program, actor.partner_slug)
    partner = program.partner(actor.partner_slug)
    if partner is None:
        raise UnknownPartner(partner=actor.partner_slug)
    rules = program.program
    amount = check_purchase(amount, rules.max_purchase)
    lines = check_lines(lines, amount)
    if member_id is None:
        if points:
            raise InvalidPoints(points=points)  # points are a member's, as for the sale
        return Quote(amount)
    now = now or datetime.now(UTC)
    member = await get_member(session, member_id)
    priced = await discounts.quote(session, program, member.id, amount, now)
    to_pay, pv = priced.to_pay, rules.point_value
    most = max(allowance(member.available, to_pay, rules), 0)
    if points == "max":  # as many as the member may pay, as the sale's request asks
        if most <= 0:
            raise NotEnoughPoints(available=max(member.available, 0))
        points = most
    if points:
        check_points(points)
        check_redeem(points, to_pay, rules.max_redeem_percent, pv)
        if points > member.available:
            raise NotEnoughPoints(
                balance=member.available, asked=points, available=max(member.available, 0)
            )
    money = points_money(points, pv)
    earned = earned_points(
        to_pay - money, partner.earn_percent, program.tier(member.tier).multiplier, pv
    )
    given = await promotions.would_give(
        session,
        program,
        member_id=member.id,
        partner=partner.slug,
        charged=to_pay,
        earned=earned,
        now=now,
        lines=lines,
    )
    stamps = await would_stamp(
        session,
        program,
        member_id=member.id,
        partner_id=actor.partner_id,
        partner=partner.slug,
        charged=to_pay,
        now=now,
    )
    return Quote(
        amount,
        member.id,
        tier=str(program.tier(member.tier).name),
        discount=priced.discount,
        discount_percent=priced.percent,
        discount_club_percent=priced.club_percent,
        points=points,
        points_money=money,
        points_earned=earned,
        max_points=most,
        max_points_money=points_money(most, pv),
        available=member.available,
        promotions=tuple(
            Awarded(
                a.slug,
                str(a.promotion.title),
                points=a.points,
                stamps=a.stamps,
                multiplier=a.promotion.effect.multiplier if a.points else None,
                reward=a.reward,
            )
            for a in given
        ),
        stamps=stamps,
    )
