"""Stamp cards: "the tenth coffee free".

A sale that charged at least `min_purchase` (its amount less its tier discount: `charged`,
the money its refunds count from too) at one of a card's partners adds one stamp (at most
`per_day` a business day, in the program's time zone; with `distinct_partners`, each stamp
on a card from another partner): a `stamp` posting in the card's unit, the card's pool -1 →
the member's stamps account +1, in the sale's own database transaction and keyed by the
sale's key, so it is stored with the sale or not at all, and once. The stamp that fills the
card is followed, in the same transaction, by `card_filled`: the card's stamps go back to
the pool and its reward is given (points from the partner where the card filled, as earned
points are, or a voucher that partner funds); the member's next stamp starts a new card.

A refund takes a sale's stamp back (a `reverse` posting in the stamps unit that reverses the
stamp) when it leaves less than `min_purchase` of the money the sale charged and the card
still holds the stamp: the sale and its refunds weigh the same money. Once the card has
filled since, the stamp went into the reward: it stays, and so does the reward, and the
refund says so. Stamps lapse `expire_days` after the card's last stamp
(`stamps_lapsed`, a daily job); the member is told a few days before, once per card, and
when they lapse (db/usecases/stamp_lapses.py).

A card's cycle (one card, from empty to full or lapsed) is named by the transaction that
started it: the account's last `card_filled` or `stamps_lapsed` (0 for the first card).
A stamp card's postings (a stamp, its reversal, a fill, a lapse) name no member: the
stamps account does. So a member's points history lists only the fills that paid points
(they touch the wallet), and a sale's own figures (/shift, tiers) are not changed.

Locks: every posting that changes a member's stamps holds their wallet first (a sale and a
refund post to it; the lapse job locks it for this), then their stamps account, then the
card's pool (ledger_post locks it with the posting): the wallet keeps two changes of one
member's card apart, and the one order keeps them from deadlocking.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from db.ledger.models import TxKind, VoucherSource
from db.ledger.writer import Leg, Lot, fingerprint, post
from db.rules.discounts import charged
from db.rules.program import Program, StampCard
from db.usecases.members import expiry_for
from db.usecases.partners import stamp_unit
from db.usecases.vouchers import issue_voucher

# What a sale did on one card.
ADDED = "added"  # a stamp
FILLED = "filled"  # the stamp that filled the card: its reward was given, a new card starts
BELOW_MIN = "below_min"  # no stamp: the purchase is under the card's min_purchase
DAILY_LIMIT = "daily_limit"  # no stamp: the card's per_day stamps were given today
PARTNER_DONE = "partner_done"  # no stamp: a tour card already has this partner's stamp
# The card after the sale's promotions' stamps (`stamps` on it now); the fills those stamps
# made come before it, each a FILLED news with its reward.
PROMOTED = "promoted"


@dataclass(frozen=True, slots=True)
class StampNews:
    """What a sale did on one stamp card, for the cashier and the member."""

    card: str  # the card's slug
    status: str  # ADDED, FILLED, or why no stamp was added
    stamps: int  # the card's stamps after the sale (a filled card: all of them)
    of: int  # stamps that fill the card
    reward_points: int = 0  # a filled card's reward in points
    voucher: str | None = None  # a filled card's voucher code
    reward: str | None = None  # and its reward's slug
    voucher_expires: datetime | None = None

    @property
    def stamped(self) -> bool:
        return self.status in (ADDED, FILLED, PROMOTED)

    def params(self) -> dict[str, Any]:
        """As an outbox notice keeps it (JSON)."""
        return {
            "card": self.card,
            "status": self.status,
            "stamps": self.stamps,
            "of": self.of,
            "reward_points": self.reward_points,
            "voucher": self.voucher,
            "reward": self.reward,
            "voucher_expires": self.voucher_expires.isoformat() if self.voucher_expires else None,
        }


@dataclass(frozen=True, slots=True)
class StampBack:
    """What a refund did to the stamp its sale added on one card."""

    card: str
    taken_back: bool  # False: the card was filled since; the stamp and its reward stay
    stamps: int  # the card's stamps now
    of: int
    filled_by_sale: bool = False  # not taken back: the refunded sale itself filled the card

    def params(self) -> dict[str, Any]:
        return {
            "card": self.card,
            "taken_back": self.taken_back,
            "stamps": self.stamps,
            "of": self.of,
            "filled_by_sale": self.filled_by_sale,
        }


def business_day(now: datetime, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """[start, end) of `now`'s day in the program's time zone."""
    day = now.astimezone(zone).date()
    return (
        datetime.combine(day, time(), tzinfo=zone),
        datetime.combine(day + timedelta(days=1), time(), tzinfo=zone),
    )


# The member's stamps account of one card, locked (FOR NO KEY UPDATE, as ledger_post locks),
# with the card's pool and what is on the card, in one statement: the cycle the card is in,
# the stamps kept (not taken back) in the business day, and when asked (they cost as much
# again) the partners of the card's kept stamps and its last kept stamp. Every posting that
# changes a member's stamps holds their wallet first (a sale and a refund post to it; the
# lapse job locks it for this), so the stamps account is never waited for here and the
# statement's snapshot is current.
_KEPT = """
    FROM entries AS e JOIN transactions AS t ON t.id = e.transaction_id
    WHERE e.account_id = a.id AND t.kind = 'stamp'
      AND NOT EXISTS (SELECT 1 FROM transactions AS r WHERE r.reverses_id = t.id)"""
_HOLD_SQL = f"""
    SELECT a.id, a.balance, c.id AS cycle,
           (SELECT p.id FROM accounts AS p
            WHERE p.kind = 'stamp_pool' AND p.unit = a.unit
              AND p.member_id IS NULL AND p.partner_id IS NULL) AS pool,
           (SELECT count(*) {_KEPT}
              AND t.created_at >= :day_start AND t.created_at < :day_end) AS today,
           {{partners}} AS partners, {{last_at}} AS last_at
    FROM accounts AS a
    CROSS JOIN LATERAL (
        SELECT coalesce(max(t.id), 0) AS id
        FROM entries AS e JOIN transactions AS t ON t.id = e.transaction_id
        WHERE e.account_id = a.id AND t.kind IN ('card_filled', 'stamps_lapsed')
    ) AS c
    WHERE a.member_id = :member AND a.kind = 'stamps' AND a.unit = :unit
    {{lock}}
    """
_HOLD = {
    (partners, last, lock): text(
        _HOLD_SQL.format(
            partners=f"(SELECT array_agg(DISTINCT t.partner_id) {_KEPT} AND t.id > c.id)"
            if partners
            else "NULL::bigint[]",
            last_at=f"(SELECT max(t.created_at) {_KEPT} AND t.id > c.id)"
            if last
            else "NULL::timestamptz",
            lock="FOR NO KEY UPDATE OF a" if lock else "",
        )
    )
    for partners in (False, True)
    for last in (False, True)
    for lock in (False, True)
}
_CREATE = text(
    """
    INSERT INTO accounts (kind, unit, member_id) VALUES ('stamps', :unit, :member)
    ON CONFLICT (member_id, unit) WHERE kind = 'stamps' DO NOTHING
    RETURNING id,
        (SELECT p.id FROM accounts AS p
         WHERE p.kind = 'stamp_pool' AND p.unit = :unit
           AND p.member_id IS NULL AND p.partner_id IS NULL) AS pool
    """
)


@dataclass(frozen=True, slots=True)
class HeldCard:
    """A member's stamps account of one card, locked, and what is on the card."""

    account: int
    pool: int  # the card's pool
    balance: int  # stamps on the card
    cycle: int  # the transaction that started the card (0: the member's first card)
    today: int  # stamps kept (not taken back) in the business day, on any of its cards
    partners: frozenset[int]  # partner ids of the card's kept stamps (if asked for)
    last_at: datetime | None  # the card's last kept stamp (if asked for)


