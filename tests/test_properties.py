"""Random sequences of earn, redeem, reverse, adjust and expire, among redemption requests
created, confirmed, declined and timed out, gifts made, accepted, taken back and returned,
and catalogue vouchers taken, claimed and expired (all holds), keep every ledger invariant,
and each operation fails only in the ways it is allowed to (a refund, an expiry or a positive
adjustment never runs out of points; a confirmation, a gift's acceptance or a claim never
finds its held points gone). Sales at the coffee shop, the bookshop and the gym stamp cards
(a coffee card with a voucher, a tour card with points): stamps lapse, refunds take them
back, and no card is ever left full, nor a full card without its voucher. Club payments
(Stars, card, till; the same charge sometimes delivered twice; sometimes for an account
deleted since) are recorded once per charge, and each membership ends where the model says
(its last payment's period; its account's deletion); the club's welcome points are paid at
most once per person, never again to a new account of someone who deleted one that had them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from db.engine import session_factory
from db.ledger.models import ClubMembership, ClubPayment, Transaction, TxKind
from db.rules import errors
from db.rules.gifts import GiftClosed, GiftLimit, OwnGift, gift_code
from db.rules.program import CLUB_PERIOD, Program, parse_program
from db.rules.tokens import derive_secret, identity_hash
from db.rules.vouchers import (
    OutOfStock,
    RewardLimit,
    VoucherClaimed,
    VoucherExpired,
    VoucherWrongPartner,
)
from db.usecases.adjust import adjust
from db.usecases.club import Payment, record_payment
from db.usecases.expiry import expire_due
from db.usecases.gifts import accept_gift, cancel_gift, create_gift, return_expired_gifts
from db.usecases.members import get_member, register_member
from db.usecases.privacy import delete_member
from db.usecases.purchases import Refund, Sale, record_refund, record_sale
from db.usecases.staff import accept_invite, create_invite
from db.usecases.stamp_lapses import lapse_due, remind_lapsing
from db.usecases.till import close_request, confirm_redemption, expire_requests, request_redemption
from db.usecases.voucher_claims import claim_voucher
from db.usecases.vouchers import expire_vouchers, take_reward
from tests.conftest import TEST_PROGRAM, reset_ledger
from tests.invariants import ledger_violations

# Catalogue rewards at the cashier's partner (books) and elsewhere, with a stock and a
# per-member limit, valid for fewer days than the "days" steps may jump.
PROGRAM: Program = parse_program(
    {
        **TEST_PROGRAM,
        "program": {**TEST_PROGRAM["program"], "expire_days": 30},
        "gifts": {"max_points_per_day": 800},
        "rewards": [
            {
                "slug": "bag",
                "title": "A bag",
                "partner": "books",
                "points": 60,
                "stock": 3,
                "valid_days": 10,
            },
            {
                "slug": "pen",
                "title": "A pen",
                "partner": "books",
                "points": 10,
                "per_member": 2,
                "valid_days": 10,
            },
            {"slug": "coffee", "title": "A coffee", "partner": "coffee", "points": 300},
            {"slug": "free-coffee", "title": "A coffee", "partner": "coffee"},
        ],
        "stamp_cards": [
            {
                "slug": "coffee-2",
                "name": "Second coffee free",
                "partners": ["coffee"],
                "stamps": 2,
                "min_purchase": "5.00",
                "per_day": 2,
                "reward": "free-coffee",
                "expire_days": 20,
            },
            {
                "slug": "tour",
                "name": "Tour",
                "partners": ["books", "gym"],
                "stamps": 2,
                "per_day": 0,
                "distinct_partners": True,
                "reward_points": 100,
                "expire_days": 10,
            },
        ],
        # No club discount: these sales are typed without one (the till shows the discount
        # and the database checks it; a club discount is tested at the till).
        "club": {
            "name": "Club",
            "stars_per_month": 250,
            "price": "29.00",
            "multiplier": "1.5",
            "welcome_points": 500,
        },
    }
)
REWARDS = [r.slug for r in PROGRAM.rewards if r.points]  # those in the catalogue
SECRET = derive_secret("4242:TEST-token")

# The domain errors each operation may raise with the inputs generated here; any other
# exception fails the test.
ALLOWED: dict[str, tuple[type[errors.DomainError], ...]] = {
    "earn": (),
    "redeem": (errors.NotEnoughPoints, errors.RedeemLimitExceeded),
    "reverse": (errors.AlreadyReversed, errors.RefundTooLarge),
    "adjust+": (),
    "adjust-": (errors.NotEnoughPoints,),
    "expire": (),
    "replay": (),
    "hold": (errors.NotEnoughPoints, errors.RedeemLimitExceeded),
    "confirm": (errors.RequestClosed,),  # only when the request timed out
    "decline": (errors.RequestClosed,),
    "timeout": (),
    "gift": (errors.NotEnoughPoints, GiftLimit),
    "accept": (GiftClosed, OwnGift),  # taken, returned, expired; or the giver's own
    "take back": (GiftClosed,),
    "return": (),
    "take": (errors.NotEnoughPoints, OutOfStock, RewardLimit),
    # Only when it was claimed, has expired or is another partner's (asserted below).
    "claim": (VoucherClaimed, VoucherExpired, VoucherWrongPartner),
    "vexpire": (),
    "lapse": (),
    "stamp": (),
    # Only for an account deleted since, for a charge not recorded before (asserted below).
    "pay": (errors.UnknownMember,),
    "leave": (),
    "club sale": (),
}
PARTNERS = [p.slug for p in PROGRAM.partners]

cents = st.integers(min_value=1, max_value=200_000)
# A sale at a stamp card's partner, around the coffee card's minimum, for two members.
stamp_sale = st.tuples(
    st.just("stamp"),
    st.integers(0, 1),
    st.sampled_from(["coffee", "books", "gym"]),
    st.integers(300, 2_000),
)
operation = st.one_of(
    st.tuples(st.just("earn"), st.integers(0, 2), st.integers(0, 3), cents),
    st.tuples(
        st.just("redeem"), st.integers(0, 2), st.integers(0, 3), cents, st.integers(1, 5_000)
    ),
    st.tuples(st.just("reverse"), st.integers(0, 50), st.one_of(st.none(), cents)),
    st.tuples(st.just("adjust"), st.integers(0, 2), st.integers(-500, 500).filter(bool)),
    st.tuples(st.just("days"), st.integers(1, 40)),
    st.tuples(st.just("expire")),
    st.tuples(st.just("replay")),
    st.tuples(
        st.just("hold"), st.integers(0, 2), cents, st.one_of(st.none(), st.integers(1, 5_000))
    ),
    st.tuples(st.just("confirm"), st.integers(0, 50)),
    st.tuples(st.just("decline"), st.integers(0, 50)),
    st.tuples(st.just("timeout")),
    st.tuples(st.just("gift"), st.integers(0, 2), st.integers(1, 600)),
    st.tuples(st.just("accept"), st.integers(0, 50), st.integers(0, 2)),
    st.tuples(st.just("take back"), st.integers(0, 50)),
    st.tuples(st.just("return")),
    st.tuples(st.just("take"), st.integers(0, 2), st.integers(0, len(REWARDS) - 1)),
    st.tuples(st.just("claim"), st.integers(0, 50)),
    st.tuples(st.just("vexpire")),
    st.tuples(st.just("lapse")),
)
# Club operations: a payment by person 0 or 3 (4: for the last account person 3 deleted) by a
# method, its charge one of a few (the same charge again is a redelivery) and, for Stars,
# days the subscription's own end adds; person 3 deleting their account and joining again;
# a sale by anyone, person 3 included (the others' sales are the operations above).
club_payment = st.tuples(
    st.just("pay"),
    st.sampled_from([0, 3, 4]),  # one who takes every operation, the leaver, a gone account
    st.sampled_from(["stars", "card", "till"]),
    st.integers(0, 2),
    st.integers(0, 2),
)
club_sale = st.tuples(st.just("club sale"), st.integers(0, 3), st.integers(0, 3), cents)
# Three in five are payments, so one person pays again, and after leaving, often enough.
club_operation = st.integers(0, 4).flatmap(
    lambda pick: st.just(("leave",)) if pick == 0 else club_sale if pick == 1 else club_payment
)
IDENTITY_SECRET = b"property-test"


@dataclass
class ClubModel:
    """What the club's tables should hold: each charge recorded once, each account's
    membership end, and who (by person: a Telegram id) had the welcome points."""

    charges: dict[str, datetime] = field(default_factory=dict)  # charge → the end it bought
    ends: dict[int, datetime] = field(default_factory=dict)  # account → its membership's end
    welcomed: dict[int, int] = field(default_factory=dict)  # person → account welcomed
    accounts: dict[int, list[int]] = field(default_factory=dict)  # person → their accounts

    def pay(self, account: int, charge: str, now: datetime, until: datetime | None) -> datetime:
        """A new charge: 30 days from the present end (or now), at least to `until`."""
        ends = self.ends.get(account)
        start = ends if ends is not None and ends > now else now
        end = start + CLUB_PERIOD
        if until is not None and until > end:
            end = until
        self.charges[charge] = self.ends[account] = end
        return end


# Per account: its club welcome postings, its membership's end; per payment row, counted.
CLUB_STATE = text(
    """
    SELECT m.id,
           (SELECT count(*) FROM transactions t WHERE t.member_id = m.id AND t.kind = 'club'),
           (SELECT c.ends_at FROM club_memberships c WHERE c.member_id = m.id)
    FROM members m ORDER BY m.id
    """
)


# Requests and catalogue vouchers open (created, not answered or claimed) and their holds,
# straight from the tables (each voucher's hold against the voucher: tests/invariants.py).
OPEN = text(
    """
    SELECT (SELECT count(*) FROM redemption_requests WHERE status = 'pending')
           + (SELECT count(*) FROM vouchers WHERE status = 'open' AND source = 'catalogue'),
           (SELECT count(*) FROM holds WHERE status = 'open'
                AND (key LIKE 'redemption:%' OR key LIKE 'voucher:%')),
           (SELECT count(*) FROM redemption_requests r JOIN holds h
                ON h.key = 'redemption:' || r.public_id
            WHERE (r.status = 'confirmed') <> (h.status = 'posted')
               OR (r.status = 'pending') <> (h.status = 'open'))
    """
)

# Stamp cards: none left full (a full card gives its reward at once and starts again); each
# fill of the coffee card issued one voucher; each tour fill gave its 100 points.
CARDS = text(
    """
    SELECT (SELECT count(*) FROM accounts WHERE kind = 'stamps'
            AND balance >= 2),  -- both cards fill at 2
           (SELECT count(*) FROM transactions t WHERE t.kind = 'card_filled'
              AND EXISTS (SELECT 1 FROM entries e JOIN accounts a ON a.id = e.account_id
                          WHERE e.transaction_id = t.id AND a.unit = 'stamps:coffee-2'))
             - (SELECT count(*) FROM vouchers WHERE source = 'stamp_card'),
           (SELECT count(*) FROM transactions t WHERE t.kind = 'card_filled'
              AND EXISTS (SELECT 1 FROM entries e JOIN accounts a ON a.id = e.account_id
                          WHERE e.transaction_id = t.id AND a.unit = 'stamps:tour')
              AND (SELECT sum(e.amount) FROM entries e JOIN accounts a ON a.id = e.account_id
                   WHERE e.transaction_id = t.id AND a.kind = 'member') IS DISTINCT FROM 100)
    """
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# Two in five operations are sales at stamp cards' partners (a card fills only after a
# few), one in five is the club's. (one_of would flatten them into one choice among all the
# kinds, a stamp sale one of 19.)
@given(
    ops=st.lists(
        st.integers(0, 4).flatmap(
            lambda pick: stamp_sale if pick < 2 else club_operation if pick == 2 else operation
        ),
        min_size=1,
        max_size=30,
    )
)
# And always the club's path: paid, the same charge again, a sale, renewed; the leaver paid,
# left, the gone account refused, a new account paid with no second welcome; lapsed and back.
@example(
    ops=[
        ("pay", 0, "stars", 0, 1),
        ("pay", 0, "stars", 0, 1),
        ("club sale", 0, 1, 5_000),
        ("days", 20),
        ("pay", 0, "stars", 1, 0),
        ("pay", 3, "till", 0, 0),
        ("club sale", 3, 2, 2_000),
        ("leave",),
        ("pay", 4, "till", 0, 0),
        ("pay", 4, "card", 1, 0),
        ("pay", 3, "card", 0, 0),
        ("days", 40),
        ("pay", 0, "till", 2, 0),
        ("reverse", 1, None),
        ("leave",),
        ("pay", 3, "stars", 0, 2),
    ]
)
async def test_random_operations_keep_the_invariants(
    engine: AsyncEngine, ops: list[tuple]
) -> None:
    await reset_ledger(engine, PROGRAM)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    async with session_factory(engine)() as s:
        # Persons 0-2 take every operation; person 3 only the club's and sales (they may
        # delete their account and join again).
        members = [
            (await register_member(s, PROGRAM, telegram_id=i + 1, now=now)).id for i in range(4)
        ]
        club = ClubModel(accounts={i: [members[i]] for i in range(4)})
        gone: list[int] = []  # person 3's deleted accounts
        cashier = await accept_invite(
            s,
            await create_invite(s, created_by=1, role="cashier", partner_slug=PARTNERS[1]),
            telegram_id=100,
        )
        requests: list[tuple[str, int]] = []  # (public id, the member's Telegram id)
        gifts: list[tuple[str, int]] = []  # (code, the giver's index)
        codes: list[str] = []  # the vouchers taken
        last: tuple | None = None
        stamped: set[str] = set()  # the cards the last sale stamped
        for n, op in enumerate(ops):
            try:
                match op:
                    case ("earn", m, p, c):
                        last = ("earn", members[m], PARTNERS[p], Decimal(c) / 100, f"k{n}")
                        sold = await record_sale(
                            s,
                            PROGRAM,
                            Sale(
                                member_id=members[m],
                                partner=PARTNERS[p],
                                amount=Decimal(c) / 100,
                                key=f"k{n}",
                                now=now,
                            ),
                        )
                        stamped = {x.card for x in sold.stamps if x.stamped}
                        for news in sold.stamps:
                            event(f"stamp: {news.card} {news.status}")
                    case ("stamp", m, partner, c):
                        last = ("stamp", members[m], partner, Decimal(c) / 100, f"k{n}")
                        sold = await record_sale(
                            s,
                            PROGRAM,
                            Sale(
                                member_id=members[m],
                                partner=partner,
                                amount=Decimal(c) / 100,
                                key=f"k{n}",
                                now=now,
                            ),
                        )
                        stamped = {x.card for x in sold.stamps if x.stamped}
                        for news in sold.stamps:
                            event(f"stamp: {news.card} {news.status}")
                    case ("redeem", m, p, c, points):
                        await record_sale(
                            s,
                            PROGRAM,
                            Sale(
                                member_id=members[m],
                                partner=PARTNERS[p],
                                amount=Decimal(c) / 100,
                                redeem_points=points,
                                key=f"k{n}",
                                now=now,
                            ),
                        )
                    case ("reverse", pick, c):
                        sales = (
                            (
                                await s.execute(
                                    select(Transaction.id)
                                    .where(Transaction.kind.in_((TxKind.EARN, TxKind.REDEEM)))
                                    .order_by(Transaction.id)
                                )
                            )
                            .scalars()
                            .all()
                        )
                        await s.rollback()
                        if sales:
                            sale = sales[pick % len(sales)]
                            back = await record_refund(
                                s,
                                PROGRAM,
                                Refund(
                                    transaction_id=sale,
                                    amount=None if c is None else Decimal(c) / 100,
                                    key=f"k{n}",
                                    reason="refund",
                                    now=now,
                                ),
                            )
                            for stamp in back.stamps:
                                event(f"stamp back: {stamp.card} {stamp.taken_back}")
                    case ("adjust", m, points):
                        await adjust(
                            s,
                            PROGRAM,
                            member_id=members[m],
                            points=points,
                            reason="fix",
                            key=f"k{n}",
                            now=now,
                        )
                    case ("days", days):
                        now += timedelta(days=days)
                    case ("expire",):
                        await expire_due(s, now=now)
                    case ("replay",) if last is not None:
                        _, m, p, amount, key = last
                        replay = await record_sale(
                            s,
                            PROGRAM,
                            Sale(member_id=m, partner=p, amount=amount, key=key, now=now),
                        )
                        assert replay.replayed
                        # It tells the stamps the sale added, and adds none.
                        assert {x.card for x in replay.stamps if x.stamped} == stamped
                    case ("hold", m, c, points):
                        req = await request_redemption(
                            s,
                            PROGRAM,
                            cashier,
                            member_id=members[m],
                            amount=Decimal(c) / 100,
                            points=points,  # None: Max
                            dialog=f"r{n}",
                            staff_chat_id=100,
                            now=now,
                        )
                        requests.append((req.public_id, m + 1))
                    case ("confirm", pick) if requests:
                        public_id, telegram_id = requests[pick % len(requests)]
                        pending = await _pending(s, public_id, now)
                        try:
                            await confirm_redemption(s, PROGRAM, public_id, telegram_id, now=now)
                        except errors.RequestClosed:
                            # Answered already, or timed out (not yet closed by the job).
                            assert not pending, (n, op)
                            raise
                        assert pending, (n, op)
                    case ("decline", pick) if requests:
                        public_id, telegram_id = requests[pick % len(requests)]
                        await close_request(
                            s, PROGRAM, public_id, status="declined", telegram_id=telegram_id
                        )
                    case ("timeout",):
                        await expire_requests(s, PROGRAM, now=now + timedelta(minutes=3))
                    case ("gift", m, points):
                        code = gift_code(b"test", members[m], f"g{n}")
                        gifts.append((code, m))
                        await create_gift(
                            s, PROGRAM, member_id=members[m], points=points, code=code, now=now
                        )
                    case ("accept", pick, m) if gifts:
                        code, _giver = gifts[pick % len(gifts)]
                        await accept_gift(s, PROGRAM, code=code, member_id=members[m], now=now)
                    case ("take back", pick) if gifts:
                        code, giver = gifts[pick % len(gifts)]
                        await cancel_gift(s, code=code, member_id=members[giver], now=now)
                    case ("return",):
                        await return_expired_gifts(s, now=now)
                    case ("take", m, r):
                        rules = PROGRAM.rewards[r]
                        taken = await take_reward(
                            s,
                            PROGRAM,
                            member_id=members[m],
                            reward=rules.slug,
                            points=rules.points,
                            operation=f"t{n}",
                            secret=SECRET,
                            now=now,
                        )
                        codes.append(taken.voucher.code)
                    case ("claim", pick) if codes:
                        code = codes[pick % len(codes)]
                        claimable = await _claimable(s, code, cashier.partner_id, now)
                        try:
                            claimed = await claim_voucher(s, PROGRAM, cashier, code=code, now=now)
                        except (VoucherClaimed, VoucherExpired, VoucherWrongPartner):
                            assert not claimable, (n, op)
                            raise
                        # The same cashier's claim again within CLAIM_REPLAY is their double
                        # tap: their first claim, replayed, posting nothing.
                        assert claimable or claimed.replayed, (n, op)
                    case ("vexpire",):
                        await expire_vouchers(s, PROGRAM, now=now)
                    case ("lapse",):
                        await remind_lapsing(s, PROGRAM, now)
                        if await lapse_due(s, PROGRAM, now):
                            event("stamps lapsed")
                    case ("pay", who, method, charge_n, extra_days) if who < 4 or gone:
                        account = gone[-1] if who == 4 else members[who]
                        person = 3 if who == 4 else who
                        charge = f"{method}:{account}:{charge_n}"
                        stars = method == "stars"
                        until = now + CLUB_PERIOD + timedelta(days=extra_days) if stars else None
                        known = club.charges.get(charge)
                        try:
                            paid = await record_payment(
                                s,
                                PROGRAM,
                                Payment(
                                    member_id=account,
                                    charge_id=charge,
                                    method=method,
                                    currency="XTR" if stars else "PLN",
                                    amount=Decimal(250) if stars else Decimal("29.00"),
                                    now=now,
                                    until=until,
                                    renews=stars,
                                    partner_id=cashier.partner_id if method == "till" else None,
                                ),
                                identity=identity_hash(IDENTITY_SECRET, person + 1),
                            )
                        except errors.UnknownMember:
                            assert who == 4 and known is None, (n, op)
                            raise
                        # A charge recorded before its payer left is replayed, not refused.
                        assert who != 4 or known is not None, (n, op)
                        assert paid.new == (known is None), (n, op)
                        if known is None:
                            assert paid.ends_at == club.pay(account, charge, now, until), (n, op)
                            welcome = person not in club.welcomed
                            assert paid.welcome_points == (500 if welcome else 0), (n, op)
                            if welcome:
                                event("club: paid, welcomed")
                                club.welcomed[person] = account
                            elif club.welcomed[person] != account:
                                event("club: paid, no welcome (had them in a deleted account)")
                            else:
                                event("club: paid, no welcome (had them)")
                        else:
                            assert paid.ends_at == known, (n, op)  # what it bought then
                            event("club: the same charge again")
                    case ("leave",):
                        identity = identity_hash(IDENTITY_SECRET, 4)
                        info = await get_member(s, members[3])
                        await delete_member(s, info, identity=identity, now=now)
                        if members[3] in club.ends:
                            club.ends[members[3]] = min(club.ends[members[3]], now)
                        gone.append(members[3])
                        if last is not None and last[1] == members[3]:
                            last = None  # no replay of a deleted account's sale
                        members[3] = (
                            await register_member(
                                s, PROGRAM, telegram_id=4, identity=identity, now=now
                            )
                        ).id
                        club.accounts[3].append(members[3])
                    case ("club sale", m, p, c):
                        await record_sale(
                            s,
                            PROGRAM,
                            Sale(
                                member_id=members[m],
                                partner=PARTNERS[p],
                                amount=Decimal(c) / 100,
                                key=f"k{n}",
                                now=now,
                            ),
                        )
                event(f"{op[0]}: done")
            except errors.DomainError as error:
                event(f"{op[0]}: {error.code}")
                kind = "adjust+" if op[0] == "adjust" and op[2] > 0 else op[0]
                kind = "adjust-" if op[0] == "adjust" and op[2] < 0 else kind
                allowed = ALLOWED[kind]
                assert isinstance(error, allowed), (n, op, repr(error))
            pending, held, mismatched = (await s.execute(OPEN)).one()
            await s.rollback()
            assert (pending, mismatched) == (held, 0), (n, op, pending, held, mismatched)
            violations = await ledger_violations(s)
            assert not violations, (n, op, violations)
            cards = (await s.execute(CARDS)).one()
            await s.rollback()
            assert cards == (0, 0, 0), (n, op, cards)
            await _check_club(s, club, (n, op))


async def _check_club(s: AsyncSession, club: ClubModel, where: object) -> None:
    """The club's tables against the model: one payment row per charge; each account's
    membership ends where the model says; the welcome points posted at most once per
    account, and once to each person the model says had them, over all their accounts."""
    payments = await s.scalar(select(func.count()).select_from(ClubPayment))
    memberships = await s.scalar(select(func.count()).select_from(ClubMembership))
    rows = (await s.execute(CLUB_STATE)).all()
    await s.rollback()
    assert payments == len(club.charges), (where, payments, len(club.charges))
    assert memberships == len(club.ends), (where, memberships, club.ends)
    welcomes = {account: n for account, n, _ in rows}
    assert all(n <= 1 for n in welcomes.values()), (where, welcomes)
    assert {account: ends for account, _, ends in rows if ends is not None} == club.ends, where
    for person, accounts in club.accounts.items():
        paid = {a for a in accounts if welcomes[a]}
        expected = {club.welcomed[person]} if person in club.welcomed else set()
        assert paid == expected, (where, person, paid, expected)


async def _pending(s: AsyncSession, public_id: str, now: datetime) -> bool:
    """The request waits for an answer and has not timed out (so confirming it must post)."""
    row = (
        await s.execute(
            text(
                "SELECT status = 'pending' AND expires_at > :now FROM redemption_requests"
                " WHERE public_id = :id"
            ),
            {"id": public_id, "now": now},
        )
    ).scalar_one()
    await s.rollback()
    return bool(row)


async def _claimable(s: AsyncSession, code: str, partner_id: int | None, now: datetime) -> bool:
    """The voucher is open, not expired and honoured at this partner (so claiming it must
    post)."""
    row = (
        await s.execute(
            text(
                "SELECT status = 'open' AND expires_at > :now AND partner_id = :partner"
                " FROM vouchers WHERE code = :code"
            ),
            {"code": code, "now": now, "partner": partner_id},
        )
    ).scalar_one()
    await s.rollback()
    return bool(row)
