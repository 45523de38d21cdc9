"""Sales at the till: earning, redeeming (with earning on the money actually paid) and
refunds. One request type per operation (Sale, Refund), each with an idempotency key;
record_sale and record_refund commit it as one database transaction, post_purchase and
post_reversal post it inside the caller's."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, NamedTuple

from sqlalchemy import (
    BigInteger,
    DateTime,
    any_,
    bindparam,
    case,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import array
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import ColumnElement

from db.engine import can_send_alone, fetch_row, fetch_row_alone
from db.ledger.models import (
    Account,
    AccountKind,
    Entry,
    Member,
    Partner,
    Transaction,
    TxKind,
)
from db.ledger.writer import (
    Leg,
    Lot,
    constraint_name,
    find_posted,
    fingerprint,
    lock_accounts,
    lock_members,
    open_transaction,
    post,
    refusals,
    system_account,
    unit_of_work,
    wallet_of,
)
from db.queries.api_sales import posted_lines
from db.rules import club as club_rules
from db.rules.discounts import ZERO, charged, club_part, discount_of, discounts_by_tier
from db.rules.errors import (
    AlreadyReversed,
    DiscountChanged,
    NotReversible,
    ReasonRequired,
    ReceiptTaken,
    RefundTooLarge,
    UnknownMember,
    UnknownPartner,
    UnknownTransaction,
    WrongPartner,
)
from db.rules.gifts import CharityTakesNoSales
from db.rules.lines import Line, check_lines, line_digest
from db.rules.points import (
    check_points,
    check_purchase,
    check_redeem,
    earned_points,
    points_money,
    share_kept,
)
from db.rules.program import TIER_WINDOW, Program
from db.usecases import promotions
from db.usecases.members import MemberInfo, expiry_for
from db.usecases.partners import PartnerAccounts, partner_accounts
from db.usecases.promotions import Awarded, PromotionBack
from db.usecases.stamps import (
    StampBack,
    StampNews,
    add_stamps,
    refund_news,
    sale_news,
    take_back_stamps,
)


@dataclass(frozen=True, slots=True)
class ReferralReward:
    transaction_id: int
    inviter_id: int | None
    inviter_points: int
    invitee_points: int


@dataclass(frozen=True, slots=True)
class PurchaseResult:
    transaction_id: int
    kind: str
    member_id: int
    partner: str
    amount: Decimal
    paid: Decimal
    points_earned: int
    points_redeemed: int
    balance: int
    tier: str
    created_at: datetime
    referral: ReferralReward | None = None
    replayed: bool = False
    tier_reached: bool = False  # this sale moved the member up to `tier`
    # The member's tier the sale earned at (before it moved them up); None when the result
    # is rebuilt from the ledger, which does not keep it.
    earned_tier: str | None = None
    stamps: tuple[StampNews, ...] = ()  # what it did on its partner's stamp cards
    # Money taken off `amount` by the member's discount (`paid` is after it and after
    # points), the tier the sale was posted at and the percent that gave it, the tier's and
    # the club's (None and 0 on a replay, which keeps the money); of the percent, the club's.
    discount: Decimal = ZERO
    discount_tier: str | None = None
    discount_percent: Decimal = Decimal(0)
    discount_club_percent: Decimal = Decimal(0)
    # What the program's promotions gave it, in the documented order (db/usecases/promotions.py).
    promotions: tuple[Awarded, ...] = ()

    @property
    def to_pay(self) -> Decimal:
        """What the customer owed before points: the amount less the discount."""
        return self.amount - self.discount


@dataclass(frozen=True, slots=True)
class ReferralClawback:
    """The invitation rewards a full refund of the invitee's qualifying purchase took back."""

    transaction_id: int  # the referral reward's transaction
    invitee_points: int  # taken back from the member (part of points_clawed_back)
    inviter_id: int | None
    inviter_points: int  # taken back from the inviter
    inviter_shortfall: int  # the inviter's reward already spent: the program bears it


@dataclass(frozen=True, slots=True)
class ReversalResult:
    transaction_id: int
    reverses_id: int
    member_id: int
    partner: str
    amount: Decimal
    money_refund: Decimal  # the money part of the refunded amount
    points_returned: int
    points_clawed_back: int
    # Points earned with the refunded money (the sale's points, and the invitee's reward on a
    # full refund) that the member had already spent: their value is kept from the cash.
    shortfall: int
    cash_back: Decimal  # what the till hands back: money_refund less the shortfall's value
    balance: int
    created_at: datetime
    referral: ReferralClawback | None = None
    replayed: bool = False
    stamps: tuple[StampBack, ...] = ()  # the sale's stamps it took back, or could not
    # The refunded sale's discount: never refunded (refunds count from the money it charged).
    sale_discount: Decimal = ZERO
    # What it took back of the sale's promotions (their shortfall is part of `shortfall`).
    promotions: tuple[PromotionBack, ...] = ()


def cash_back(money_refund: Decimal, shortfall: int, point_value: Decimal) -> Decimal:
    """The one figure the till hands back: the refund's money part less the value of the
    points the member spent and cannot return (never below zero; the points' value rounded
    down, in the member's favour, as everywhere)."""
    return max(money_refund - points_money(shortfall, point_value), Decimal("0.00"))