async def hold_card(
    session: AsyncSession,
    member_id: int,
    card: StampCard,
    now: datetime,
    zone: ZoneInfo,
    *,
    create: bool = False,
    last: bool = False,
    lock: bool = True,
) -> HeldCard | None:
    """The member's stamps account of `card`, locked, with what is on it (the business day
    is `now`'s in `zone`; the partners of its stamps on a tour card; its last stamp if
    `last`); created (empty) when `create` and the member has none yet, else None. The
    caller holds the member's wallet (see _HOLD). Not `lock`: only read (a quote)."""
    unit = stamp_unit(card.slug)
    start, end = business_day(now, zone)
    params = {"member": member_id, "unit": unit, "day_start": start, "day_end": end}
    statement = _HOLD[card.distinct_partners, last, lock]
    row = (await session.execute(statement, params)).one_or_none()
    if row is None and create:
        made = (await session.execute(_CREATE, params)).one_or_none()
        if made is not None:
            return HeldCard(made.id, made.pool, 0, 0, 0, frozenset(), None)
        # Created by a posting that has committed since (it held the wallet): read it.
        row = (await session.execute(statement, params)).one()
    if row is None:
        return None
    return HeldCard(
        row.id,
        row.pool,
        row.balance,
        row.cycle,
        row.today,
        frozenset(row.partners or ()),
        row.last_at,
    )


