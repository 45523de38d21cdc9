"""The till: what cashiers and managers do, each use case one transaction with its audit row.

Points are spent only with the member's confirmation in their own chat: the cashier opens a
redemption request, the member confirms or declines it, and an unanswered request expires."""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Select, exists, func, null, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.ledger.models import (
    Account,
    AccountKind,
    AuditLog,
    Member,
    Partner,
    RedemptionRequest,
    Transaction,
    TxKind,
)
from db.ledger.writer import hold, unit_of_work
from db.queries.api_sales import request_lines
from db.queries.club import in_club
from db.rules import promotions as promotion_rules
from db.rules.discounts import club_part, discount_of
from db.rules.errors import (
    DiscountChanged,
    IdempotencyConflict,
    NotEnoughPoints,
    OwnCard,
    RepeatSale,
    RequestClosed,
    TooManyLookups,
    UnknownMember,
)
from db.rules.gifts import CharityTakesNoSales
from db.rules.points import (
    check_points,
    check_purchase,
    check_redeem,
    max_redeemable,
    points_money,
)
from db.rules.program import Program, ProgramRules
from db.rules.tokens import read_card_token
from db.usecases.discounts import discount_params
from db.usecases.members import MemberInfo, find_by_card, get_member
from db.usecases.outbox import (
    Owed,
    StaffChat,
    owe,
    owed_for_purchase,
    owed_for_reversal,
    promotion_params,
    stamp_params,
)
from db.usecases.purchases import (
    PurchaseResult,
    Refund,
    ReversalResult,
    Sale,
    post_purchase,
    post_reversal,
    purchase_result,
    receipt_replay,
)
from db.usecases.staff import Actor, StaffInfo, audit, refusal_audited

REQUEST_TTL = timedelta(minutes=2)
REPEAT_WINDOW = timedelta(minutes=10)


def _own_card_audited(
    session: AsyncSession, staff: Actor, action: str
) -> AbstractAsyncContextManager[None]:
    """An OwnCard refusal rolls the use case back; the attempt is still written down."""
    return refusal_audited(session, staff, OwnCard, "own_card_refused", action)


def _check_not_own(staff: Actor, member_id: int, member_telegram_id: int | None) -> None:
    if member_telegram_id is not None and member_telegram_id == staff.telegram_id:
        raise OwnCard(member_id=member_id)


def check_sells(program: Program, staff: Actor) -> None:
    """Staff of a charity partner post no sales: a charity takes donated points only."""
    sells(program, staff.partner_slug)


def sells(program: Program, partner: str | None) -> None:
    """Refuse (CharityTakesNoSales) a sale at a charity partner: it takes donations only."""
    rules = program.partner(partner or "")
    if rules is not None and rules.charity:
        raise CharityTakesNoSales(partner=partner)


def business_date(program: Program, now: datetime) -> date:
    """The business day `now` falls on, in the program's time zone: a receipt number is
    unique at a partner within it."""
    return now.astimezone(ZoneInfo(program.program.timezone)).date()


def sale_key(
    program: Program, partner_id: int | None, dialog: str, receipt: str | None, now: datetime
) -> str:
    """A sale's idempotency key: its receipt number at this partner on this business day (in
    the program's time zone; the same number on another day is another receipt), else the
    till dialog it was typed in."""
    if receipt is None:
        return f"till:{dialog}"
    return receipt_key(partner_id, business_date(program, now), receipt)


def receipt_key(partner_id: int | None, day: date, receipt: str) -> str:
    """The key of the sale with this receipt number at the partner on the business day."""
    return f"till:{partner_id}:{day.isoformat()}:receipt:{receipt}"


LOOKUP_FAILURES = 20
LOOKUP_WINDOW = timedelta(minutes=10)


async def _recent_failures(session: AsyncSession, staff: Actor) -> int:
    """The card numbers naming nobody this cashier, or this API key, typed lately."""
    since = datetime.now(UTC) - LOOKUP_WINDOW
    who = (
        AuditLog.api_key_id == staff.api_key_id
        if staff.api_key_id is not None
        else AuditLog.staff_id == staff.id
    )
    return int(
        await session.scalar(
            select(func.count())
            .select_from(AuditLog)
            .where(
                who,
                AuditLog.created_at > since,
                AuditLog.action == "lookup_failed",
            )
        )
        or 0
    )