@dataclass(frozen=True, slots=True)
class Sale:
    """A sale at a partner's till: redeem `redeem_points` (optional) and earn on the money
    actually paid. `key` is the idempotency key; `now` (default: the clock) dates it."""

    member_id: int
    partner: str
    amount: Decimal
    key: str
    redeem_points: int = 0
    receipt: str | None = None
    staff_id: int | None = None
    now: datetime | None = None
    # The discount the till showed for this amount (0: none): the tier's and, for a club
    # member, the club's. The member's tier is read inside the posting (ledger_sale), so the
    # discount is not worked out again there from a tier read earlier: the sale carries the
    # discount shown, and the database refuses it (DiscountChanged, nothing written) when
    # the tier it reads, with the club status read just before the posting, gives another.
    # So the discount posted is always the one the cashier charged, and a tier or a
    # membership that changed between the panel and the posting (a sale elsewhere moved the
    # member up, the nightly recalculation moved them down, a month of the club bought or
    # lapsed) is shown again rather than guessed.
    discount_percent: Decimal = Decimal(0)
    # Its itemised lines, when a till's software sent them (db/rules/lines.py): they add up
    # to `amount`, and promotions with categories decide on them.
    lines: tuple[Line, ...] = ()


@dataclass(frozen=True, slots=True)
class Refund:
    """A refund of the sale `transaction_id`: `amount` of its total (None: all that is left).
    `partner`, when given, is the acting staff's partner: nobody refunds another's sale."""

    transaction_id: int
    key: str
    reason: str
    amount: Decimal | None = None
    partner: str | None = None
    staff_id: int | None = None
    now: datetime | None = None


async def record_sale(session: AsyncSession, program: Program, sale: Sale) -> PurchaseResult:
    """A sale as one transaction, committed (see post_purchase). Earned points =
    floor(paid × earn_percent/100 × tier multiplier / point_value).

    A sale that needs nothing but its posting (see _posting_is_all) in a session with no
    transaction under way is sent as its own database transaction: one round trip (two in
    a program with a club, whose status is read first, alone too: _club_alone)."""
    club = None
    alone = can_send_alone(session) and _posting_is_all(program, sale.partner)
    if alone and _club_matters(program, sale.partner):
        sale = replace(sale, now=sale.now or datetime.now(UTC))
        assert sale.now is not None
        club = await _club_alone(session, sale.member_id, sale.now)
        # A club member's sale at a partner with the club's promotions needs them: in a
        # transaction, where the status is read again with the member's other facts.
        alone = not (club and program.promotions_at(sale.partner))
        club = club if alone else None
    async with unit_of_work(session):
        return await post_purchase(session, program, sale, alone=alone, club=club)


def _posting_is_all(program: Program, partner: str) -> bool:
    """Whether ledger_sale's posting may be all a sale at `partner` writes (but for an
    invitation reward or a tier to move up to, which ledger_sale leaves to the use case):
    no stamp cards there, and no promotion but those for club members (the club's
    multiplier applies at every partner), which record_sale leaves out for a member not in
    the club. A step of post_purchase that writes after the posting adds its own condition
    here, else the sale would be committed before it: stamp cards and promotions
    (db/usecases/promotions.py) write in the sale's transaction."""
    return not program.stamp_cards_at(partner) and all(
        p.who.club for p in program.promotions_at(partner)
    )


def _club_matters(program: Program, partner: str) -> bool:
    """Whether a member's club status can change a sale at `partner`: its discount, or the
    club's promotions there."""
    if program.club is None:
        return False
    return bool(program.club.discount_percent) or bool(program.promotions_at(partner))


# The end of the member's club membership: read alone (no transaction), for record_sale.
_CLUB_ENDS = "SELECT ends_at FROM club_memberships WHERE member_id = $1"


async def _club_alone(session: AsyncSession, member_id: int, now: datetime) -> bool:
    """The member's club status at `now`, read before a sale sent alone, as its own
    statement. A month bought in the same instant (committed between this read and the
    posting) cannot make the sale tell anything false: the sale is posted for a member not
    in the club, without the club's discount (the discount shown is checked against this
    status, so the cashier charged exactly that) and without its promotions, and the
    receipt and the member's news report what was posted. The membership counts from the
    next sale on."""
    row = await fetch_row_alone(session, _CLUB_ENDS, member_id)
    return row is not None and club_rules.active(row[0], now)