def no_stamp(card: StampCard, held: HeldCard, partner_id: int) -> str | None:
    """Why a sale at `partner_id` that charged enough adds no stamp to `card` as `held` is
    (DAILY_LIMIT, PARTNER_DONE), or None: it adds one."""
    if card.per_day and held.today >= card.per_day:
        return DAILY_LIMIT
    if card.distinct_partners and partner_id in held.partners:
        return PARTNER_DONE
    return None


async def would_stamp(
    session: AsyncSession,
    program: Program,
    *,
    member_id: int,
    partner_id: int,
    partner: str,
    charged: Decimal,
    now: datetime,
) -> tuple[StampNews, ...]:
    """What a sale of the member's at `partner` that charged `charged` would do on its
    stamp cards now, as add_stamps decides it (a quote: the cards are read, not locked,
    nothing is written; the sale decides again). A card it would fill says FILLED, with
    the reward it would give (its voucher is made only by the sale)."""
    news: list[StampNews] = []
    for card in program.stamp_cards_at(partner):
        if charged < card.min_purchase:
            news.append(StampNews(card.slug, BELOW_MIN, 0, card.stamps))
            continue
        held = await hold_card(
            session, member_id, card, now, program.program.zone, lock=False
        ) or HeldCard(0, 0, 0, 0, 0, frozenset(), None)
        if (refused := no_stamp(card, held, partner_id)) is not None:
            news.append(StampNews(card.slug, refused, held.balance, card.stamps))
        elif held.balance + 1 < card.stamps:
            news.append(StampNews(card.slug, ADDED, held.balance + 1, card.stamps))
        else:
            news.append(
                StampNews(
                    card.slug,
                    FILLED,
                    card.stamps,
                    card.stamps,
                    reward_points=card.reward_points,
                    reward=card.reward,
                )
            )
    return tuple(news)


async def add_stamps(
    session: AsyncSession,
    program: Program,
    cards: Sequence[StampCard],
    *,
    sale_id: int,
    sale_key: str,
    member_id: int,
    wallet_id: int,
    partner_id: int,
    partner: str,
    issued_id: int,
    amount: Decimal,
    discount: Decimal,
    now: datetime,
) -> tuple[tuple[StampNews, ...], int | None]:
    """The stamps a sale of `amount` with `discount` off just posted adds (inside its
    transaction; the caller commits): what it did on each card, and the wallet's balance
    after a reward in points (None: no points were given). A card's min_purchase is
    compared with what the sale charged, as its refunds compare it."""
    news: list[StampNews] = []
    balance: int | None = None
    basis = charged(amount, discount)
    for card in cards:
        if basis < card.min_purchase:  # decided without the database
            news.append(StampNews(card.slug, BELOW_MIN, 0, card.stamps))
            continue
        held = await hold_card(session, member_id, card, now, program.program.zone, create=True)
        assert held is not None
        if (refused := no_stamp(card, held, partner_id)) is not None:
            news.append(StampNews(card.slug, refused, held.balance, card.stamps))
            continue
        posted = await post(
            session,
            [Leg(held.account, 1), Leg(held.pool, -1)],
            kind=TxKind.STAMP,
            key=f"{sale_key}:stamp:{card.slug}",
            digest=fingerprint(TxKind.STAMP, sale_id, card.slug),
            partner_id=partner_id,
            related_id=sale_id,
            created_at=now,
        )
        # The sale was just posted under its own key (a replay never gets here), and only
        # this sale makes keys from it.
        assert posted is not None, f"{sale_key}:stamp:{card.slug} was posted already"
        stamps = posted.balances[held.account]
        if stamps < card.stamps:
            news.append(StampNews(card.slug, ADDED, stamps, card.stamps))
            continue
        filled, reward_balance = await _fill(
            session,
            program,
            card,
            held,
            stamps,
            sale_id=sale_id,
            sale_key=sale_key,
            member_id=member_id,
            wallet_id=wallet_id,
            partner_id=partner_id,
            partner=partner,
            issued_id=issued_id,
            now=now,
        )
        news.append(filled)
        if reward_balance is not None:
            balance = reward_balance
    return tuple(news), balance