async def lookup_member(
    session: AsyncSession,
    staff: Actor,
    *,
    secret: bytes,
    token: str | None = None,
    card_number: str | None = None,
    how: str,
) -> MemberInfo:
    """The member a scanned card token or a typed card number names (audited).

    Typed numbers could be guessed (the check digit only catches typos), so a number that
    names nobody is audited too, and a cashier with LOOKUP_FAILURES of those within
    LOOKUP_WINDOW is refused further typed numbers until the window has passed."""
    staff.require("lookup")
    member: MemberInfo | None
    async with _own_card_audited(session, staff, "lookup"), unit_of_work(session):
        if token is not None:
            member = await get_member(session, read_card_token(secret, token).member_id)
        else:
            if await _recent_failures(session, staff) >= LOOKUP_FAILURES:
                raise TooManyLookups(minutes=LOOKUP_WINDOW.seconds // 60)
            found = await find_by_card(session, card_number or "")
            if found is None:
                await audit(
                    session,
                    "lookup_failed",
                    actor=staff.telegram_id,
                    staff=staff,
                    how=how,
                    card_number=card_number,
                )
            member = found
        if member is not None:
            _check_not_own(staff, member.id, member.telegram_id)
            await audit(
                session,
                "lookup",
                actor=staff.telegram_id,
                staff=staff,
                member_id=member.id,
                how=how,
            )
    if member is None:
        raise UnknownMember()  # the failure is on record (committed above); nothing else
    return member


async def till_sale(
    session: AsyncSession,
    program: Program,
    staff: Actor,
    *,
    member_id: int,
    amount: Decimal,
    dialog: str,
    receipt: str | None = None,
    again: bool = False,
    now: datetime | None = None,
    reply: StaffChat | None = None,
    discount_percent: Decimal = Decimal(0),
    shown: Sequence[str] = (),
) -> PurchaseResult:
    """Earn-only sale at the cashier's own partner, keyed by sale_key. The member's news
    and the cashier's receipt (to `reply`) are owed in the same transaction
    (db/usecases/outbox.py). `discount_percent`: the discount the till showed on the amount,
    the tier's and the club's (post_purchase refuses it if the member's tier and club
    membership no longer give it). `shown`: the
    promotions the till's panel showed (slugs): the receipt names those the sale did not
    get, and why (not_applied).

    Refused on the cashier's own card (OwnCard, audited). RepeatSale when this cashier
    posted the same amount to this member within REPEAT_WINDOW under another key, unless
    `again` (the cashier said so); a replay of this very sale is never asked about. An API
    key (`staff` an ApiActor, no staff row) is never asked: its till's document number is
    what tells one sale from the next."""
    staff.require("sale")
    assert staff.partner_slug is not None
    check_sells(program, staff)
    now = now or datetime.now(UTC)
    key = sale_key(program, staff.partner_id, dialog, receipt, now)
    async with _own_card_audited(session, staff, "sale"), unit_of_work(session):
        guard = (
            await session.execute(_sale_guard(staff, member_id, amount, key, now))
        ).one_or_none()
        telegram_id, posted, previous = guard if guard is not None else (None, False, None)
        _check_not_own(staff, member_id, telegram_id)
        if previous is not None and not posted and not again:
            seconds = (now - previous).total_seconds()
            raise RepeatSale(amount=amount, minutes=max(1, math.ceil(seconds / 60)))
        sale = Sale(
            member_id=member_id,
            partner=staff.partner_slug,
            amount=amount,
            key=key,
            receipt=receipt,
            staff_id=staff.id,
            now=now,
            discount_percent=discount_percent,
        )
        try:
            result = await post_purchase(session, program, sale)
        except IdempotencyConflict:
            if receipt is None:
                raise
            # A till's program posted this receipt with itemised lines: the same sale.
            result, _lines = await receipt_replay(session, program, sale)
        if not result.replayed:
            await audit(
                session,
                "sale",
                actor=staff.telegram_id,
                staff=staff,
                member_id=member_id,
                transaction_id=result.transaction_id,
                amount=amount,
                points=result.points_earned,
                receipt=receipt,
                again=again or None,
                **_discount_detail(result),
            )
            await owe(session, *owed_for_purchase(result))
            if reply is not None:
                missed = not_applied(program, shown, result)
                await owe(session, _sale_posted(result, reply, missed))
        return result


def not_applied(
    program: Program, shown: Sequence[str], result: PurchaseResult
) -> list[dict[str, Any]]:
    """The promotions the panel showed that the sale did not get, each with its reason, as
    the receipt keeps them: "ended" (no longer running when it was posted: `ended_at`, the
    local time its hours ended today, when that is why), "below_min" (the money charged,
    `to_pay`, after the tier discount, is below its `min_purchase`), "no_points" (a
    multiplier on a sale that earned too few points to multiply), "used" (a limited one,
    used up: another sale took it meanwhile) or "not_for_member" (the member no longer
    meets its conditions)."""
    got = {a.promotion for a in result.promotions}
    at = promotion_rules.local(result.created_at, program.program.zone)
    charged = result.amount - result.discount
    missed = []
    for slug in dict.fromkeys(shown):
        if slug in got:
            continue
        promo = program.promotion(slug)
        item: dict[str, Any] = {"promotion": slug, "title": str(promo.title) if promo else slug}
        if promo is None or not promotion_rules.running(promo, result.partner, at):
            item["reason"] = "ended"
            hours = promo.when.minutes if promo is not None else None
            if hours is not None and at.hour * 60 + at.minute >= hours[1]:
                end = hours[1] % (24 * 60)
                item["ended_at"] = f"{end // 60:02d}:{end % 60:02d}"
        elif promo.min_purchase and charged < promo.min_purchase:
            item |= {
                "reason": "below_min",
                "to_pay": str(charged),
                "min_purchase": str(promo.min_purchase),
            }
        elif promo.effect.multiplier is not None and not promotion_rules.awards(
            result.points_earned, [promo]
        ):
            item["reason"] = "no_points"  # the sale earned too few points to multiply
        elif promotion_rules.limit(promo):
            item["reason"] = "used"  # used up: another sale took it meanwhile
        else:
            item["reason"] = "not_for_member"  # the member no longer meets its `who`
        missed.append(item)
    return missed


def _discount_detail(result: PurchaseResult) -> dict[str, Any]:
    """The audit row's note of a discount (nothing for a sale without one)."""
    return {"discount": result.discount} if result.discount else {}


def _sale_posted(
    result: PurchaseResult, reply: StaffChat, missed: Sequence[dict[str, Any]] = ()
) -> Owed:
    return Owed(
        "sale_posted",
        {
            **({"not_applied": list(missed)} if missed else {}),
            "about": result.member_id,
            "amount": result.amount,
            "points_earned": result.points_earned,
            "balance": result.balance,
            "transaction": result.transaction_id,
            **stamp_params(result.stamps),
            **discount_params(result),
            **promotion_params(result.promotions),
        },
        chat_id=reply.chat_id,
        language=reply.language,
    )


def _sale_guard(
    staff: Actor, member_id: int, amount: Decimal, key: str, now: datetime
) -> Select[int | None, bool, datetime | None]:
    """The member's Telegram id, whether `key` was posted already, and when this cashier last
    posted this amount to this member within REPEAT_WINDOW (never, for an API key): one
    round trip."""
    tx = Transaction
    previous: Any = null()
    if staff.id is not None:
        previous = (
            select(func.max(tx.created_at))
            .where(
                tx.member_id == member_id,
                tx.created_at > now - REPEAT_WINDOW,
                tx.staff_id == staff.id,
                tx.kind.in_(TxKind.SALES),
                tx.amount == amount,
            )
            .scalar_subquery()
        )
    return select(
        Member.telegram_id,
        exists().where(tx.idempotency_key == key),
        previous,
    ).where(Member.id == member_id)


@dataclass(frozen=True, slots=True)
class RequestInfo:
    id: int
    public_id: str
    member_id: int
    member_telegram_id: int | None
    member_language: str
    member_reachable: bool
    partner_id: int
    staff_id: int | None  # None: a till's request through the partner API (no cashier)
    staff_chat_id: int | None  # None: no chat to tell (the till reads the outcome itself)
    staff_language: str
    staff_message_id: int | None
    member_message_id: int | None
    amount: Decimal
    points: int
    money: Decimal
    receipt: str | None
    status: str
    expires_at: datetime
    transaction_id: int | None
    discount_percent: Decimal = Decimal(0)  # the discount the till showed on `amount`

    @property
    def discount(self) -> Decimal:
        return discount_of(self.amount, self.discount_percent)

    @property
    def to_pay(self) -> Decimal:
        """The money the customer pays: the amount less the discount and the points."""
        return self.amount - self.discount - self.money


async def _request(session: AsyncSession, public_id: str, *, lock: bool = False) -> RequestInfo:
    stmt = (
        select(RedemptionRequest, Member.telegram_id, Member.language, Member.reachable)
        .join(Member, Member.id == RedemptionRequest.member_id)
        .where(RedemptionRequest.public_id == public_id)
    )
    if lock:
        stmt = stmt.with_for_update(of=RedemptionRequest)
    row = (await session.execute(stmt)).one_or_none()
    if row is None:
        raise RequestClosed()
    req, telegram_id, language, reachable = row
    return RequestInfo(
        id=req.id,
        public_id=req.public_id,
        member_id=req.member_id,
        member_telegram_id=telegram_id,
        member_language=language,
        member_reachable=reachable,
        partner_id=req.partner_id,
        staff_id=req.staff_id,
        staff_chat_id=req.staff_chat_id,
        staff_language=req.staff_language,
        staff_message_id=req.staff_message_id,
        member_message_id=req.member_message_id,
        amount=req.amount,
        points=req.points,
        money=Decimal(0),
        receipt=req.receipt,
        status=req.status,
        expires_at=req.expires_at,
        transaction_id=req.transaction_id,
        discount_percent=req.discount_percent,
    )


async def request_by_id(
    session: AsyncSession, program: Program, request_id: int, *, lock: bool = False
) -> RequestInfo:
    """The request `request_id` (`lock`: its row locked for the caller's transaction)."""
    public_id = await session.scalar(
        select(RedemptionRequest.public_id).where(RedemptionRequest.id == request_id)
    )
    if public_id is None:
        raise RequestClosed()
    return _with_money(await _request(session, public_id, lock=lock), program)


def _with_money(info: RequestInfo, program: Program) -> RequestInfo:
    return replace(info, money=points_money(info.points, program.program.point_value))


def allowance(available: int, amount: Decimal, rules: ProgramRules) -> int:
    """The most points a member with `available` points (their balance less what open
    requests hold) may pay on a purchase of `amount`."""
    return min(available, max_redeemable(amount, rules.max_redeem_percent, rules.point_value))


async def redemption_allowance(
    session: AsyncSession, program: Program, member_id: int, amount: Decimal
) -> int:
    """What the till offers as "Max": the allowance `request_redemption` takes when it is
    asked for as many points as allowed (a read; the request checks again). `amount` is
    what is to pay: after the tier discount, if any."""
    member = await get_member(session, member_id)
    return allowance(member.available, amount, program.program)


def redemption_key(public_id: str) -> str:
    """The key of a request's hold and of the sale its confirmation posts (the database
    voids the hold under this key when the request closes otherwise: migration 0009)."""
    return f"redemption:{public_id}"


async def request_redemption(
    session: AsyncSession,
    program: Program,
    staff: StaffInfo,
    *,
    member_id: int,
    amount: Decimal,
    points: int | None,
    dialog: str,
    staff_chat_id: int,
    staff_language: str = "en",
    receipt: str | None = None,
    now: datetime | None = None,
    discount_percent: Decimal = Decimal(0),
) -> RequestInfo:
    """Ask the member to pay `points` (None: as many as allowed) of a purchase of `amount`,
    less the discount the till showed (`discount_percent`, the tier's and the club's):
    points pay a share of what is left to pay (open_request). The cashier is told the
    outcome in `staff_chat_id`.

    `dialog` is the till dialog's random id and becomes the request's public id: a second
    request from the same dialog (a double tap) returns the first instead of a new one.
    Refused on the cashier's own card (OwnCard)."""
    staff.require("redeem")
    check_sells(program, staff)
    assert staff.partner_id is not None and staff.partner_slug is not None
    now = now or datetime.now(UTC)
    async with _own_card_audited(session, staff, "redeem"), unit_of_work(session):
        member = await get_member(session, member_id)
        _check_not_own(staff, member.id, member.telegram_id)
        info, created = await open_request(
            session,
            program,
            member,
            partner_id=staff.partner_id,
            partner_slug=staff.partner_slug,
            staff_id=staff.id,
            staff_chat_id=staff_chat_id,
            staff_language=staff_language,
            amount=amount,
            points=points,
            public_id=dialog,
            receipt=receipt,
            now=now,
            discount_percent=discount_percent,
        )
        if created:
            await audit(
                session,
                "redeem_request" if info.status == "pending" else "redeem_unreachable",
                actor=staff.telegram_id,
                staff=staff,
                member_id=member.id,
                amount=info.amount,
                points=info.points,
                receipt=receipt,
            )
        return info


async def open_request(
    session: AsyncSession,
    program: Program,
    member: MemberInfo,
    *,
    partner_id: int,
    partner_slug: str,
    staff_id: int | None,
    staff_chat_id: int | None,
    staff_language: str = "en",
    amount: Decimal,
    points: int | None,
    public_id: str,
    receipt: str | None,
    now: datetime,
    discount_percent: Decimal = Decimal(0),
) -> tuple[RequestInfo, bool]:
    """A redemption request at `partner`, inside the caller's transaction (the caller
    checked who asks, and audits it): the member is asked to pay `points` (None: as many as
    allowed) of a purchase of `amount` less the discount the till showed
    (`discount_percent`): DiscountChanged if their tier and club membership no longer give
    it. The request holds the points until it closes, and the member is owed the message
    with the Confirm and Decline buttons. `staff_id` and `staff_chat_id` are the cashier's
    who asks and where they are told the outcome; None for a till's software through the
    partner API, which reads the outcome itself (request_state).

    A member known not to reach the bot (they blocked it) cannot confirm: the request is
    written already closed (status "unreachable") so the sale can be finished earn-only at
    once. Returns the request, and whether this call opened it (False: `public_id` was
    opened before, a double tap: that request, as it is)."""
    rules = program.program
    amount = check_purchase(amount, rules.max_purchase)
    club = bool(club_part(program, True)) and await in_club(session, member.id, now)
    member_now = program.discount_percent(member.tier, club)
    if member_now != discount_percent:  # checked again when the confirmation posts the sale
        raise DiscountChanged(discount_percent=str(member_now))
    to_pay = amount - discount_of(amount, discount_percent)
    reachable = await session.scalar(select(Member.reachable).where(Member.id == member.id))
    # Points other requests hold are promised: "Max" offers only what may be spent.
    available = member.available
    if points is None:
        points = allowance(available, to_pay, rules)
        if points <= 0:
            raise NotEnoughPoints(available=max(available, 0))
    check_points(points)
    check_redeem(points, to_pay, rules.max_redeem_percent, rules.point_value)
    # A friendly early answer; the hold below is what the database refuses or grants.
    if points > available:
        raise NotEnoughPoints(balance=available, asked=points, available=max(available, 0))
    created = await session.execute(
        pg_insert(RedemptionRequest)
        .values(
            public_id=public_id,
            member_id=member.id,
            partner_id=partner_id,
            staff_id=staff_id,
            amount=amount,
            points=points,
            discount_percent=discount_percent,
            receipt=receipt,
            status="pending" if reachable else "unreachable",
            decided_at=None if reachable else now,
            staff_chat_id=staff_chat_id,
            staff_language=staff_language,
            created_at=now,
            expires_at=now + REQUEST_TTL if reachable else now,
        )
        .on_conflict_do_nothing(index_elements=[RedemptionRequest.public_id])
        .returning(RedemptionRequest.id)
    )
    created_id = created.scalar_one_or_none()
    if created_id is not None and reachable:
        # The points are the member's until they confirm, but nothing else may spend
        # them: the hold is posted by the confirmation, voided however else it closes.
        await hold(
            session, key=redemption_key(public_id), member_id=member.id, points=points, now=now
        )
    info = _with_money(await _request(session, public_id), program)
    if created_id is not None and reachable:
        await owe(
            session,
            Owed(
                "redeem_request",
                {
                    "request": public_id,
                    "partner": partner_slug,
                    "amount": info.amount,
                    "money": info.money,
                    "points": info.points,
                    **_request_discount(program, member.tier, club, info),
                },
                member_id=member.id,
            ),
        )
    return info, created_id is not None


def _request_discount(
    program: Program, tier: str, club: bool, req: RequestInfo
) -> dict[str, object]:
    """The discount the member's confirmation request tells of (none without one): the
    tier's and the club's, as the till showed it."""
    if not req.discount:
        return {}
    return {
        "discount": req.discount,
        "discount_tier": program.tier(tier).name,
        "discount_percent": req.discount_percent,
        **({"discount_club_percent": part} if (part := club_part(program, club)) else {}),
    }


async def note_messages(
    session: AsyncSession,
    public_id: str,
    *,
    staff_message_id: int | None = None,
    member_message_id: int | None = None,
) -> None:
    values = {
        k: v
        for k, v in (
            ("staff_message_id", staff_message_id),
            ("member_message_id", member_message_id),
        )
        if v is not None
    }
    async with unit_of_work(session):
        await session.execute(
            update(RedemptionRequest)
            .where(RedemptionRequest.public_id == public_id)
            .values(**values)
        )


async def confirm_redemption(
    session: AsyncSession,
    program: Program,
    public_id: str,
    telegram_id: int,
    now: datetime | None = None,
) -> tuple[RequestInfo, PurchaseResult]:
    """The member says yes: post the redemption and the earning on the money paid, as one
    transaction. Confirming twice posts once (the request is locked and keyed)."""
    now = now or datetime.now(UTC)
    async with unit_of_work(session):
        req = await _request(session, public_id, lock=True)
        if req.member_telegram_id != telegram_id:
            raise RequestClosed()  # someone else's request: say nothing about it
        if req.status != "pending" or req.expires_at <= now:
            raise RequestClosed(status="expired" if req.status == "pending" else req.status)
        slug = await session.scalar(select(Partner.slug).where(Partner.id == req.partner_id))
        assert slug is not None
        # A till's request through the partner API may carry the sale's itemised lines.
        lines = await request_lines(session, req.id) if req.staff_id is None else ()
        result = await post_purchase(
            session,
            program,
            Sale(
                member_id=req.member_id,
                partner=slug,
                amount=req.amount,
                key=redemption_key(public_id),
                redeem_points=req.points,
                receipt=req.receipt,
                staff_id=req.staff_id,
                now=now,
                discount_percent=req.discount_percent,
                lines=lines,
            ),
            post_hold=redemption_key(public_id),
        )
        await session.execute(
            update(RedemptionRequest)
            .where(RedemptionRequest.id == req.id)
            .values(status="confirmed", decided_at=now, transaction_id=result.transaction_id)
        )
        await audit(
            session,
            "redeem_confirm",
            actor=telegram_id,
            member_id=req.member_id,
            partner_id=req.partner_id,
            transaction_id=result.transaction_id,
            points=req.points,
            amount=req.amount,
        )
        await owe(session, *owed_for_purchase(result))
        await owe(
            session,
            *_to_cashier(
                req,
                "request_confirmed",
                {
                    "amount": result.amount,
                    "paid": result.paid,
                    "points_redeemed": result.points_redeemed,
                    "points_earned": result.points_earned,
                    "balance": result.balance,
                    "request": req.public_id,
                    **stamp_params(result.stamps),
                    **discount_params(result),
                    **promotion_params(result.promotions),
                },
            ),
        )
        return _with_money(req, program), result


def _to_cashier(req: RequestInfo, kind: str, params: dict[str, object]) -> list[Owed]:
    """The cashier's outcome of a request: a new message with it (so the phone rings), which
    alone carries the outcome's button; their "waiting" message is edited to say the request
    is settled (`settled`), not to a second copy of the outcome. Nothing for a till's request
    through the partner API: no chat, the till reads the outcome (request_state)."""
    if req.staff_chat_id is None:
        return []
    owed = [
        Owed(
            kind,
            {**params, "button": True},
            chat_id=req.staff_chat_id,
            language=req.staff_language,
        )
    ]
    if req.staff_message_id is not None:
        owed.insert(
            0,
            Owed(
                kind,
                {**params, "settled": True},
                chat_id=req.staff_chat_id,
                language=req.staff_language,
                edit_message_id=req.staff_message_id,
            ),
        )
    return owed


def closed_params(
    req: RequestInfo, *, status: str | None = None, button: bool = False
) -> dict[str, object]:
    """What the cashier is told of a request that ended without a posting (the notice
    `request_closed`); its button finishes the sale without points."""
    return {
        "status": status or req.status,
        "request": req.public_id,
        # What the button posts: the amount less the discount, if one was shown.
        "amount": str(req.amount - req.discount),
        "button": button,
    }


def _closed(req: RequestInfo, status: str) -> list[Owed]:
    owed = _to_cashier(req, "request_closed", closed_params(req, status=status))
    if status in ("expired", "withdrawn") and req.member_message_id is not None:
        # The member's confirm buttons must not outlive the request.
        owed.append(
            Owed(
                "request_expired_member",
                {"request": req.public_id, "status": status},
                member_id=req.member_id,
                edit_message_id=req.member_message_id,
            )
        )
    return owed


async def close_request(
    session: AsyncSession,
    program: Program,
    public_id: str,
    *,
    status: str,
    telegram_id: int | None,
    now: datetime | None = None,
    why: str | None = None,
) -> RequestInfo:
    """Decline (by the member) or cancel a pending request; RequestClosed if it is not pending."""
    now = now or datetime.now(UTC)
    async with unit_of_work(session):
        req = await _request(session, public_id, lock=True)
        if telegram_id is not None and req.member_telegram_id != telegram_id:
            raise RequestClosed()
        return await close_locked(
            session, program, req, status=status, actor=telegram_id, now=now, why=why
        )


async def close_locked(
    session: AsyncSession,
    program: Program,
    req: RequestInfo,
    *,
    status: str,
    actor: int | None,
    now: datetime,
    why: str | None = None,
    **audited: Any,
) -> RequestInfo:
    """Close the pending request `req`, read under its lock in the caller's transaction, as
    `status` (RequestClosed if it is not pending): audited (`actor`, `audited`), and both
    sides owe the news (closing voids its hold: migration 0009)."""
    if req.status != "pending":
        raise RequestClosed(status=req.status)
    await session.execute(
        update(RedemptionRequest)
        .where(RedemptionRequest.id == req.id)
        .values(status=status, decided_at=now)
    )
    await audit(
        session,
        f"redeem_{status}",
        actor=actor,
        member_id=req.member_id,
        partner_id=req.partner_id,
        points=req.points,
        **audited,
    )
    await owe(session, *_closed(req, why or status))
    return _with_money(replace(req, status=status), program)


async def finish_earn_only(
    session: AsyncSession,
    program: Program,
    staff: StaffInfo,
    public_id: str,
    *,
    again: bool = False,
    now: datetime | None = None,
    reply: StaffChat | None = None,
) -> PurchaseResult:
    """After the member declined, let it expire or could not be asked: post the same sale
    (amount, receipt) without points, keyed like any sale of that dialog, so a second tap
    replays the first. Only the cashier who asked may do it."""
    staff.require("sale")
    req = await _request(session, public_id)  # read in till_sale's transaction, which it ends
    if req.staff_id != staff.id or req.status not in (
        "declined",
        "expired",
        "unreachable",
        "cancelled",
    ):
        raise RequestClosed(status=req.status)
    return await till_sale(
        session,
        program,
        staff,
        member_id=req.member_id,
        amount=req.amount,
        dialog=public_id,
        receipt=req.receipt,
        again=again,
        now=now,
        reply=reply,
        discount_percent=req.discount_percent,
    )


async def request_outcome(
    session: AsyncSession, program: Program, staff: StaffInfo, public_id: str
) -> tuple[RequestInfo, PurchaseResult | None]:
    """What became of the cashier's own request, with the sale it posted if confirmed."""
    staff.require("redeem")
    req = await _request(session, public_id)
    if req.staff_id != staff.id:
        raise RequestClosed()
    result = None
    if req.transaction_id is not None:
        result = await purchase_result(
            session, await session.get_one(Transaction, req.transaction_id), program=program
        )
    return _with_money(req, program), result


async def expire_requests(
    session: AsyncSession, program: Program, now: datetime | None = None
) -> list[RequestInfo]:
    """Close every pending request past its time; the caller tells both sides."""
    now = now or datetime.now(UTC)
    async with unit_of_work(session):
        # Closing a request voids its hold, which locks the member's wallet FOR NO KEY
        # UPDATE: as a single confirmation or decline does, take the requests first, then
        # the wallets in id order (as every posting does) and in that same mode (a weaker
        # lock taken first would be upgraded later, and two holders upgrading deadlock), so
        # this batch cannot deadlock with them. SQLAlchemy spells it key_share=True.
        due = (RedemptionRequest.status == "pending") & (RedemptionRequest.expires_at <= now)
        members = (
            await session.execute(
                select(RedemptionRequest.member_id)
                .where(due)
                .order_by(RedemptionRequest.id)
                .with_for_update()
            )
        ).scalars()
        await session.execute(
            select(Account.id)
            .where(Account.member_id.in_(set(members)), Account.kind == AccountKind.MEMBER)
            .order_by(Account.id)
            .with_for_update(key_share=True)
        )
        ids = (
            (
                await session.execute(
                    update(RedemptionRequest)
                    .where(
                        RedemptionRequest.status == "pending", RedemptionRequest.expires_at <= now
                    )
                    .values(status="expired", decided_at=now)
                    .returning(RedemptionRequest.public_id)
                )
            )
            .scalars()
            .all()
        )
        closed = [_with_money(await _request(session, public_id), program) for public_id in ids]
        for req in closed:
            await owe(session, *_closed(req, "expired"))
        return closed


async def request_delivered(session: AsyncSession, public_id: str, message_id: int) -> None:
    """The member's confirmation request reached their chat: remember the message, so it
    can be closed when the request expires (in the caller's transaction)."""
    await session.execute(
        update(RedemptionRequest)
        .where(RedemptionRequest.public_id == public_id)
        .values(member_message_id=message_id)
    )


async def request_undeliverable(session: AsyncSession, public_id: str) -> None:
    """The member cannot be asked (they blocked the bot or left): close the request at
    once and tell the cashier, instead of letting them wait for it to expire."""
    closed = (
        await session.execute(
            update(RedemptionRequest)
            .where(RedemptionRequest.public_id == public_id, RedemptionRequest.status == "pending")
            .values(status="unreachable", decided_at=datetime.now(UTC))
            .returning(RedemptionRequest.id)
        )
    ).scalar_one_or_none()
    if closed is not None:
        req = await _request(session, public_id)
        await audit(
            session,
            "redeem_unreachable",
            actor=None,
            member_id=req.member_id,
            partner_id=req.partner_id,
            points=req.points,
        )
        await owe(session, *_closed(req, "unreachable"))


def refund_key(chat_id: int, message_id: int) -> str:
    """A refund's idempotency key: the manager's message identifies the request, so Telegram
    re-delivering it posts nothing new."""
    return f"refund:{chat_id}:{message_id}"


async def till_refund(
    session: AsyncSession,
    program: Program,
    staff: Actor,
    *,
    transaction_id: int,
    amount: Decimal | None,
    reason: str,
    key: str,
) -> ReversalResult:
    """A manager (or a partner's API key) refunds a sale of their own partner (the ledger
    refuses another's)."""
    staff.require("refund")
    assert staff.partner_slug is not None
    async with unit_of_work(session):
        result = await post_reversal(
            session,
            program,
            Refund(
                transaction_id=transaction_id,
                key=key,
                reason=reason,
                amount=amount,
                partner=staff.partner_slug,
                staff_id=staff.id,
            ),
        )
        if not result.replayed:
            await audit(
                session,
                "refund",
                actor=staff.telegram_id,
                staff=staff,
                member_id=result.member_id,
                transaction_id=result.transaction_id,
                refunds=transaction_id,
                amount=result.amount,
                reason=reason,
            )
            await owe(session, *owed_for_reversal(result))
        return result