async def post_purchase(
    session: AsyncSession,
    program: Program,
    sale: Sale,
    *,
    post_hold: str | None = None,
    alone: bool = False,
    club: bool | None = None,
) -> PurchaseResult:
    """The sale inside the caller's transaction (the caller commits). `post_hold`: the key
    of the hold whose points this sale redeems (a confirmed redemption request). `alone`
    (record_sale's): the session has no transaction yet and the sale needs nothing but its
    posting, which is then sent as its own database transaction (a sale that turns out to
    need more writes nothing so and is sent again, in the session's transaction). `club`
    (record_sale's): the member's club status, read before; None, it is read here, with
    the member's other facts under their lock (promotions.prepare), before the posting.
    The sale gets the club's discount and promotions by that status: what is posted is
    what the receipt says, and a discount shown for another status is refused."""
    member_id, partner, amount, key = sale.member_id, sale.partner, sale.amount, sale.key
    redeem_points, receipt, staff_id = sale.redeem_points, sale.receipt, sale.staff_id
    now, discount_percent = sale.now, sale.discount_percent
    rules = program.partner(partner)
    if rules is None:
        raise UnknownPartner(partner=partner)
    if rules.charity:  # a charity takes donations (db/usecases/donations.py), never sales
        raise CharityTakesNoSales(partner=partner)
    amount = check_purchase(amount, program.program.max_purchase)
    lines = check_lines(sale.lines, amount)
    pv = program.program.point_value
    discount = discount_of(amount, discount_percent)
    to_pay = amount - discount
    if redeem_points:
        check_points(redeem_points)
        check_redeem(redeem_points, to_pay, program.program.max_redeem_percent, pv)
    digest = sale_digest(sale, amount, discount, lines)
    now = now or datetime.now(UTC)
    paid = to_pay - points_money(redeem_points, pv)
    kind = TxKind.REDEEM if redeem_points else TxKind.EARN
    expires_at = expiry_for(program, now)
    # What the sale earns at each tier: the database picks the member's (ledger_sale).
    by_tier = [earned_points(paid, rules.earn_percent, t.multiplier, pv) for t in program.tiers]
    # The member's facts for the partner's promotions, and the accounts their funders pay
    # from locked before the sale's own (no query at a partner without promotions).
    prepared = await promotions.prepare(
        session,
        program,
        member_id=member_id,
        partner=partner,
        charged=to_pay,
        now=now,
        club=club,
        lines=lines,
    )
    if club is None:
        club = (
            prepared.shopper.club
            if prepared is not None
            else await promotions.club_at_sale(session, program, member_id=member_id, now=now)
        )
    params = {
        "member": member_id,
        "slug": partner,
        "kind": kind,
        "key": key,
        "digest": digest,
        "staff": staff_id,
        "amount": amount,
        "paid": paid,
        "receipt": receipt,
        "now": now,
        "redeem": redeem_points,
        "tiers": [t.name for t in program.tiers],
        "earned": by_tier,
        "expires": expires_at,
        "referral_min": program.referral.qualifying_purchase,
        "post_hold": post_hold,
        "since": now - TIER_WINDOW,
        "discount": discount,
        "discounts": discounts_by_tier(program, amount, club),
        "next_min": _next_min_spend(program),
        "alone": alone,
    }
    row = await _sale(session, params, post_hold)
    if row.deferred:  # nothing written: the sale needs this transaction (ledger_sale, 0020)
        row = await _sale(session, {**params, "alone": False}, post_hold)
    member, accounts, tx_id = _opened(row, partner)
    if tx_id is None:
        posted = await find_posted(session, key, digest)
        return await purchase_result(session, posted, True, program=program)
    if row.posted:
        tier = await _tier_after_sale(session, program, member, row.spend)
        result = PurchaseResult(
            transaction_id=tx_id,
            kind=kind,
            member_id=member.id,
            partner=partner,
            amount=amount,
            paid=paid,
            points_earned=row.earned,
            points_redeemed=redeem_points,
            balance=row.balance,
            tier=tier,
            created_at=now,
            tier_reached=tier != member.tier,
            earned_tier=member.tier,
            **_discount_of_sale(program, member.tier, discount, club),
        )
        result = await _stamped(session, program, result, member, accounts, key)
        return await promotions.apply(session, program, prepared, result, member, accounts, key)
    earned = earned_points(paid, rules.earn_percent, program.tier(member.tier).multiplier, pv)
    legs = [
        Leg(member.wallet_id, -redeem_points),
        Leg(accounts.redeemed_id, redeem_points),
        Leg(accounts.issued_id, -earned),
        Leg(member.wallet_id, earned),
    ]
    referral = await _open_referral(session, program, member, tx_id, amount, now, legs)
    # The redeemed points come from the lots the member had before this sale, never from the
    # points it earns; the referral's lots come after the purchase's own, so that one is older.
    lots = [
        Lot(member.id, -redeem_points),
        Lot(member.id, earned, earned_at=now, expires_at=expires_at),
    ]
    if referral is not None:
        for who, points in (
            (member.id, referral.invitee_points),
            (referral.inviter_id, referral.inviter_points),
        ):
            if who is not None:
                lots.append(
                    Lot(who, points, referral.transaction_id, earned_at=now, expires_at=expires_at)
                )
    tier_name, balance = await _finish_purchase(
        session, program, member, tx_id, legs, lots, now, post_hold
    )
    result = PurchaseResult(
        transaction_id=tx_id,
        kind=TxKind.REDEEM if redeem_points else TxKind.EARN,
        member_id=member.id,
        partner=partner,
        amount=amount,
        paid=paid,
        points_earned=earned,
        points_redeemed=redeem_points,
        balance=balance,
        tier=tier_name,
        created_at=now,
        referral=referral,
        tier_reached=tier_name != member.tier,
        earned_tier=member.tier,
        **_discount_of_sale(program, member.tier, discount, club),
    )
    result = await _stamped(session, program, result, member, accounts, key)
    return await promotions.apply(session, program, prepared, result, member, accounts, key)


async def _stamped(
    session: AsyncSession,
    program: Program,
    result: PurchaseResult,
    member: MemberInfo,
    accounts: PartnerAccounts,
    key: str,
) -> PurchaseResult:
    """The sale's stamps on its partner's stamp cards, in its transaction (a partner with
    no stamp card costs no query): db/usecases/stamps.py."""
    cards = program.stamp_cards_at(result.partner)
    if not cards:
        return result
    news, balance = await add_stamps(
        session,
        program,
        cards,
        sale_id=result.transaction_id,
        sale_key=key,
        member_id=member.id,
        wallet_id=member.wallet_id,
        partner_id=accounts.id,
        partner=accounts.slug,
        issued_id=accounts.issued_id,
        amount=result.amount,
        discount=result.discount,
        now=result.created_at,
    )
    return replace(result, stamps=news, balance=result.balance if balance is None else balance)


def _discount_of_sale(
    program: Program, tier: str, discount: Decimal, club: bool
) -> dict[str, Any]:
    """The result's discount fields: the money, and the tier (the one the sale was posted
    at, which ledger_sale checked gives this discount with the club status read) with the
    percent, the tier's and the club's, and the club's part of it."""
    if not discount:
        return {}
    return {
        "discount": discount,
        "discount_tier": program.tier(tier).name,
        "discount_percent": program.discount_percent(tier, club),
        "discount_club_percent": club_part(program, club),
    }