async def _fill(
    session: AsyncSession,
    program: Program,
    card: StampCard,
    held: HeldCard,
    stamps: int,
    *,
    sale_id: int,
    sale_key: str,
    member_id: int,
    wallet_id: int,
    partner_id: int,
    partner: str,
    issued_id: int,
    now: datetime,
    key: str | None = None,
    related_id: int | None = None,
) -> tuple[StampNews, int | None]:
    """The card is full: its stamps back to the pool and its reward, funded by the partner
    where it filled. A new card starts at 0. `key` and `related_id` (default: the sale's)
    name a fill that a promotion's stamps made."""
    legs = [Leg(held.account, -stamps), Leg(held.pool, stamps)]
    lots = []
    points = card.reward_points
    if points:
        legs += [Leg(issued_id, -points), Leg(wallet_id, points)]
        lots.append(Lot(member_id, points, earned_at=now, expires_at=expiry_for(program, now)))
    posted = await post(
        session,
        legs,
        lots,
        kind=TxKind.CARD_FILLED,
        key=key or f"{sale_key}:filled:{card.slug}",
        digest=fingerprint(
            TxKind.CARD_FILLED, sale_id, card.slug, stamps, *([key] if key else [])
        ),
        partner_id=partner_id,
        related_id=related_id or sale_id,
        created_at=now,
    )
    assert posted is not None  # its stamp was posted just now under the same sale's key
    if card.reward is None:
        return StampNews(card.slug, FILLED, stamps, card.stamps, reward_points=points), (
            posted.balances[wallet_id]
        )
    voucher = await issue_voucher(
        session,
        program,
        member_id=member_id,
        reward=card.reward,
        source=VoucherSource.STAMP_CARD,
        now=now,
        funder=partner,
        source_tx_id=posted.transaction_id,
    )
    return (
        StampNews(
            card.slug,
            FILLED,
            stamps,
            card.stamps,
            voucher=voucher.code,
            reward=card.reward,
            voucher_expires=voucher.expires_at,
        ),
        None,
    )


# The stamps on the card of the stamps account `a` right after the posting `until`: the sum
# of the account's entries up to it. Every posting that changes a member's stamps is opened
# while it holds their wallet (see _HOLD), so the account's postings are numbered in the
# order they were made, and those up to `until` are all that had been made then.
STAMPS_UNTIL = """(SELECT coalesce(sum(s.amount), 0) FROM entries AS s
            WHERE s.account_id = a.id AND s.transaction_id <= {until})"""


# The stamps and fills a sale posted on the member's cards (found by the stamps accounts,
# which are indexed by member, not by scanning transactions for related_id), with the points
# or the voucher a fill gave and the card's stamps right after the stamp: the account's
# entries up to it (STAMPS_UNTIL: a replay says what the sale said, whatever came since).
_OF_SALE = text(
    f"""
    SELECT a.unit, t.id, t.kind, t.related_id,
           (SELECT e2.amount FROM entries AS e2 JOIN accounts AS w ON w.id = e2.account_id
            WHERE e2.transaction_id = t.id AND w.kind = 'member' LIMIT 1) AS wallet_points,
           (SELECT v.code FROM vouchers AS v WHERE v.source_tx_id = t.id) AS voucher,
           (SELECT v.reward FROM vouchers AS v WHERE v.source_tx_id = t.id) AS reward,
           (SELECT v.expires_at FROM vouchers AS v WHERE v.source_tx_id = t.id) AS expires,
           {STAMPS_UNTIL.format(until="t.id")} AS position
    FROM accounts AS a
    JOIN entries AS e ON e.account_id = a.id
    JOIN transactions AS t ON t.id = e.transaction_id
    WHERE a.member_id = :member AND a.kind = 'stamps' AND a.unit = ANY(:units)
      AND (t.related_id = :sale AND t.kind IN ('stamp', 'card_filled', 'promotion')
           OR t.kind = 'card_filled'
              AND EXISTS (SELECT 1 FROM transactions AS p
                          WHERE p.id = t.related_id AND p.related_id = :sale
                            AND p.kind = 'promotion'))
    ORDER BY t.id
    """
)


