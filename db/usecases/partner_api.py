"""What the partner API (bot/api) does at a partner's till, through the till's own use
cases (db/usecases/till.py) with the partner's API key as the actor (ApiActor): look a
member up, post an earn-only sale keyed by the till's document number, refund a sale by
its document number, read a sale, read the partner's settlement.

A document number is the till's receipt number: unique per partner and business day (the
program's time zone), as the bot's `#A-1043` is, and in the same key space: a sale posted
through the bot with `#A-1043` and one posted through the API as `A-1043` the same day are
the same sale. Numbers are read in capitals, as the bot reads them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.ledger.models import Transaction, TxKind
from db.queries.settlement import PartnerPosition, Settlement, settlement
from db.queries.stamps import card_progress
from db.queries.vouchers import OpenVoucher, open_vouchers
from db.rules.errors import InvalidReceipt, UnknownTransaction
from db.rules.points import MAX_RECEIPT, check_purchase
from db.rules.program import Program, StampCard
from db.usecases.api.actor import ApiActor
from db.usecases.discounts import quote
from db.usecases.members import MemberInfo
from db.usecases.purchases import PurchaseResult, ReversalResult, purchase_result
from db.usecases.till import lookup_member, till_refund, till_sale

API_DIALOG = "api"  # sale_key's dialog: never used, a document number keys every API sale


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
    now: datetime,
) -> PurchaseResult:
    """An earn-only sale at the key's partner to the member the card names (found as
    api_lookup finds them), keyed by its document number and business day.
    `discount_percent`: the member's discount the till applied (the lookup's); None: the
    member's discount now. A document number already used today for another sale is
    ReceiptTaken; the same sale again is a replay (`replayed`)."""
    actor.require("sale")
    receipt = document_number(document)
    amount = check_purchase(amount, program.program.max_purchase)  # before anything is read
    member = await lookup_member(
        session, actor, secret=secret, token=card_token, card_number=card_number, how="api"
    )
    if discount_percent is None:
        discount_percent = (await quote(session, program, member.id, amount, now)).percent
    return await till_sale(
        session,
        program,
        actor,
        member_id=member.id,
        amount=amount,
        dialog=API_DIALOG,
        receipt=receipt,
        now=now,
        discount_percent=discount_percent,
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
    sale: PurchaseResult
    document: str
    business_day: date
    refunds: list[RefundLine]

    @property
    def refunded(self) -> Decimal:
        return sum((r.amount for r in self.refunds), Decimal("0.00"))


async def api_read_sale(
    session: AsyncSession, program: Program, actor: ApiActor, *, document: str, day: date
) -> SaleRecord:
    """One of the partner's sales by document number and business day, with its refunds."""
    actor.require("sale_read")
    tx = await _sale_of(session, program, actor, document, day)
    result = await purchase_result(session, tx, program=program)
    refunds = (
        await session.execute(
            select(Transaction.amount, Transaction.paid, Transaction.created_at)
            .where(Transaction.reverses_id == tx.id)
            .order_by(Transaction.id)
        )
    ).all()
    lines = [RefundLine(r.amount, r.paid, r.created_at) for r in refunds]
    return SaleRecord(result, tx.receipt or document, day, lines)


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
    charged (None: all that is left). `key`: the request's Idempotency-Key, which keys the
    refund in the ledger too (scoped to the partner)."""
    actor.require("refund")
    tx = await _sale_of(session, program, actor, document, day)
    return await till_refund(
        session,
        program,
        actor,
        transaction_id=tx.id,
        amount=amount,
        reason=reason,
        key=f"api:{actor.partner_id}:refund:{key}",
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