# The member (with their wallet), the partner (with its two accounts), the sale's
# transaction row and, in the common case, its posting and the member's trailing spend, in
# one round trip (migrations 0010, 0011, 0014 and 0020 say what ledger_sale does); for
# record_sale's common case, with no BEGIN or COMMIT around it (`alone`). The row is inserted
# only when both exist and are active, so a refused sale writes nothing; as in
# open_transaction, a concurrent posting with the same key waits on the unique index and
# then inserts nothing (tx_id is NULL: a replay). A sale that may pay an invitation reward is
# only opened here. The statement goes straight through the driver (db.engine.fetch_row):
# it is every sale's, and through SQLAlchemy it cost more Python than the rest of the sale.
_SALE_ARGS = (
    "member",
    "slug",
    "kind",
    "key",
    "digest",
    "staff",
    "amount",
    "paid",
    "receipt",
    "now",
    "redeem",
    "tiers",
    "earned",
    "expires",
    "referral_min",
    "post_hold",
    "since",
    "discount",
    "discounts",
    "next_min",
    "alone",
)
_SALE = f"SELECT * FROM ledger_sale({', '.join(f'${n + 1}' for n in range(len(_SALE_ARGS)))})"


class _SaleRow(NamedTuple):
    """ledger_sale's row, its columns in their order."""

    id: int | None
    telegram_id: int | None
    card_number: str
    first_name: str
    language: str
    tier: str
    marketing_consent: bool
    referred_by_id: int | None
    wallet_id: int
    balance: int
    joined_at: datetime
    partner_id: int | None
    partner_slug: str
    partner_name: str
    issued_id: int
    redeemed_id: int
    tx_id: int | None
    posted: bool
    earned: int
    spend: Any  # the trailing spend (numeric) when posted below the top tier, else NULL
    deferred: bool  # alone, and it needs the use case's transaction: nothing written


async def _sale(session: AsyncSession, params: dict[str, Any], post_hold: str | None) -> _SaleRow:
    args = [params[name] for name in _SALE_ARGS]
    try:
        with refusals(post_hold):
            if params["alone"]:
                row = await fetch_row_alone(session, _SALE, *args)
            else:
                session.info["wrote"] = True  # a SELECT of ledger_sale writes (db/engine.py)
                row = await fetch_row(session, _SALE, *args)
        # Alone, the server committed it: the unit of work's commit reports it (a refusal
        # wrote nothing, and a rollback of a session with no transaction reports nothing).
        session.info["wrote"] = True
    except DBAPIError as exc:
        if constraint_name(exc) == "discount_shown":  # migration 0014
            raise DiscountChanged() from None
        raise
    assert row is not None  # ledger_sale returns one row, NULLs for what it did not find
    return _SaleRow(*row)


def _next_min_spend(program: Program) -> list[Decimal | None]:
    """Per tier, the min_spend of the tier above it (None at the top): ledger_sale reads
    the trailing spend only below the top, and a sale alone that reaches the tier above is
    sent again in a transaction, for _tier_after_sale to move the member up."""
    return [
        None if (above := program.next_tier(t.name)) is None else above.min_spend
        for t in program.tiers
    ]


def _opened(row: Any, partner: str) -> tuple[MemberInfo, PartnerAccounts, int | None]:
    """The member, the partner and the transaction id (None: the key was already posted)."""
    if row.id is None:
        raise UnknownMember()
    if row.partner_id is None:
        raise UnknownPartner(partner=partner)
    member = MemberInfo(
        id=row.id,
        telegram_id=row.telegram_id,
        card_number=row.card_number,
        first_name=row.first_name,
        language=row.language,
        tier=row.tier,
        marketing_consent=row.marketing_consent,
        referred_by_id=row.referred_by_id,
        wallet_id=row.wallet_id,
        balance=row.balance,
        joined_at=row.joined_at,
    )
    accounts = PartnerAccounts(
        row.partner_id, row.partner_slug, row.partner_name, row.issued_id, row.redeemed_id
    )
    return member, accounts, row.tx_id


async def _open_referral(
    session: AsyncSession,
    program: Program,
    member: MemberInfo,
    purchase_tx: int,
    amount: Decimal,
    now: datetime,
    legs: list[Leg],
) -> ReferralReward | None:
    """On the invitee's first qualifying purchase, reward both friends (once: the key is the
    invitee's). The legs join the purchase's batch so all accounts lock in one order."""
    referral = program.referral
    if member.referred_by_id is None or amount < referral.qualifying_purchase:
        return None
    inviter_wallet = None
    if await lock_members(session, [member.referred_by_id]):  # before the inviter's wallet
        inviter_wallet = await wallet_of(session, member.referred_by_id)
    inviter_points = referral.inviter_points if inviter_wallet is not None else 0
    if inviter_points + referral.invitee_points == 0:
        return None
    key = f"referral:{member.id}"
    tx_id = await open_transaction(
        session,
        kind=TxKind.REFERRAL,
        key=key,
        digest=fingerprint(TxKind.REFERRAL, member.id),
        member_id=member.id,
        related_id=purchase_tx,
        created_at=now,
    )
    if tx_id is None:
        return None  # already rewarded on an earlier purchase
    program_acc = await system_account(session, AccountKind.PROGRAM)
    legs.append(Leg(program_acc, -(inviter_points + referral.invitee_points), tx_id))
    legs.append(Leg(member.wallet_id, referral.invitee_points, tx_id))
    if inviter_wallet is not None:
        legs.append(Leg(inviter_wallet, inviter_points, tx_id))
    return ReferralReward(
        tx_id,
        member.referred_by_id if inviter_wallet else None,
        inviter_points,
        referral.invitee_points,
    )


def spend_expression(
    tx: Any = None, where: ColumnElement[bool] | None = None
) -> ColumnElement[Any]:
    """Money a member spent: purchases' paid part, less the money part of refunds, summed
    over the transactions' columns `tx` (default: the table's; the caller selects the
    TxKind.SPEND kinds), of the rows `where` keeps (default: all)."""
    tx = Transaction.__table__.c if tx is None else tx
    spent = func.sum(case((tx.kind == TxKind.REVERSE, -tx.paid), else_=tx.paid))
    return func.coalesce(spent if where is None else spent.filter(where), 0)