async def sale_news(
    session: AsyncSession,
    cards: Sequence[StampCard],
    *,
    sale_id: int,
    member_id: int,
    amount: Decimal,
    discount: Decimal | None,
) -> tuple[StampNews, ...]:
    """What an earlier sale did on its partner's cards, rebuilt from the ledger (a replay):
    its stamp (and how many the card had with it) or the fill, as posted. A card it added
    no stamp to is told only when the purchase was under the card's minimum (why else it
    had none is not kept)."""
    units = [stamp_unit(c.slug) for c in cards]
    rows = (
        await session.execute(_OF_SALE, {"member": member_id, "units": units, "sale": sale_id})
    ).all()
    news = []
    for card in cards:
        mine = [r for r in rows if r.unit == stamp_unit(card.slug)]
        # The sale's own (related to it), then its promotions' (a fill of theirs is related
        # to their posting).
        own = [r for r in mine if r.kind != TxKind.PROMOTION and r.related_id == sale_id]
        promoted = [r for r in mine if r not in own]
        fill = next((r for r in own if r.kind == TxKind.CARD_FILLED), None)
        stamp = next((r for r in own if r.kind == TxKind.STAMP), None)
        if fill is not None:
            news.append(_filled_news(card, fill))
        elif stamp is not None:
            news.append(StampNews(card.slug, ADDED, int(stamp.position), card.stamps))
        elif charged(amount, discount) < card.min_purchase:
            news.append(StampNews(card.slug, BELOW_MIN, 0, card.stamps))
        if promoted:
            news += [_filled_news(card, r) for r in promoted if r.kind == TxKind.CARD_FILLED]
            news.append(StampNews(card.slug, PROMOTED, int(promoted[-1].position), card.stamps))
    return tuple(news)


def _filled_news(card: StampCard, fill: Any) -> StampNews:
    """A fill read back from the ledger (_OF_SALE's row)."""
    return StampNews(
        card.slug,
        FILLED,
        card.stamps,
        card.stamps,
        reward_points=int(fill.wallet_points or 0),
        voucher=fill.voucher,
        reward=fill.reward,
        voucher_expires=fill.expires,
    )


def with_promotion_stamps(
    news: Sequence[StampNews], promoted: Sequence[PromotionStamps]
) -> tuple[StampNews, ...]:
    """A sale's news on its cards with what its promotions' stamps did on them: after each
    card's own news, the fills those stamps made (each with its reward) and the card as it
    is after all of them (as sale_news reads it back)."""
    slugs = list(dict.fromkeys([n.card for n in news] + [p.card for p in promoted]))
    merged: list[StampNews] = []
    for slug in slugs:
        merged += [n for n in news if n.card == slug]
        mine = [p for p in promoted if p.card == slug]
        if mine:
            merged += [f for p in mine for f in p.filled]
            merged.append(StampNews(slug, PROMOTED, mine[-1].stamps, mine[-1].of))
    return tuple(merged)


# The stamp a sale added on one card, under the stamps account's lock: whether a refund
# took it back already, and the first fill or lapse after it (the card it was on ended).
_STAMP_NOW = text(
    """
    SELECT EXISTS (SELECT 1 FROM transactions AS r WHERE r.reverses_id = :stamp) AS reversed,
           (SELECT t.kind FROM entries AS e JOIN transactions AS t ON t.id = e.transaction_id
            WHERE e.account_id = :account AND t.id > :stamp
              AND t.kind IN ('card_filled', 'stamps_lapsed')
            ORDER BY t.id LIMIT 1) AS ended_by
    """
)
_STAMPS_OF_SALE = text(
    """
    SELECT a.unit, t.id FROM accounts AS a
    JOIN entries AS e ON e.account_id = a.id
    JOIN transactions AS t ON t.id = e.transaction_id
    WHERE a.member_id = :member AND a.kind = 'stamps' AND a.unit = ANY(:units)
      AND t.related_id = :sale AND t.kind = 'stamp'
    """
)


def refund_takes_stamp(card: StampCard, left: Decimal) -> bool:
    """A refund that leaves `left` of the money a sale charged (`charged`, less its refunds)
    takes the sale's stamp on `card` back: all of it refunded, or what is left no longer
    reaches the card's minimum, which the sale's stamp was weighed against too."""
    return left == 0 or left < card.min_purchase


