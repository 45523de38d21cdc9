"""The till: what cashiers and managers do, each use case one transaction with its audit row.

Points are spent only with the member's confirmation in their own chat: the cashier opens a
redemption request, the member confirms or declines it, and an unanswered request expires."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.errors import NotEnoughPoints, RequestClosed, TooManyLookups, UnknownMember
from db.ledger import unit_of_work
from db.members import MemberInfo, find_by_card, get_member
from db.models import AuditLog, Member, Partner, RedemptionRequest
from db.program import Program
from db.purchases import PurchaseResult, ReversalResult, post_purchase, post_reversal
from db.rules import check_points, check_purchase, check_redeem, max_redeemable, points_money
from db.staff import StaffInfo, audit
from db.tokens import read_card_token

REQUEST_TTL = timedelta(minutes=2)
LOOKUP_FAILURES = 20
LOOKUP_WINDOW = timedelta(minutes=10)


async def _recent_failures(session: AsyncSession, staff: StaffInfo) -> int:
    since = datetime.now(UTC) - LOOKUP_WINDOW
    return int(
        await session.scalar(
            select(func.count())
            .select_from(AuditLog)
            .where(
                AuditLog.staff_id == staff.id,
                AuditLog.created_at > since,
                AuditLog.action == "lookup_failed",
            )
        )
        or 0
    )


async def lookup_member(
    session: AsyncSession,
    staff: StaffInfo,
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
    staff.require("cashier", "manager")
    async with unit_of_work(session):
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
                await session.commit()  # the failure stays on record; nothing else was done
                raise UnknownMember()
            member = found
        await audit(
            session, "lookup", actor=staff.telegram_id, staff=staff, member_id=member.id, how=how
        )
        return member


async def till_sale(
    session: AsyncSession,
    program: Program,
    staff: StaffInfo,
    *,
    member_id: int,
    amount: Decimal,
    key: str,
    receipt: str | None = None,
) -> PurchaseResult:
    """Earn-only sale at the cashier's own partner."""
    staff.require("cashier", "manager")
    assert staff.partner_slug is not None
    async with unit_of_work(session):
        result = await post_purchase(
            session,
            program,
            member_id=member_id,
            partner=staff.partner_slug,
            amount=amount,
            key=key,
            receipt=receipt,
            staff_id=staff.id,
        )
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
            )
        return result


@dataclass(frozen=True, slots=True)
class RequestInfo:
    id: int
    public_id: str
    member_id: int
    member_telegram_id: int | None
    member_language: str
    partner_id: int
    staff_id: int
    staff_chat_id: int
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

    @property
    def to_pay(self) -> Decimal:
        return self.amount - self.money


async def _request(session: AsyncSession, public_id: str, *, lock: bool = False) -> RequestInfo:
    stmt = (
        select(RedemptionRequest, Member.telegram_id, Member.language)
        .join(Member, Member.id == RedemptionRequest.member_id)
        .where(RedemptionRequest.public_id == public_id)
    )
    if lock:
        stmt = stmt.with_for_update(of=RedemptionRequest)
    row = (await session.execute(stmt)).one_or_none()
    if row is None:
        raise RequestClosed()
    req, telegram_id, language = row
    return RequestInfo(
        id=req.id,
        public_id=req.public_id,
        member_id=req.member_id,
        member_telegram_id=telegram_id,
        member_language=language,
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
    )


def _with_money(info: RequestInfo, program: Program) -> RequestInfo:
    return replace(info, money=points_money(info.points, program.program.point_value))


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
) -> RequestInfo:
    """Ask the member to pay `points` (None: as many as allowed) of a purchase of `amount`.

    `dialog` is the till dialog's random id and becomes the request's public id: a second
    request from the same dialog (a double tap) returns the first instead of a new one."""
    staff.require("cashier", "manager")
    now = now or datetime.now(UTC)
    rules = program.program
    amount = check_purchase(amount, rules.max_purchase)
    async with unit_of_work(session):
        member = await get_member(session, member_id)
        if points is None:
            points = min(
                member.balance, max_redeemable(amount, rules.max_redeem_percent, rules.point_value)
            )
            if points <= 0:
                raise NotEnoughPoints()
        check_points(points)
        check_redeem(points, amount, rules.max_redeem_percent, rules.point_value)
        # A friendly early answer; the ledger refuses an overdraft by itself at confirmation.
        if points > member.balance:
            raise NotEnoughPoints(balance=member.balance)
        public_id = dialog
        created = await session.execute(
            pg_insert(RedemptionRequest)
            .values(
                public_id=public_id,
                member_id=member.id,
                partner_id=staff.partner_id,
                staff_id=staff.id,
                amount=amount,
                points=points,
                receipt=receipt,
                status="pending",
                staff_chat_id=staff_chat_id,
                staff_language=staff_language,
                created_at=now,
                expires_at=now + REQUEST_TTL,
            )
            .on_conflict_do_nothing(index_elements=[RedemptionRequest.public_id])
            .returning(RedemptionRequest.id)
        )
        if created.scalar_one_or_none() is not None:
            await audit(
                session,
                "redeem_request",
                actor=staff.telegram_id,
                staff=staff,
                member_id=member.id,
                amount=amount,
                points=points,
                receipt=receipt,
            )
        return _with_money(await _request(session, public_id), program)


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
    await session.execute(
        update(RedemptionRequest).where(RedemptionRequest.public_id == public_id).values(**values)
    )
    await session.commit()


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
        result = await post_purchase(
            session,
            program,
            member_id=req.member_id,
            partner=slug,
            amount=req.amount,
            key=f"redemption:{public_id}",
            redeem_points=req.points,
            receipt=req.receipt,
            staff_id=req.staff_id,
            now=now,
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
        return _with_money(req, program), result


async def close_request(
    session: AsyncSession,
    program: Program,
    public_id: str,
    *,
    status: str,
    telegram_id: int | None,
    now: datetime | None = None,
) -> RequestInfo:
    """Decline (by the member) or cancel a pending request; RequestClosed if it is not pending."""
    now = now or datetime.now(UTC)
    async with unit_of_work(session):
        req = await _request(session, public_id, lock=True)
        if telegram_id is not None and req.member_telegram_id != telegram_id:
            raise RequestClosed()
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
            actor=telegram_id,
            member_id=req.member_id,
            partner_id=req.partner_id,
            points=req.points,
        )
        return _with_money(req, program)


async def expire_requests(
    session: AsyncSession, program: Program, now: datetime | None = None
) -> list[RequestInfo]:
    """Close every pending request past its time; the caller tells both sides."""
    now = now or datetime.now(UTC)
    async with unit_of_work(session):
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
        return [_with_money(await _request(session, public_id), program) for public_id in ids]


async def till_refund(
    session: AsyncSession,
    program: Program,
    staff: StaffInfo,
    *,
    transaction_id: int,
    amount: Decimal | None,
    reason: str,
    key: str,
) -> ReversalResult:
    """A manager refunds a sale of their own partner (the ledger refuses another's)."""
    staff.require("manager")
    assert staff.partner_slug is not None
    async with unit_of_work(session):
        result = await post_reversal(
            session,
            program,
            transaction_id=transaction_id,
            key=key,
            reason=reason,
            amount=amount,
            partner=staff.partner_slug,
            staff_id=staff.id,
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
        return result