# The statements of a sale are built once, from table columns rather than ORM attributes:
# building a statement and going through the ORM cost more Python than running it.
_tx = Transaction.__table__.c
_member_id = bindparam("member_id", type_=BigInteger)
TRAILING_SPEND = select(spend_expression()).where(
    _tx.member_id == _member_id,
    _tx.kind == any_(array(list(TxKind.SPEND))),
    _tx.created_at > bindparam("since", type_=DateTime(timezone=True)),
)
_SPEND = (TRAILING_SPEND.scalar_subquery(),)


def spend_params(member_id: int, now: datetime) -> dict[str, Any]:
    return {"member_id": member_id, "since": now - TIER_WINDOW}


async def _finish_purchase(
    session: AsyncSession,
    program: Program,
    member: MemberInfo,
    tx_id: int,
    legs: list[Leg],
    lots: list[Lot],
    now: datetime,
    post_hold: str | None = None,
) -> tuple[str, int]:
    """Post the sale (its legs and lots) and read the wallet's balance and the member's
    trailing spend, in one statement, the last before the commit: a sale holds its partner's
    account row, which every sale at that partner needs, from its entries to its commit.
    At the top tier there is nothing to reach, and the spend is not read."""
    check_tier = program.next_tier(member.tier) is not None
    posted = await post(
        session,
        legs,
        lots,
        tx_id=tx_id,
        post_hold=post_hold,
        extra=_SPEND if check_tier else (),
        params=spend_params(member.id, now) if check_tier else None,
    )
    assert posted is not None  # the transaction was opened by ledger_sale
    spend = posted.extra[0] if check_tier else None
    tier = await _tier_after_sale(session, program, member, spend)
    return tier, posted.balances[member.wallet_id]


async def _tier_after_sale(
    session: AsyncSession, program: Program, member: MemberInfo, spend: Decimal | None
) -> str:
    """The member's tier after a sale that left their trailing spend at `spend` (None: not
    read). The member moves up at once when a purchase crosses a tier; moving down waits for
    the daily recalculation, so a refund never surprises anyone at the till."""
    current = program.tier(member.tier)
    if spend is None or program.next_tier(current.name) is None:
        return current.name
    reached = program.tier_for_spend(Decimal(spend))
    if reached.min_spend <= current.min_spend:
        return current.name
    await session.execute(_MOVE_UP, {"member": member.id, "tier": reached.name})
    return reached.name


# Built once (Core, not ORM): a member moved up a tier by a sale.
_MOVE_UP = (
    update(Member)
    .where(Member.id == bindparam("member", type_=BigInteger))
    .values(tier=bindparam("tier"))
    .execution_options(synchronize_session=False)  # no Member is loaded in the session
)


async def _wallet_moves(session: AsyncSession, tx_id: int, member_id: int) -> tuple[int, int]:
    """(points credited to, points debited from) the member's wallet by one transaction."""
    rows = (
        await session.execute(
            select(Entry.amount)
            .join(Account, Account.id == Entry.account_id)
            .where(
                Entry.transaction_id == tx_id,
                Account.member_id == member_id,
                Account.kind == AccountKind.MEMBER,
            )
        )
    ).scalars()
    amounts = list(rows)
    return sum(a for a in amounts if a > 0), -sum(a for a in amounts if a < 0)


async def purchase_result(
    session: AsyncSession,
    tx: Transaction,
    replayed: bool = False,
    *,
    program: Program | None = None,
) -> PurchaseResult:
    """The result of an earlier posting, rebuilt from the ledger (for replays): one query,
    and one more for its stamps when `program` gives its partner stamp cards."""
    assert tx.member_id is not None and tx.amount is not None and tx.paid is not None
    row = await _replay(session, tx, tx.id, tx.member_id)
    if row.deleted:
        raise UnknownMember()
    referral = None
    if row.reward_tx is not None:
        referral = ReferralReward(
            row.reward_tx, row.inviter_id, int(row.inviter_points), int(row.invitee_points)
        )
    cards = program.stamp_cards_at(row.slug) if program is not None else []
    stamps: tuple[StampNews, ...] = ()
    if cards:
        stamps = await sale_news(
            session,
            cards,
            sale_id=tx.id,
            member_id=tx.member_id,
            amount=tx.amount,
            discount=tx.discount,
        )
    return PurchaseResult(
        transaction_id=tx.id,
        kind=tx.kind,
        member_id=tx.member_id,
        partner=row.slug,
        amount=tx.amount,
        paid=tx.paid,
        points_earned=int(row.tx_in),
        points_redeemed=int(row.tx_out),
        balance=row.balance,
        tier=row.tier,
        created_at=tx.created_at,
        referral=referral,
        replayed=replayed,
        stamps=stamps,
        discount=tx.discount or ZERO,
        promotions=await promotions.awarded(session, program, tx.id)
        if program is not None and row.promoted
        else (),
    )


def sale_digest(sale: Sale, amount: Decimal, discount: Decimal, lines: Sequence[Line]) -> str:
    """A sale's digest in the ledger: a sale without a discount, or without lines, keeps
    the digest it always had."""
    return fingerprint(
        "purchase",
        sale.member_id,
        sale.partner,
        str(amount),
        sale.redeem_points,
        sale.receipt,
        *([str(discount)] if discount else []),
        *([line_digest(lines)] if lines else []),
    )