async def take_back_stamps(
    session: AsyncSession,
    program: Program,
    cards: Sequence[StampCard],
    *,
    sale_id: int,
    member_id: int,
    partner_id: int | None,
    refund_id: int,
    refund_key: str,
    left: Decimal,
    now: datetime,
) -> tuple[StampBack, ...]:
    """Inside a refund's transaction (just posted as `refund_id`, leaving `left` of the
    sale): take back the stamps the sale added, where refund_takes_stamp says so and the
    card still holds the stamp. A stamp on a card that has filled since stays (its reward
    was given and stays); one whose card lapsed since is gone already: neither is told as
    taken back."""
    due = [c for c in cards if refund_takes_stamp(c, left)]
    if not due:
        return ()
    stamps: dict[str, int] = dict(
        (
            await session.execute(
                _STAMPS_OF_SALE,
                {
                    "member": member_id,
                    "units": [stamp_unit(c.slug) for c in due],
                    "sale": sale_id,
                },
            )
        ).all()
    )
    done = []
    for card in due:
        stamp = stamps.get(stamp_unit(card.slug))
        if stamp is None:
            continue
        held = await hold_card(session, member_id, card, now, program.program.zone)
        assert held is not None  # the stamp is on it
        now_row = (
            await session.execute(_STAMP_NOW, {"stamp": stamp, "account": held.account})
        ).one()
        if now_row.reversed or now_row.ended_by == TxKind.STAMPS_LAPSED:
            continue
        if now_row.ended_by == TxKind.CARD_FILLED:
            by_sale = stamp_unit(card.slug) in await _filled_by(session, member_id, sale_id)
            done.append(StampBack(card.slug, False, held.balance, card.stamps, by_sale))
            continue
        posted = await post(
            session,
            [Leg(held.account, -1), Leg(held.pool, 1)],
            kind=TxKind.REVERSE,
            key=f"{refund_key}:stamp:{card.slug}",
            digest=fingerprint("stamp-back", stamp, refund_id),
            partner_id=partner_id,
            reverses_id=stamp,
            related_id=refund_id,
            created_at=now,
        )
        if posted is not None:
            done.append(StampBack(card.slug, True, posted.balances[held.account], card.stamps))
    return tuple(done)


# For a replay of a refund: the stamp the sale added on each card, whether this refund took
# it back, whether the card had filled before this refund, and the card's stamps as the
# refund left them (right after its taking back, else right after the refund itself).
_BACK_OF_REFUND = text(
    f"""
    SELECT a.unit,
           {STAMPS_UNTIL.format(until="coalesce(back.id, :refund)")} AS stamps,
           back.id IS NOT NULL AS taken_back,
           EXISTS (SELECT 1 FROM entries AS eb JOIN transactions AS b ON b.id = eb.transaction_id
                   WHERE eb.account_id = a.id AND b.id > t.id AND b.id < :refund
                     AND b.kind = 'card_filled'
                     AND NOT EXISTS (
                         SELECT 1 FROM entries AS el
                         JOIN transactions AS l ON l.id = el.transaction_id
                         WHERE el.account_id = a.id AND l.id > t.id AND l.id < b.id
                           AND l.kind = 'stamps_lapsed')) AS filled_before,
           EXISTS (SELECT 1 FROM transactions AS r
                   WHERE r.reverses_id = t.id AND r.id < :refund) AS reversed_before
    FROM accounts AS a
    JOIN entries AS e ON e.account_id = a.id
    JOIN transactions AS t ON t.id = e.transaction_id
    LEFT JOIN transactions AS back ON back.reverses_id = t.id AND back.related_id = :refund
    WHERE a.member_id = :member AND a.kind = 'stamps' AND a.unit = ANY(:units)
      AND t.related_id = :sale AND t.kind = 'stamp'
    """
)


async def refund_news(
    session: AsyncSession,
    cards: Sequence[StampCard],
    *,
    sale_id: int,
    member_id: int,
    refund_id: int,
    left: Decimal,
) -> tuple[StampBack, ...]:
    """What an earlier refund did to its sale's stamps, rebuilt from the ledger (a replay)."""
    due = [c for c in cards if refund_takes_stamp(c, left)]
    if not due:
        return ()
    rows = (
        await session.execute(
            _BACK_OF_REFUND,
            {
                "member": member_id,
                "units": [stamp_unit(c.slug) for c in due],
                "sale": sale_id,
                "refund": refund_id,
            },
        )
    ).all()
    by_unit = {r.unit: r for r in rows}
    news = []
    for card in due:
        row = by_unit.get(stamp_unit(card.slug))
        if row is None:
            continue
        if row.taken_back:
            news.append(StampBack(card.slug, True, row.stamps, card.stamps))
        elif row.filled_before and not row.reversed_before:
            by_sale = row.unit in await _filled_by(session, member_id, sale_id)
            news.append(StampBack(card.slug, False, row.stamps, card.stamps, by_sale))
    return tuple(news)


