"""Sales a till's software posts through the partner API, by document number.

A document number is unique at a partner within a business day (in the program's time zone):
the same document sent again with the same content is the same sale (a replay: nothing is
posted again, its state is returned); with other content it is refused (ReceiptTaken). A
member's sale is posted under the key a cashier's sale with that receipt number would have
(db/usecases/till.py sale_key), so the two cannot post one receipt twice either.

- Without points it is posted at once (post_purchase), with the member's news owed.
- With points it is a redemption request (db/usecases/till.py open_request) that the member
  confirms or declines in Telegram, as at a cashier's till; nothing is owed to a staff chat:
  the till polls state.py's `sale_state` (pending, then posted with its result, or
  declined, expired, unreachable or cancelled). A request that closed without a posting
  can be finished without points, or withdrawn while pending (requests.py).
- Without a member card (`member_id` None) it is recorded in `api_sales` only, for the
  partner's figures (members' and non-members' average checks): no points, no ledger
  posting.

Its itemised lines, if any, are kept with it (`api_sale_lines`) and the promotions with
categories decide on them (db/rules/promotions.py), also when the member confirms later."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Literal

from sqlalchemy import delete, insert, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from db.ledger.models import ApiSaleLine
from db.ledger.writer import constraint_name, fingerprint, unit_of_work
from db.queries.api_sales import ApiSaleRow, find_sale, sale_lines
from db.rules.discounts import ZERO, check_shown, discount_of
from db.rules.errors import (
    DiscountChanged,
    IdempotencyConflict,
    InvalidPoints,
    ReceiptTaken,
    UnknownMember,
)
from db.rules.lines import Line, check_lines, line_digest
from db.rules.points import check_purchase, check_receipt
from db.rules.program import Program
from db.usecases import discounts
from db.usecases.api.actor import ApiActor
from db.usecases.api.state import (
    PENDING,
    POSTED,
    RECORDED,
    SaleState,
    refunded,
    requested,
    state_of,
)
from db.usecases.members import get_member
from db.usecases.outbox import owe, owed_for_purchase
from db.usecases.purchases import PurchaseResult, Sale, post_purchase, receipt_replay
from db.usecases.till import business_date, open_request, receipt_key, sells

MAX: Literal["max"] = "max"  # points: as many as the member may pay


async def post_sale(
    session: AsyncSession,
    program: Program,
    actor: ApiActor,
    *,
    document: str,
    member_id: int | None,
    amount: Decimal,
    lines: Sequence[Line] = (),
    points: int | Literal["max"] = 0,
    discount_percent: Decimal | None = None,
    now: datetime | None = None,
) -> SaleState:
    """Post the till's sale `document` at the key's partner (see the module's doc): for the
    member `member_id` (None: a sale without a member card, recorded only), of `amount`
    with its itemised `lines` (none, or adding up to it), paying `points` of it (0: none;
    MAX: as many as allowed; a request the member confirms). `discount_percent`: the
    discount the till charged (a quote's, the tier's and the club's; DiscountChanged if the
    member's no longer gives it); None: the member's now.

    Returns its state: posted (without points), pending (or unreachable: the member cannot
    be asked, finish it without points), recorded (without a member); a replay's as it is
    now. Refused (nothing written): InvalidReceipt, InvalidAmount, AmountTooLarge,
    InvalidLines, LinesDontAddUp, InvalidPoints (points without a member), UnknownMember,
    CharityTakesNoSales, DiscountChanged, NotEnoughPoints, RedeemLimitExceeded, and
    ReceiptTaken for a document number taken today by another sale."""
    actor.require("sale")
    if points:
        actor.require("redeem")
    sells(program, actor.partner_slug)
    document = check_receipt(document)
    amount = check_purchase(amount, program.program.max_purchase)
    lines = check_lines(lines, amount)
    if member_id is None and points:
        raise InvalidPoints(points=points)  # points are a member's
    if discount_percent is not None:
        discount_percent = check_shown(discount_percent)
    now = now or datetime.now(UTC)
    day = business_date(program, now)
    # The discount is checked apart (_replay): "0", "0.00" and none at 0 % are one sale.
    digest = fingerprint("api_sale", member_id, str(amount), points, line_digest(lines))
    # As a sale posted before this release was keyed: the same again is still a replay.
    legacy = fingerprint(
        "api_sale",
        member_id,
        str(amount),
        points,
        None if discount_percent is None else str(discount_percent),
        line_digest(lines),
    )
    async with unit_of_work(session):
        sale_id = await _open(session, actor, day, document, member_id, amount, digest, now)
        if sale_id is None:
            return await _replay(
                session,
                program,
                actor,
                day,
                document,
                (digest, legacy),
                now,
                member_id=member_id,
                amount=amount,
                points=points,
                lines=lines,
                discount_percent=discount_percent,
            )
        await _keep_lines(session, sale_id, lines)
        if member_id is None:
            await actor.audit(session, "api_sale_without_member", amount=amount, receipt=document)
            return SaleState(document, day, None, amount, RECORDED, now, lines)
        member_now = (await discounts.quote(session, program, member_id, amount, now)).percent
        if discount_percent is None:
            discount_percent = member_now
        elif discount_percent != member_now:  # the ledger would refuse it: say theirs
            raise DiscountChanged(discount_percent=str(member_now))
        if not points:
            result = await post_member_sale(
                session,
                program,
                actor,
                sale_id,
                member_id,
                amount,
                document,
                day,
                now,
                discount_percent,
                lines,
            )
            back = ZERO if not result.replayed else await refunded(session, result)
            created = now
            if result.replayed:  # a cashier's receipt: the lines the ledger's sale has
                lines = await sale_lines(session, sale_id)
                created = min(now, result.created_at)  # first posted by the cashier
            return SaleState(
                document,
                day,
                member_id,
                amount,
                POSTED,
                created,
                lines,
                result=result,
                refunded=back,
                replayed=result.replayed,  # a cashier posted it: 200, the sale as it is
            )
        member = await get_member(session, member_id)
        info, _created = await open_request(
            session,
            program,
            member,
            partner_id=actor.partner_id,
            partner_slug=actor.partner_slug,
            staff_id=None,
            staff_chat_id=None,
            amount=amount,
            points=None if points == MAX else int(points),
            public_id=secrets.token_urlsafe(12),
            receipt=document,
            now=now,
            discount_percent=discount_percent,
        )
        await session.execute(_LINK, {"id": sale_id, "tx": None, "request": info.id})
        await actor.audit(
            session,
            "redeem_request" if info.status == PENDING else "redeem_unreachable",
            member_id=member.id,
            amount=amount,
            points=info.points,
            receipt=document,
        )
        return requested(document, day, amount, now, lines, info)


# The sale's row, unless its document is taken (statements kept as text: built once, they
# cost a sale less Python than their SQLAlchemy constructs would).
_OPEN = text(
    """
    INSERT INTO api_sales (partner_id, business_day, document, member_id, amount, fingerprint,
                           api_key_id, created_at)
    VALUES (:partner, :day, :document, :member, :amount, :digest, :key, :now)
    ON CONFLICT (partner_id, business_day, document) DO NOTHING
    RETURNING id
    """
)
# What the sale became in the ledger: its posting, or its redemption request.
_LINK = text(
    """
    UPDATE api_sales SET transaction_id = coalesce(:tx, transaction_id),
                         request_id = coalesce(:request, request_id)
    WHERE id = :id
    """
)

# A sale a cashier typed in the bot before the till sent it: created when the cashier did.
_FIRST_POSTED = text("UPDATE api_sales SET created_at = least(created_at, :at) WHERE id = :id")


async def _open(
    session: AsyncSession,
    actor: ApiActor,
    day: date,
    document: str,
    member_id: int | None,
    amount: Decimal,
    digest: str,
    now: datetime,
) -> int | None:
    """The sale's row (its id), or None: the document was taken (a concurrent post of it
    waits here until the first commits, then finds it). UnknownMember for a member id that
    names nobody (one who deleted their data is refused by the posting)."""
    try:
        return (
            await session.execute(
                _OPEN,
                {
                    "partner": actor.partner_id,
                    "day": day,
                    "document": document,
                    "member": member_id,
                    "amount": amount,
                    "digest": digest,
                    "key": actor.key_id,
                    "now": now,
                },
            )
        ).scalar_one_or_none()
    except DBAPIError as exc:
        if constraint_name(exc) == "fk_api_sales_member_id_members":
            raise UnknownMember() from None
        raise


async def _keep_lines(session: AsyncSession, sale_id: int, lines: Sequence[Line]) -> None:
    if lines:
        await session.execute(
            insert(ApiSaleLine),
            [
                {
                    "sale_id": sale_id,
                    "position": i,
                    "sku": line.sku,
                    "category": line.category,
                    "quantity": line.quantity,
                    "amount": line.amount,
                }
                for i, line in enumerate(lines)
            ],
        )


async def _replay(
    session: AsyncSession,
    program: Program,
    actor: ApiActor,
    day: date,
    document: str,
    digests: tuple[str, str],
    now: datetime,
    *,
    member_id: int | None,
    amount: Decimal,
    points: int | Literal["max"],
    lines: tuple[Line, ...],
    discount_percent: Decimal | None,
) -> SaleState:
    """The document was posted before: the same sale (its state now), or ReceiptTaken
    saying what differs (`differs`: member, amount, points, lines or discount)."""
    row = await find_sale(session, actor.partner_id, day, document)
    assert row is not None  # the insert met it
    if row.fingerprint not in digests:
        raise ReceiptTaken(receipt=document, differs=_differs(row, member_id, amount, lines))
    state = await state_of(session, program, row, now)
    if (
        discount_percent is not None
        and state.result is not None
        and state.result.discount != discount_of(amount, discount_percent)
    ):
        raise ReceiptTaken(receipt=document, differs="discount")
    return replace(state, replayed=True)


def _differs(
    row: ApiSaleRow, member_id: int | None, amount: Decimal, lines: tuple[Line, ...]
) -> str:
    if row.member_id != member_id:
        return "member"
    if row.amount != amount:
        return "amount"
    if row.lines != lines:
        return "lines"
    return "points"


async def post_member_sale(
    session: AsyncSession,
    program: Program,
    actor: ApiActor,
    sale_id: int,
    member_id: int,
    amount: Decimal,
    document: str,
    day: date,
    now: datetime,
    discount_percent: Decimal,
    lines: tuple[Line, ...],
) -> PurchaseResult:
    """The member's sale without points, in the ledger under its receipt's key, linked to
    its row; audited and the member's news owed (not for a replay: a cashier posted this
    very receipt already)."""
    sale = Sale(
        member_id=member_id,
        partner=actor.partner_slug,
        amount=amount,
        key=receipt_key(actor.partner_id, day, document),
        receipt=document,
        now=now,
        discount_percent=discount_percent,
        lines=lines,
    )
    try:
        result = await post_purchase(session, program, sale)
    except IdempotencyConflict:
        # A cashier typed this receipt in the bot (no itemised lines): the same sale if the
        # rest is; its row keeps the ledger's lines (none), not these.
        result, posted = await receipt_replay(session, program, sale)
        if posted != lines:
            await session.execute(delete(ApiSaleLine).where(ApiSaleLine.sale_id == sale_id))
    await session.execute(_LINK, {"id": sale_id, "tx": result.transaction_id, "request": None})
    if result.replayed:
        # The cashier posted it first: the sale was made then, not when the till sent it.
        await session.execute(_FIRST_POSTED, {"id": sale_id, "at": result.created_at})
    else:
        await actor.audit(
            session,
            "sale",
            member_id=member_id,
            transaction_id=result.transaction_id,
            amount=amount,
            points=result.points_earned,
            receipt=document,
        )
        await owe(session, *owed_for_purchase(result))
    return result