async def receipt_replay(
    session: AsyncSession, program: Program, sale: Sale
) -> tuple[PurchaseResult, tuple[Line, ...]]:
    """After IdempotencyConflict on a sale with a receipt number: the sale posted under its
    key if it is this very one but for itemised lines, which only a till's program sends
    (a cashier types the receipt in the bot without them): a replay, with the lines the
    ledger's sale had. Else ReceiptTaken, its `differs` naming what is not the same
    (member, amount, discount, points or lines)."""
    tx = await session.scalar(select(Transaction).where(Transaction.idempotency_key == sale.key))
    receipt = sale.receipt
    if tx is None or tx.member_id is None or tx.amount is None:
        raise ReceiptTaken(receipt=receipt)
    amount = check_purchase(sale.amount, program.program.max_purchase)
    discount = discount_of(amount, sale.discount_percent)
    theirs = await posted_lines(session, tx.id)
    # When one of the two has lines, the rest is compared.
    if (not theirs) != (not sale.lines) and (
        sale_digest(sale, amount, discount, theirs) == tx.fingerprint
    ):
        return await purchase_result(session, tx, True, program=program), theirs
    differs = "lines"
    if tx.member_id != sale.member_id:
        differs = "member"
    elif tx.amount != amount:
        differs = "amount"
    elif (tx.kind == TxKind.REDEEM) != bool(sale.redeem_points):
        differs = "points"
    elif (tx.discount or ZERO) != discount:
        differs = "discount"
    raise ReceiptTaken(receipt=receipt, differs=differs)


async def record_refund(
    session: AsyncSession, program: Program, request: Refund
) -> ReversalResult:
    """A refund as one transaction, committed (see post_reversal)."""
    async with unit_of_work(session):
        return await post_reversal(session, program, request)


async def post_reversal(
    session: AsyncSession, program: Program, request: Refund
) -> ReversalResult:
    """Refund a sale fully or partly (`amount` of the money it charged, the purchase total
    less its discount; None: all that is left).

    The points earned on the refunded money are clawed back and the points that paid for it
    are returned, in proportion; a full refund of the purchase that paid an invitation reward
    takes both friends' rewards back too. The returned points may cover the claw-back; points
    already spent beyond that cannot be taken from the wallet: they are reported as
    `shortfall` and their value is kept from the cash (`cash_back`). `partner`, when given, is
    the acting staff's partner: nobody refunds another's sale.
    """
    transaction_id, key, amount = request.transaction_id, request.key, request.amount
    partner, staff_id, now = request.partner, request.staff_id, request.now
    reason = request.reason.strip()
    if not reason:
        raise ReasonRequired()
    if amount is not None:
        amount = check_purchase(amount, Decimal("1e12"))
    digest = fingerprint("reverse", transaction_id, str(amount or "rest"), reason)
    now = now or datetime.now(UTC)
    pv = program.program.point_value
    orig = (
        await session.execute(
            select(Transaction).where(Transaction.id == transaction_id).with_for_update()
        )
    ).scalar_one_or_none()
    if orig is None:
        raise UnknownTransaction(transaction=transaction_id)
    posted = (
        await session.execute(select(Transaction).where(Transaction.idempotency_key == key))
    ).scalar_one_or_none()
    if posted is not None:  # orig is locked, so no other reversal of it races this check
        return await reversal_result(
            session, program, await find_posted(session, key, digest), True
        )
    if orig.kind not in TxKind.SALES or orig.amount is None or orig.paid is None:
        raise NotReversible(transaction=transaction_id, kind=orig.kind)
    slug = (
        await session.execute(select(Partner.slug).where(Partner.id == orig.partner_id))
    ).scalar_one()
    if partner is not None and slug != partner:
        raise WrongPartner(transaction=transaction_id)
    assert orig.member_id is not None
    refunded = (
        await session.execute(
            select(func.coalesce(func.sum(Transaction.amount), 0)).where(
                Transaction.reverses_id == orig.id
            )
        )
    ).scalar_one()
    # coalesce() makes `refunded` 0; the type cannot say so.
    before = charged(orig.amount, orig.discount) - (refunded or 0)
    if before <= 0:
        raise AlreadyReversed(transaction=transaction_id)
    refund = before if amount is None else amount
    if refund > before:
        raise RefundTooLarge(amount=refund, max=before)
    after = before - refund
    claw, give, money = await _refund_shares(
        session, orig, before, after, program.program.point_value
    )
    reward = await _referral_of(session, orig) if after == 0 else None
    member_ids = [orig.member_id] + ([reward.inviter_id] if reward and reward.inviter_id else [])
    # Member rows first, then accounts: the order a deletion takes them in (lock_members).
    alive = await lock_members(session, member_ids)
    accounts = await partner_accounts(session, slug)
    wallet = await wallet_of(session, orig.member_id)
    program_acc = await system_account(session, AccountKind.PROGRAM)
    breakage = await system_account(session, AccountKind.BREAKAGE)
    inviter_wallet = reward.inviter_wallet if reward else None
    # What the sale got from promotions: their funders' accounts are locked with the rest.
    promoted = await promotions.refund_plan(session, orig.id)
    if after == 0:  # it voids the open ones: locked before the accounts, as a claim does
        await promotions.lock_vouchers(session, promoted)
    balances = await lock_accounts(
        session,
        [accounts.issued_id, accounts.redeemed_id, wallet, program_acc, breakage]
        + ([inviter_wallet] if inviter_wallet else [])
        + promoted.accounts,
    )
    # A deleted member's points were forfeited: the points this refund returns go the same way.
    returned_to = wallet if orig.member_id in alive else breakage
    available = balances[wallet] + (give if returned_to == wallet else 0)
    clawed = min(claw, available)
    invitee_back = min(reward.invitee_points, available - clawed) if reward else 0
    inviter_back = 0
    if reward is not None and inviter_wallet is not None:
        inviter_back = min(reward.inviter_points, balances[inviter_wallet])
    shortfall = claw - clawed + ((reward.invitee_points - invitee_back) if reward else 0)
    legs = [
        Leg(accounts.redeemed_id, -give),
        Leg(returned_to, give),
        Leg(wallet, -clawed),
        Leg(accounts.issued_id, clawed),
    ]
    # The returned points go back first (they may cover the claw-back) and keep at most the
    # life they had: they were earned before the sale.
    lots = []
    if returned_to == wallet:
        lots.append(
            Lot(
                orig.member_id,
                give,
                earned_at=now,
                expires_at=expiry_for(program, orig.created_at),
            )
        )
    lots.append(Lot(orig.member_id, -clawed, prefer_tx=orig.id))
    if reward is not None:
        legs += [Leg(wallet, -invitee_back), Leg(program_acc, invitee_back + inviter_back)]
        lots.append(Lot(orig.member_id, -invitee_back, prefer_tx=reward.transaction_id))
        if inviter_wallet is not None and reward.inviter_id is not None:
            legs.append(Leg(inviter_wallet, -inviter_back))
            lots.append(Lot(reward.inviter_id, -inviter_back, prefer_tx=reward.transaction_id))
    done = await post(
        session,
        legs,
        lots,
        kind=TxKind.REVERSE,
        key=key,
        digest=digest,
        member_id=orig.member_id,
        partner_id=orig.partner_id,
        staff_id=staff_id,
        amount=refund,
        paid=money,
        reason=reason,
        reverses_id=orig.id,
        created_at=now,
    )
    if done is None:  # the key was used for another transaction meanwhile
        return await reversal_result(
            session, program, await find_posted(session, key, digest), True
        )
    tx_id = done.transaction_id
    stamps: tuple[StampBack, ...] = ()
    if cards := program.stamp_cards_at(slug):  # no query for a partner without stamp cards
        stamps = await take_back_stamps(
            session,
            program,
            cards,
            sale_id=orig.id,
            member_id=orig.member_id,
            partner_id=orig.partner_id,
            refund_id=tx_id,
            refund_key=key,
            left=after,
            now=now,
        )
    promos: tuple[PromotionBack, ...] = ()
    balance = done.balances[wallet]
    if promoted.given:
        promos = await promotions.take_back(
            session,
            program,
            promoted,
            sale_id=orig.id,
            member_id=orig.member_id,
            wallet=wallet,
            partner_id=orig.partner_id,
            seller_issued=accounts.issued_id,
            refund_id=tx_id,
            refund_key=key,
            total=charged(orig.amount, orig.discount),
            before=before,
            after=after,
            available=available - clawed - invitee_back,  # what it may still spend
            now=now,
        )
        balance -= sum(p.points for p in promos)
        shortfall += sum(p.shortfall for p in promos)
    clawback = None
    if reward is not None:
        clawback = ReferralClawback(
            reward.transaction_id,
            invitee_back,
            reward.inviter_id,
            inviter_back,
            reward.inviter_points - inviter_back,
        )
    return ReversalResult(
        transaction_id=tx_id,
        reverses_id=orig.id,
        member_id=orig.member_id,
        partner=slug,
        amount=refund,
        money_refund=money,
        # Returned to the member's wallet; a deleted member's went to breakage instead.
        points_returned=give if returned_to == wallet else 0,
        points_clawed_back=clawed + invitee_back,
        shortfall=shortfall,
        cash_back=cash_back(money, shortfall, pv),
        balance=balance,
        created_at=now,
        referral=clawback,
        stamps=stamps,
        sale_discount=orig.discount or ZERO,
        promotions=promos,
    )