# A member's stamps accounts that hold stamps, locked (after their wallet: see _HOLD), each
# with its card's pool.
_HELD_BY_MEMBER = text(
    """
    SELECT a.id, a.unit, a.balance,
           (SELECT p.id FROM accounts AS p
            WHERE p.kind = 'stamp_pool' AND p.unit = a.unit
              AND p.member_id IS NULL AND p.partner_id IS NULL) AS pool
    FROM accounts AS a
    WHERE a.member_id = :member AND a.kind = 'stamps' AND a.balance > 0
    ORDER BY a.id
    FOR NO KEY UPDATE OF a
    """
)


# The stamps units (cards) whose fill a sale posted (card_filled is related to its sale).
_FILLED_BY = text(
    """
    SELECT a.unit FROM accounts AS a
    JOIN entries AS e ON e.account_id = a.id
    JOIN transactions AS t ON t.id = e.transaction_id
    WHERE a.member_id = :member AND a.kind = 'stamps'
      AND t.kind = 'card_filled' AND t.related_id = :sale
    """
)


async def forfeit_stamps(session: AsyncSession, member_id: int, now: datetime) -> int:
    """A deleted member's stamps, on every card (the program's or one it no longer has),
    back to each card's pool: a `stamps_lapsed` posting per card keyed `forfeit:<member>:
    <unit>` (the prefix of the deletion's points forfeiture), inside the deletion's
    transaction, which holds the member's wallet. Their card ends there: a later refund of
    one of their sales finds the stamp gone, as after a lapse. Returns the stamps forfeited."""
    total = 0
    for row in (await session.execute(_HELD_BY_MEMBER, {"member": member_id})).all():
        posted = await post(
            session,
            [Leg(row.id, -row.balance), Leg(row.pool, row.balance)],
            kind=TxKind.STAMPS_LAPSED,
            key=f"forfeit:{member_id}:{row.unit}",
            digest=fingerprint("forfeit-stamps", member_id, row.unit, row.balance),
            reason="account deleted at the member's request",
            created_at=now,
        )
        assert posted is not None  # the key is this member's, and they are deleted once
        total += row.balance
    return total


async def _filled_by(session: AsyncSession, member_id: int, sale_id: int) -> set[str]:
    """The cards (their stamps units) that sale `sale_id` filled: a refund of it leaves their
    stamp, the sale's own reward given."""
    rows = await session.execute(_FILLED_BY, {"member": member_id, "sale": sale_id})
    return set(rows.scalars())


# Promotions' stamps (db/usecases/promotions.py): a promotion with `stamps = n` gives a sale n
# more stamps on each of its partner's ordinary cards (not on a tour card, whose stamps are
# one per partner). They are a `promotion` posting in the card's unit (related_id: the
# sale), apart from the sale's own `stamp`: per_day counts the sale's stamps only, and the
# sale's stamp stays the one its refunds weigh. Stamps that fill a card fill it (`_fill`,
# related to the promotion's posting), and those left over start the next card.


@dataclass(frozen=True, slots=True)
class PromotionStamps:
    """What a promotion's stamps did on one card: `added` stamps, `stamps` on the card
    after them (of `of`), and the fills they made (a fill's reward points or voucher)."""

    card: str
    added: int
    stamps: int
    of: int
    filled: tuple[StampNews, ...] = ()


def promotion_cards(program: Program, partner: str) -> list[StampCard]:
    """The cards a promotion's stamps go on at `partner`: its ordinary (not tour) cards
    (the program refuses a stamps promotion at a partner without one)."""
    return program.promotion_cards_at(partner)


