"""What the partner API (bot/api) does at a partner's till, through the till's own use
cases (db/usecases/till.py) with the partner's API key as the actor (ApiActor): look a
member up, post a sale keyed by the till's document number (db/usecases/api/sales.py, the
one sale path), refund a sale by its document number, read a sale, read the partner's
settlement.

A document number is the till's receipt number: unique per partner and business day (the
program's time zone), as the bot's `#A-1043` is, and in the same key space: a sale posted
through the bot with `#A-1043` and one posted through the API as `A-1043` the same day are
the same sale. Numbers are read in capitals, as the bot reads them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.ledger.models import Transaction, TxKind
from db.queries.settlement import PartnerPosition, Settlement, settlement
from db.queries.stamps import card_progress
from db.queries.vouchers import OpenVoucher, open_vouchers
from db.rules.errors import InvalidReceipt, UnknownSale, UnknownTransaction
from db.rules.lines import Line, check_lines
from db.rules.points import MAX_RECEIPT, check_purchase, check_receipt
from db.rules.program import Program, StampCard
from db.usecases.api.actor import ApiActor
from db.usecases.api.refunds import refund_key, refund_sale
from db.usecases.api.sales import post_sale
from db.usecases.api.state import POSTED, SaleState, sale_state
from db.usecases.discounts import quote
from db.usecases.members import MemberInfo
from db.usecases.purchases import ReversalResult, purchase_result
from db.usecases.till import lookup_member, till_refund


def document_number(text: str) -> str:
    """A till's document number as the ledger keeps it: trimmed, in capitals, 1 to
    MAX_RECEIPT printable characters (InvalidReceipt otherwise)."""
    number = text.strip().upper()
    if not 0 < len(number) <= MAX_RECEIPT or not number.isprintable():
        raise InvalidReceipt(receipt=number[:40], max=MAX_RECEIPT)
    return number


def business_day(program: Program, at: datetime) -> date:
    return at.astimezone(program.program.zone).date()


def _day_bounds(program: Program, day: date) -> tuple[datetime, datetime]:
    zone = program.program.zone
    start = datetime.combine(day, time(), tzinfo=zone)
    return start, datetime.combine(day + timedelta(days=1), time(), tzinfo=zone)


@dataclass(frozen=True, slots=True)
class MemberCard:
    """What a till may know of a member: who they are to it (an initial), their tier and
    discount, the points they can spend, and what they hold at this partner."""

    member: MemberInfo
    discount_percent: Decimal
    vouchers: list[OpenVoucher]  # open, honoured at this partner
    stamp_cards: list[tuple[StampCard, int]]  # this partner's cards, with the stamps on each


async def api_lookup(
    session: AsyncSession,
    program: Program,
    actor: ApiActor,
    *,
    secret: bytes,
    now: datetime,
    card_token: str | None = None,
    card_number: str | None = None,
) -> MemberCard:
    """The member a card token (the QR card's) or a card number names, audited as the
    till's lookup is (lookup_member: a key that types many numbers naming nobody is
    refused for a while, as a cashier is)."""
    member = await lookup_member(
        session, actor, secret=secret, token=card_token, card_number=card_number, how="api"
    )
    percent = (await quote(session, program, member.id, Decimal(1), now)).percent
    vouchers = [
        v for v in await open_vouchers(session, member.id, now) if v.partner == actor.partner_slug
    ]
    cards = program.stamp_cards_at(actor.partner_slug)
    progress = await card_progress(session, member.id) if cards else {}
    stamps = [(card, progress[card.slug].stamps if card.slug in progress else 0) for card in cards]
    return MemberCard(member, percent, vouchers, stamps)


async def api_sale(
    session: AsyncSession,
    program: Program,
    actor: ApiActor,
    *,
    secret: bytes,
    card_token: str | None = None,
    card_number: str | None = None,
    amount: Decimal,
    document: str,
    discount_percent: Decimal | None,
    lines: Sequence[Line] = (),
    points: int | Literal["max"] = 0,
    now: datetime,
) -> SaleState:
    """The till's sale at the key's partner, keyed by its document number and business day,
    to the member the card names (found as api_lookup finds them; no card: a sale without a
    member, recorded for the partner's figures): db/usecases/api/sales.py post_sale, the
    one way an API sale is posted (earning at once, or with `points` a request the member
    confirms in Telegram). `discount_percent`: the member's discount the till applied (the
    lookup's); None: the member's discount now. A document number already used today for
    another sale is ReceiptTaken; the same sale again is a replay (`replayed`). The request
    is checked before the card is looked up, so a refused one reads no member."""
    actor.require("sale")
    check_receipt(document)
    checked = check_purchase(amount, program.program.max_purchase)
    check_lines(lines, checked)
    member_id = None
    if card_token is not None or card_number is not None:
        member = await lookup_member(
            session, actor, secret=secret, token=card_token, card_number=card_number, how="api"
        )
        member_id = member.id
    return await post_sale(
        session,
        program,
        actor,
        document=document,
        member_id=member_id,
        amount=amount,
        lines=lines,
        points=points,
        discount_percent=discount_percent,
        now=now,
    )


async def _sale_of(
    session: AsyncSession, program: Program, actor: ApiActor, document: str, day: date
) -> Transaction:
    """The partner's sale with this document number on this business day (the first, if a
    cashier ever used the number twice); UnknownTransaction if there is none here."""
    start, end = _day_bounds(program, day)
    sale = (
        await session.execute(
            select(Transaction)
            .where(
                Transaction.partner_id == actor.partner_id,
                Transaction.receipt == document_number(document),
                Transaction.kind.in_(TxKind.SALES),
                Transaction.created_at >= start,
                Transaction.created_at < end,
            )
            .order_by(Transaction.id)
            .limit(1)
        )
    ).scalar_one_or_none()
    if sale is None:
        raise UnknownTransaction(document=document)
    return sale


@dataclass(frozen=True, slots=True)
class RefundLine:
    amount: Decimal
    money_refund: Decimal
    created_at: datetime


@dataclass(frozen=True, slots=True)
class SaleRecord:
    """A sale as the till reads it: its state (db/usecases/api/state.py) and its refunds."""

    state: SaleState
    refunds: list[RefundLine]

    @property
    def refunded(self) -> Decimal:
        return sum((r.amount for r in self.refunds), Decimal("0.00"))


async def refund_lines(session: AsyncSession, transaction_id: int) -> list[RefundLine]:
    rows = await session.execute(
        select(Transaction.amount, Transaction.paid, Transaction.created_at)
        .where(Transaction.reverses_id == transaction_id)
        .order_by(Transaction.id)
    )
    return [RefundLine(r.amount, r.paid, r.created_at) for r in rows]


async def api_read_sale(
    session: AsyncSession,
    program: Program,
    actor: ApiActor,
    *,
    document: str,
    day: date,
    now: datetime,
) -> SaleRecord:
    """One of the partner's sales by document number and business day, with its refunds: an
    API sale in any state (sale_state), else a sale the partner's cashiers posted in the bot
    with that receipt number (UnknownTransaction if neither)."""
    actor.require("sale_read")
    try:
        state = await sale_state(session, program, actor, document=document, day=day, now=now)
    except UnknownSale:
        tx = await _sale_of(session, program, actor, document, day)
        result = await purchase_result(session, tx, program=program)
        state = SaleState(
            tx.receipt or document_number(document),
            day,
            result.member_id,
            result.amount,
            POSTED,
            result.created_at,
            result=result,
        )
    posted = state.result
    refunds = await refund_lines(session, posted.transaction_id) if posted is not None else []
    return SaleRecord(state, refunds)


async def api_refund(
    session: AsyncSession,
    program: Program,
    actor: ApiActor,
    *,
    document: str,
    day: date,
    amount: Decimal | None,
    reason: str,
    key: str,
) -> ReversalResult:
    """Refund the partner's sale of that document number and day: `amount` of the money it
    charged (None: all that is left). An API sale is refunded by db/usecases/api/refunds.py
    refund_sale (NotReversible while it is not posted); a sale the partner's cashiers
    posted in the bot with that receipt number, by the till's refund. `key`: the request's
    Idempotency-Key, which keys the refund in the ledger too (scoped to the partner, a long
    one by its digest: refund_key)."""
    actor.require("refund")
    try:
        return await refund_sale(
            session,
            program,
            actor,
            document=document,
            day=day,
            amount=amount,
            reason=reason,
            key=key,
        )
    except UnknownSale:
        pass
    tx = await _sale_of(session, program, actor, document, day)
    return await till_refund(
        session,
        program,
        actor,
        transaction_id=tx.id,
        amount=amount,
        reason=reason,
        key=refund_key(actor, key),
    )


@dataclass(frozen=True, slots=True)
class PartnerSettlement:
    report: Settlement
    position: PartnerPosition


async def api_settlement(
    session: AsyncSession, program: Program, actor: ApiActor, *, first: date, end: date
) -> PartnerSettlement:
    """The partner's own position for the days [first, end) of the program's time zone, as
    /settlement and `python -m bot settlement` count them."""
    actor.require("partner_settlement")
    zone = program.program.zone
    report = await settlement(
        session,
        program,
        start=datetime.combine(first, time(), tzinfo=zone),
        end=datetime.combine(end, time(), tzinfo=zone),
    )
    position = next(p for p in report.partners if p.slug == actor.partner_slug)
    return PartnerSettlement(report, position)