@dataclass(frozen=True, slots=True)
class _Reward:
    transaction_id: int
    invitee_points: int
    inviter_id: int | None
    inviter_wallet: int | None
    inviter_points: int


async def _referral_of(session: AsyncSession, purchase: Transaction) -> _Reward | None:
    """The invitation reward the purchase paid, if any: what each friend got."""
    reward_tx = (
        await session.execute(
            select(Transaction.id).where(
                Transaction.related_id == purchase.id, Transaction.kind == TxKind.REFERRAL
            )
        )
    ).scalar_one_or_none()
    if reward_tx is None:
        return None
    rows = (
        await session.execute(
            select(Account.member_id, Account.id, Entry.amount)
            .join(Account, Account.id == Entry.account_id)
            .where(Entry.transaction_id == reward_tx, Account.kind == AccountKind.MEMBER)
        )
    ).all()
    invitee = sum(amount for who, _, amount in rows if who == purchase.member_id)
    inviter = [(who, acc, amount) for who, acc, amount in rows if who != purchase.member_id]
    if inviter:
        return _Reward(reward_tx, invitee, inviter[0][0], inviter[0][1], inviter[0][2])
    return _Reward(reward_tx, invitee, None, None, 0)


async def _refund_shares(
    session: AsyncSession, orig: Transaction, before: Decimal, after: Decimal, pv: Decimal
) -> tuple[int, int, Decimal]:
    """refund_shares of the purchase `orig`, with its points read from the ledger."""
    assert orig.amount is not None and orig.member_id is not None
    earned, redeemed = await _wallet_moves(session, orig.id, orig.member_id)
    return refund_shares(earned, redeemed, charged(orig.amount, orig.discount), before, after, pv)


def refund_shares(
    earned: int, redeemed: int, total: Decimal, before: Decimal, after: Decimal, pv: Decimal
) -> tuple[int, int, Decimal]:
    """For refunding a purchase that charged `total` (its amount less its discount) and
    earned `earned` and redeemed `redeemed` points, from `before` to `after` money not yet
    refunded: (points to claw back, points to
    return, money part of the refund). Computed from the totals, not per refund, so partial
    refunds add up exactly to a full one. The money part is the refund less what the returned
    points are worth, so points and money together are the sum refunded (not a cent more:
    both shares rounded in the member's favour would be)."""
    claw = share_kept(earned, total, before) - share_kept(earned, total, after)
    points_kept = {left: share_kept(redeemed, total, left) for left in (before, after)}
    give = points_kept[before] - points_kept[after]

    def money_kept_at(left: Decimal) -> Decimal:
        # At the whole purchase this is what was paid in money; at nothing, nothing.
        return left - points_money(points_kept[left], pv)

    money = money_kept_at(before) - money_kept_at(after)
    return claw, give, max(money, Decimal("0.00"))