async def add_promotion_stamps(
    session: AsyncSession,
    program: Program,
    *,
    promotion: str,
    count: int,
    sale_id: int,
    sale_key: str,
    member_id: int,
    wallet_id: int,
    partner_id: int,
    partner: str,
    issued_id: int,
    now: datetime,
) -> tuple[tuple[PromotionStamps, ...], int | None]:
    """`count` stamps of `promotion` on each of `partner`'s ordinary cards, inside the sale's
    transaction (the caller holds the member's wallet: the sale posted to it). Returns what
    they did on each card and the wallet's balance after a fill's points (None: none).
    Like a stamp card's own postings, they name no member (the stamps account does)."""
    done: list[PromotionStamps] = []
    balance: int | None = None
    for card in promotion_cards(program, partner):
        left, step, fills = count, 0, []
        held = await hold_card(session, member_id, card, now, program.program.zone, create=True)
        assert held is not None
        stamps = held.balance
        while left:
            give = min(left, card.stamps - stamps)
            posted = await post(
                session,
                [Leg(held.account, give), Leg(held.pool, -give)],
                kind=TxKind.PROMOTION,
                key=f"{sale_key}:promo:{promotion}:{card.slug}:{step}",
                digest=fingerprint(TxKind.PROMOTION, sale_id, promotion, card.slug, step, give),
                partner_id=partner_id,
                related_id=sale_id,
                reason=promotion,
                created_at=now,
            )
            assert posted is not None  # keys made from the sale's, just posted
            stamps = posted.balances[held.account]
            left -= give
            if stamps >= card.stamps:
                news, reward_balance = await _fill(
                    session,
                    program,
                    card,
                    held,
                    stamps,
                    sale_id=sale_id,
                    sale_key=sale_key,
                    member_id=member_id,
                    wallet_id=wallet_id,
                    partner_id=partner_id,
                    partner=partner,
                    issued_id=issued_id,
                    now=now,
                    key=f"{sale_key}:promo:{promotion}:filled:{card.slug}:{step}",
                    related_id=posted.transaction_id,
                )
                fills.append(news)
                if reward_balance is not None:
                    balance = reward_balance
                stamps = 0
            step += 1
        done.append(PromotionStamps(card.slug, count, stamps, card.stamps, tuple(fills)))
    return tuple(done), balance


# A sale's promotion stamps on the member's cards (by their stamps accounts), and whether a
# refund took each back already or its card filled or lapsed since.
_PROMOTION_STAMPS = text(
    """
    SELECT a.id AS account, a.unit, t.id, e.amount,
           EXISTS (SELECT 1 FROM transactions AS r WHERE r.reverses_id = t.id) AS reversed,
           EXISTS (SELECT 1 FROM entries AS e2 JOIN transactions AS t2 ON t2.id = e2.transaction_id
                   WHERE e2.account_id = a.id AND t2.id > t.id
                     AND t2.kind IN ('card_filled', 'stamps_lapsed')) AS ended
    FROM accounts AS a
    JOIN entries AS e ON e.account_id = a.id
    JOIN transactions AS t ON t.id = e.transaction_id
    WHERE a.member_id = :member AND a.kind = 'stamps'
      AND t.related_id = :sale AND t.kind = 'promotion' AND t.reason = :promotion
    ORDER BY t.id
    """
)


async def take_back_promotion_stamps(
    session: AsyncSession,
    program: Program,
    *,
    promotion: str,
    sale_id: int,
    member_id: int,
    refund_id: int,
    refund_key: str,
    now: datetime,
) -> int:
    """On a full refund, inside its transaction (the caller holds the member's wallet): the
    stamps `promotion` gave the sale, taken back from each card that still holds them (as a
    sale's own stamp: a card that filled or lapsed since keeps them, and its reward stays).
    Returns how many were taken back."""
    rows = (
        await session.execute(
            _PROMOTION_STAMPS, {"member": member_id, "sale": sale_id, "promotion": promotion}
        )
    ).all()
    taken = 0
    for row in rows:
        if row.reversed or row.ended:
            continue
        card = program.stamp_card(row.unit.removeprefix("stamps:"))
        if card is None:
            continue
        held = await hold_card(session, member_id, card, now, program.program.zone)
        if held is None or held.balance < row.amount:
            continue
        posted = await post(
            session,
            [Leg(held.account, -row.amount), Leg(held.pool, row.amount)],
            kind=TxKind.REVERSE,
            key=f"{refund_key}:promo:{promotion}:{row.id}",
            digest=fingerprint("promotion-stamps-back", row.id, refund_id),
            reverses_id=row.id,
            related_id=refund_id,
            reason=promotion,
            created_at=now,
        )
        if posted is not None:
            taken += row.amount
    return taken