# What a replay needs of the ledger, in one round trip: the wallet moves of the posting (and
# of the sale it refunds), the invitation reward that sale paid (each friend's points), the
# partner's slug, the member's balance and tier now, and whether the sale got anything from
# promotions (promotion_awards, by its key: read whatever the program file says now, so a
# promotion taken out of the file is still replayed, and a sale without awards costs no
# further query). `moves` are the member wallets'
# entries of those transactions (at most a handful of rows).
_REPLAY = text(
    """
    WITH reward AS (
        SELECT id FROM transactions WHERE related_id = :sale AND kind = 'referral'
    ), moves AS (
        SELECT e.transaction_id AS tx, a.member_id AS who, e.amount
        FROM entries AS e JOIN accounts AS a ON a.id = e.account_id
        WHERE a.kind = 'member'
          AND e.transaction_id IN (:tx, :sale, (SELECT id FROM reward))
    ), inviter AS (
        SELECT min(who) AS id, sum(amount) AS points FROM moves
        WHERE tx = (SELECT id FROM reward) AND who <> :member
    )
    SELECT
        (SELECT slug FROM partners WHERE id = :partner) AS slug,
        w.balance, m.tier, m.deleted_at IS NOT NULL AS deleted,
        (SELECT coalesce(sum(amount), 0) FROM moves
         WHERE tx = :tx AND who = :member AND amount > 0) AS tx_in,
        (SELECT coalesce(-sum(amount), 0) FROM moves
         WHERE tx = :tx AND who = :member AND amount < 0) AS tx_out,
        (SELECT coalesce(sum(amount), 0) FROM moves
         WHERE tx = :sale AND who = :member AND amount > 0) AS sale_in,
        (SELECT coalesce(-sum(amount), 0) FROM moves
         WHERE tx = :sale AND who = :member AND amount < 0) AS sale_out,
        (SELECT id FROM reward) AS reward_tx,
        (SELECT coalesce(sum(amount), 0) FROM moves
         WHERE tx = (SELECT id FROM reward) AND who = :member) AS invitee_points,
        inviter.id AS inviter_id, coalesce(inviter.points, 0) AS inviter_points,
        (SELECT coalesce(-sum(amount), 0) FROM moves
         WHERE tx = :tx AND who = inviter.id AND amount < 0) AS inviter_back,
        (SELECT coalesce(sum(amount), 0) FROM transactions
         WHERE reverses_id = :sale AND id < :tx) AS refunded_earlier,
        (SELECT amount FROM transactions WHERE id = :sale) AS sale_amount,
        (SELECT discount FROM transactions WHERE id = :sale) AS sale_discount,
        EXISTS (SELECT 1 FROM promotion_awards WHERE sale_id = :sale) AS promoted
    FROM members AS m JOIN accounts AS w ON w.member_id = m.id AND w.kind = 'member', inviter
    WHERE m.id = :member
    """
)


async def _replay(session: AsyncSession, tx: Transaction, sale: int, member_id: int) -> Any:
    return (
        await session.execute(
            _REPLAY,
            {"tx": tx.id, "sale": sale, "member": member_id, "partner": tx.partner_id},
        )
    ).one()


async def reversal_result(
    session: AsyncSession, program: Program, tx: Transaction, replayed: bool = False
) -> ReversalResult:
    """The result of an earlier refund, rebuilt from the ledger (for replays): one query. The
    sale's points are clawed back before the invitation reward, so the wallet's debits split
    so."""
    assert tx.reverses_id is not None and tx.member_id is not None
    assert tx.amount is not None and tx.paid is not None
    row = await _replay(session, tx, tx.reverses_id, tx.member_id)
    pv = program.program.point_value
    returned, taken = int(row.tx_in), int(row.tx_out)
    total = charged(row.sale_amount, row.sale_discount)
    before = total - row.refunded_earlier
    claw, _, _ = refund_shares(
        int(row.sale_in), int(row.sale_out), total, before, before - tx.amount, pv
    )
    shortfall = claw - min(claw, taken)
    clawback = None
    if before == tx.amount and row.reward_tx is not None:
        invitee_back = taken - min(claw, taken)
        shortfall += int(row.invitee_points) - invitee_back
        inviter_back = int(row.inviter_back) if row.inviter_id is not None else 0
        clawback = ReferralClawback(
            row.reward_tx,
            invitee_back,
            row.inviter_id,
            inviter_back,
            int(row.inviter_points) - inviter_back,
        )
    promos: tuple[PromotionBack, ...] = ()
    if row.promoted:  # whatever the program says now: the sale's awards are in the ledger
        promos = await promotions.taken_back(
            session,
            program,
            sale_id=tx.reverses_id,
            refund_id=tx.id,
            total=total,
            before=before,
            after=before - tx.amount,
        )
    shortfall += sum(p.shortfall for p in promos)
    stamps: tuple[StampBack, ...] = ()
    if cards := program.stamp_cards_at(row.slug):
        stamps = await refund_news(
            session,
            cards,
            sale_id=tx.reverses_id,
            member_id=tx.member_id,
            refund_id=tx.id,
            left=before - tx.amount,
        )
    return ReversalResult(
        transaction_id=tx.id,
        reverses_id=tx.reverses_id,
        member_id=tx.member_id,
        partner=row.slug,
        amount=tx.amount,
        money_refund=tx.paid,
        points_returned=returned,
        points_clawed_back=taken,
        shortfall=shortfall,
        cash_back=cash_back(tx.paid, shortfall, pv),
        balance=row.balance,
        created_at=tx.created_at,
        referral=clawback,
        replayed=replayed,
        stamps=stamps,
        sale_discount=row.sale_discount or ZERO,
        promotions=promos,
    )
