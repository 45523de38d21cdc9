"""Promotions at the till: what the program's `[[promotions]]` give a sale, posted in the
sale's own database transaction (db/usecases/purchases.py post_purchase), and what a refund
takes back (post_reversal). What applies is decided in db/rules/promotions.py.

A sale: `prepare` (before the sale is posted) reads the member's facts a promotion may ask
about, in one query, and only at a partner with a promotion that runs at the sale's moment
for its amount (a partner with none costs no query). When a promotion that matches is paid
by another account than the selling partner's (other partners, the program), whatever the
member's tier (a concurrent sale may raise it before `apply` decides), it reads the funders'
accounts. It locks none of them: no posting locks a partner's or the program's account
(their balance is the sum of their entries, migration 0022), so two sales that fund each
other's promotions neither wait for nor deadlock with each other. `apply` (after the sale
and its stamps are posted) decides again at the sale's `now`, at the tier the sale was
posted at: so what is applied, and said, is what held when the sale was stored (a promotion
that ended between the panel and the posting is not applied). `max_per_member` is counted in
promotion_uses by one atomic statement per promotion (its row only grows while below the
limit), so two concurrent sales cannot both take the last use. Each promotion's points are a
`promotion` transaction (related_id: the sale; key: the sale's key + `:promo:<slug>`) from
its funders' `partner_issued` accounts in their split (db.rules.promotions.split) or from
the program's account, to the member's wallet, as a point lot expiring like the sale's. Its
stamps go on the selling partner's ordinary stamp cards (db/usecases/stamps.py); its voucher
is funded by its one funding partner, or by the program (db/usecases/vouchers.py,
voucher_claims.py). What each promotion gave is kept in promotion_awards, so a replay of the
sale says exactly what the posting said.

A refund takes back what the refunded money earned through promotions, in proportion, as
the sale's own points (db.rules.promotions.refunded_part), each funder's part back to it; a
member who spent those points already: the points they cannot return are a shortfall, kept
from the cash as the sale's own (purchases.cash_back); the selling partner, which kept their
value, pays them back from its partner_issued account to the award's other funders (or the
program), so each funder still gets back all its part. A full refund voids the sale's
unclaimed promotion vouchers (a claimed one stays: its reward was given) and takes back its
promotion stamps from cards that still hold them. Uses counted in promotion_uses are not
given back: a refunded sale still used its promotion (a member cannot buy, refund and buy
again to get a once-only bonus twice).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import AsyncSession

from db.ledger.models import AccountKind, TxKind, Voucher, VoucherSource
from db.ledger.writer import Leg, Lot, fingerprint, post, system_account
from db.rules import club as club_rules
from db.rules import promotions as rules
from db.rules.lines import Line
from db.rules.program import Program, Promotion
from db.rules.promotions import Shopper
from db.usecases.members import MemberInfo, expiry_for
from db.usecases.partners import PartnerAccounts
from db.usecases.stamps import (
    PromotionStamps,
    add_promotion_stamps,
    take_back_promotion_stamps,
    with_promotion_stamps,
)
from db.usecases.vouchers import issue_voucher

if TYPE_CHECKING:
    from db.usecases.purchases import PurchaseResult


@dataclass(frozen=True, slots=True)
class Awarded:
    """What one promotion gave a sale, for the cashier, the member and the replay."""

    promotion: str  # its slug
    title: str  # its title (the program's identity; the views show the reader's language)
    points: int = 0  # a multiplier's part or a bonus
    stamps: int = 0  # stamps added on each of the partner's ordinary cards
    multiplier: Decimal | None = None  # "×2" when the points are a multiplier's part
    voucher: str | None = None  # the voucher's code
    reward: str | None = None  # and its reward's slug
    voucher_expires: datetime | None = None

    def params(self) -> dict[str, Any]:
        """As an outbox notice keeps it (JSON)."""
        return {
            "promotion": self.promotion,
            "title": self.title,
            "points": self.points,
            "stamps": self.stamps,
            "multiplier": str(self.multiplier) if self.multiplier is not None else None,
            "voucher": self.voucher,
            "reward": self.reward,
            "voucher_expires": self.voucher_expires.isoformat() if self.voucher_expires else None,
        }


@dataclass(frozen=True, slots=True)
class PromotionBack:
    """What a refund took back of one promotion's award."""

    promotion: str
    title: str
    points: int = 0  # points taken from the member's wallet, back to the funders
    shortfall: int = 0  # points due back that the member had spent (kept from the cash)
    stamps: int = 0  # promotion stamps taken back from the member's cards
    voucher: str | None = None  # the award's voucher, when the refund was full
    voucher_status: str | None = None  # "voided", or "claimed" (it stays), or as it stood
    # The shortfall's points the selling partner's account paid back to the award's funders
    # (it kept their value from the cash): the shortfall, when another than it funded it.
    repaid: int = 0

    def params(self) -> dict[str, Any]:
        return {
            "promotion": self.promotion,
            "title": self.title,
            "points": self.points,
            "shortfall": self.shortfall,
            "stamps": self.stamps,
            "voucher": self.voucher,
            "voucher_status": self.voucher_status,
            "repaid": self.repaid,
        }


@dataclass(frozen=True, slots=True)
class Prepared:
    """The member's facts read before the sale, and the funders' accounts."""

    shopper: Shopper
    locked: frozenset[str | None]  # the funders whose accounts were read (None: program)
    # Their partner_issued accounts (None: the program's).
    funder_accounts: tuple[tuple[str | None, int], ...] = ()
    lines: tuple[Line, ...] = ()  # the sale's itemised lines, for `apply` to decide on


def candidates(
    program: Program,
    partner: str,
    charged: Decimal,
    now: datetime,
    lines: Sequence[Line] = (),
) -> list[Promotion]:
    """The promotions at `partner` that run at `now` for a sale charging `charged` with its
    itemised `lines`, whoever the member is (what `matching` can pick from)."""
    at = rules.local(now, program.program.zone)
    return [
        p
        for p in program.promotions_at(partner)
        if rules.in_sale(p, charged, lines) and rules.runs_on(p, at)
    ]


# A member's purchases: the sale kinds, stated once (TxKind.SALES).
_SALES = TxKind.sql_in("t.kind", TxKind.SALES)
_HISTORY = f""",
       NOT EXISTS (SELECT 1 FROM transactions AS t
                   WHERE t.member_id = m.id AND {_SALES}) AS first_ever,
       NOT EXISTS (SELECT 1 FROM transactions AS t
                   WHERE t.member_id = m.id AND {_SALES}
                     AND t.partner_id = (SELECT id FROM partners WHERE slug = :partner))
           AS first_at_partner,
       (SELECT max(t.created_at) FROM transactions AS t
        WHERE t.member_id = m.id AND {_SALES}) AS last_purchase_at"""
# The end of the member's club membership, if they ever had one: whether they are in the
# club at the sale's moment (`who.club`; their club discount) is db/rules/club.py's `active`.
_CLUB = """,
       (SELECT c.ends_at FROM club_memberships AS c WHERE c.member_id = m.id) AS club_ends_at"""
_FACTS_SQL = """
    SELECT m.tier, m.joined_at, m.birthday{club}{history}{uses}
    FROM members AS m WHERE m.id = :member AND m.deleted_at IS NULL
    {lock}
    """
_USES = """,
       (SELECT coalesce(jsonb_object_agg(u.promotion, u.uses), '{}') FROM promotion_uses AS u
        WHERE u.member_id = m.id) AS uses"""
# The member's facts (and, when asked, their purchases before this sale), with their row
# locked as ledger_sale locks it (before any account: see lock_members).
_FACTS = {
    history: text(
        _FACTS_SQL.format(
            club=_CLUB, history=_HISTORY if history else "", uses="", lock="FOR KEY SHARE OF m"
        )
    )
    for history in (0, 1)
}
# For the till's panel: the same facts and the member's promotion uses, read, not locked.
_PREVIEW = {
    history: text(
        _FACTS_SQL.format(club=_CLUB, history=_HISTORY if history else "", uses=_USES, lock="")
    )
    for history in (0, 1)
}
# The member's club status alone, under the same lock (a sale whose promotions read no facts).
_CLUB_ALONE = text(_FACTS_SQL.format(club=_CLUB, history="", uses="", lock="FOR KEY SHARE OF m"))
# The accounts a sale's promotions are paid from: the funders', the program's (not locked:
# see the module's doc).
_FUNDERS = text(
    """
    SELECT a.id, a.kind, p.slug FROM accounts AS a LEFT JOIN partners AS p ON p.id = a.partner_id
    WHERE (a.kind = 'partner_issued' AND p.slug = ANY(:funders))
       OR (a.kind = 'program' AND a.unit = 'points' AND :program)
    """
)


async def prepare(
    session: AsyncSession,
    program: Program,
    *,
    member_id: int,
    partner: str,
    charged: Decimal,
    now: datetime,
    club: bool | None = None,
    lines: Sequence[Line] = (),
) -> Prepared | None:
    """Before a sale is posted (see the module's doc): None when no promotion at `partner`
    can apply to it (no query), else the member's facts, with the funders' accounts when a
    matching promotion is paid by others than the seller. A member not found: None (the
    sale refuses them). `club`: whether the member is in the club, when the caller read it
    already (False: the club's promotions are left out before anything is read); None, it
    is read here with the other facts. `lines`: the sale's itemised lines (if any)."""
    maybe = candidates(program, partner, charged, now, lines)
    if club is False:
        maybe = [p for p in maybe if not p.who.club]
    if not maybe:
        return None
    history = any(p.who.needs_history for p in maybe)
    row = (
        await session.execute(_FACTS[history], {"member": member_id, "partner": partner})
    ).one_or_none()
    if row is None:
        return None
    shopper = Shopper(
        tier=row.tier,
        joined_at=row.joined_at,
        birthday=row.birthday,
        club=club_rules.active(row.club_ends_at, now) if club is None else club,
        first_ever=bool(history and row.first_ever),
        first_at_partner=bool(history and row.first_at_partner),
        last_purchase_at=row.last_purchase_at if history else None,
    )
    # Whatever the member's tier: `apply` decides at the tier the sale is posted at, which a
    # sale of theirs elsewhere may raise meanwhile, so a promotion for some tiers is taken
    # as theirs here (reading an account more costs nothing).
    zone = program.program.zone
    at = rules.local(now, zone)
    paying: set[str | None] = set()
    for promo in maybe:
        if promo.effect.multiplier is None and not promo.effect.bonus_points:
            continue
        tiers = promo.who.tiers
        if rules.eligible(
            promo, replace(shopper, tier=str(tiers[0])) if tiers else shopper, at, zone
        ):
            paying.update(who for who, _ in rules.funders(promo, partner))
    paying.discard(partner)
    funder_accounts: list[tuple[str | None, int]] = []
    if paying:
        rows = await session.execute(
            _FUNDERS,
            {
                "funders": sorted(p for p in paying if p is not None),
                "program": None in paying,
            },
        )
        for row in rows:
            if row.kind == AccountKind.PROGRAM:
                funder_accounts.append((None, row.id))
            elif row.kind == AccountKind.PARTNER_ISSUED and row.slug in paying:
                funder_accounts.append((row.slug, row.id))
    return Prepared(shopper, frozenset(paying), tuple(funder_accounts), tuple(lines))


async def club_at_sale(
    session: AsyncSession, program: Program, *, member_id: int, now: datetime
) -> bool:
    """Whether the member is in the club at `now`, for a sale whose promotions read no facts
    (prepare returned None): read under the member's lock as prepare reads it, and only when
    it changes the sale (the club gives a discount; its promotions are read with the facts)."""
    if program.club is None or not program.club.discount_percent:
        return False
    row = (await session.execute(_CLUB_ALONE, {"member": member_id})).one_or_none()
    return row is not None and club_rules.active(row.club_ends_at, now)


_HISTORY_NOW = text(
    f"""
    SELECT
       NOT EXISTS (SELECT 1 FROM transactions AS t
                   WHERE t.member_id = :member AND {_SALES}
                     AND t.id <> :sale) AS first_ever,
       NOT EXISTS (SELECT 1 FROM transactions AS t
                   WHERE t.member_id = :member AND {_SALES}
                     AND t.id <> :sale
                     AND t.partner_id = (SELECT id FROM partners WHERE slug = :partner))
           AS first_at_partner,
       (SELECT max(t.created_at) FROM transactions AS t
        WHERE t.member_id = :member AND {_SALES} AND t.id <> :sale)
           AS last_purchase_at
    """
)


async def _history_now(
    session: AsyncSession, shopper: Shopper, member_id: int, partner: str, sale_id: int
) -> Shopper:
    row = (
        await session.execute(
            _HISTORY_NOW, {"member": member_id, "partner": partner, "sale": sale_id}
        )
    ).one()
    return replace(
        shopper,
        first_ever=bool(row.first_ever),
        first_at_partner=bool(row.first_at_partner),
        last_purchase_at=row.last_purchase_at,
    )


async def _reading(
    session: AsyncSession,
    program: Program,
    maybe: Sequence[Promotion],
    *,
    member_id: int,
    partner: str,
    now: datetime,
) -> tuple[Shopper, dict[str, int]] | None:
    """The member's facts that `maybe` (promotions that may apply) ask about, and their
    promotion uses, read, not locked (None: no such member)."""
    history = any(p.who.needs_history for p in maybe)
    row = (
        await session.execute(_PREVIEW[history], {"member": member_id, "partner": partner})
    ).one_or_none()
    if row is None:
        return None
    shopper = Shopper(
        tier=row.tier,
        joined_at=row.joined_at,
        birthday=row.birthday,
        club=club_rules.active(row.club_ends_at, now),
        first_ever=bool(history and row.first_ever),
        first_at_partner=bool(history and row.first_at_partner),
        last_purchase_at=row.last_purchase_at if history else None,
    )
    return shopper, row.uses or {}


def _not_used_up(
    promos: Sequence[Promotion], uses: dict[str, int], partner: str, at: datetime, shopper: Shopper
) -> list[Promotion]:
    return [
        p
        for p in promos
        if not rules.limit(p)
        or uses.get(rules.use_key(p, partner, at, shopper.birthday), 0) < rules.limit(p)
    ]


async def preview(
    session: AsyncSession, program: Program, *, member_id: int, partner: str, now: datetime
) -> list[Promotion]:
    """The promotions a sale at `partner` would get now, for the till's panel: those that
    run and are for this member, whatever the amount (each says its min_purchase), less
    those they have used up. A preview: the sale is decided again when it is posted. No
    query at a partner without a promotion running now. A cashier's sale has no itemised
    lines: a promotion with categories is not among them."""
    at = rules.local(now, program.program.zone)
    maybe = [p for p in program.promotions_at(partner) if rules.runs_on(p, at)]
    if not maybe:
        return []
    read = await _reading(session, program, maybe, member_id=member_id, partner=partner, now=now)
    if read is None:
        return []
    shopper, uses = read
    top = max((p.min_purchase for p in maybe), default=Decimal(0))
    return _not_used_up(
        rules.matching(program, partner, top, now, shopper), uses, partner, at, shopper
    )


async def would_give(
    session: AsyncSession,
    program: Program,
    *,
    member_id: int,
    partner: str,
    charged: Decimal,
    earned: int,
    now: datetime,
    lines: Sequence[Line] = (),
) -> list[rules.Award]:
    """What the program's promotions would give a sale of the member's at `partner` now that
    charged `charged` and earned `earned` points, with its itemised `lines` (a quote: read,
    nothing written; the sale is decided again when it is posted): those that match, less
    those the member has used up, each with its award as `apply` would give it. No query
    when none can apply."""
    maybe = candidates(program, partner, charged, now, lines)
    if not maybe:
        return []
    read = await _reading(session, program, maybe, member_id=member_id, partner=partner, now=now)
    if read is None:
        return []
    shopper, uses = read
    at = rules.local(now, program.program.zone)
    matched = rules.matching(program, partner, charged, now, shopper, lines)
    allowed = _not_used_up(matched, uses, partner, at, shopper)
    return [a for a in rules.awards(earned, allowed, lines) if a.points or a.stamps or a.reward]


_TAKE_USE = text(
    """
    INSERT INTO promotion_uses (promotion, member_id, uses) VALUES (:key, :member, 1)
    ON CONFLICT (promotion, member_id) DO UPDATE SET uses = promotion_uses.uses + 1
    WHERE promotion_uses.uses < :limit
    RETURNING uses
    """
)
_GIVE_BACK_USE = text(
    """
    WITH less AS (
        UPDATE promotion_uses SET uses = uses - 1
        WHERE promotion = :key AND member_id = :member AND uses > 1
        RETURNING 1
    )
    DELETE FROM promotion_uses
    WHERE promotion = :key AND member_id = :member AND uses = 1 AND NOT EXISTS (SELECT 1 FROM less)
    """
)
_AWARDS = text(
    """
    INSERT INTO promotion_awards
        (sale_id, promotion, position, points, stamps, transaction_id, voucher_id)
    SELECT :sale, * FROM unnest(
        CAST(:promotions AS text[]), CAST(:positions AS smallint[]),
        CAST(:points AS bigint[]), CAST(:stamps AS int[]), CAST(:txs AS bigint[]),
        CAST(:vouchers AS bigint[]))
    """
)


async def _take_use(
    session: AsyncSession,
    promo: Promotion,
    at: datetime,
    partner: str,
    shopper: Shopper,
    member_id: int,
) -> tuple[bool, str | None]:
    """Count one use of `promo` for the member at the local time `at`: (whether it may
    apply, the use key counted: None for a promotion without a limit)."""
    limit = rules.limit(promo)
    if not limit:
        return True, None
    key = rules.use_key(promo, partner, at, shopper.birthday)
    taken = (
        await session.execute(_TAKE_USE, {"key": key, "member": member_id, "limit": limit})
    ).scalar_one_or_none()
    return taken is not None, key


async def apply(
    session: AsyncSession,
    program: Program,
    prepared: Prepared | None,
    result: PurchaseResult,
    member: MemberInfo,
    accounts: PartnerAccounts,
    key: str,
) -> PurchaseResult:
    """The promotions the sale `result` (just posted, in this transaction) gets, posted; the
    result with its `promotions` (and the balance after them)."""
    if prepared is None:
        return result
    partner, now = result.partner, result.created_at
    at = rules.local(now, program.program.zone)
    charged = result.amount - result.discount
    shopper = replace(prepared.shopper, tier=member.tier)  # the tier the sale was posted at
    lines = prepared.lines
    matched = rules.matching(program, partner, charged, now, shopper, lines)
    if any(p.who.needs_history for p in matched):
        # Read before the sale, and before it held the member's wallet: another sale of
        # theirs may have committed since. Read again now, under the wallet's lock (a sale
        # of theirs still under way waits for this one), without this sale. Fresher
        # purchases only ever match fewer (a first visit, a win-back), and the funders'
        # accounts were read whatever the tier (prepare): those read before cover them.
        shopper = await _history_now(session, shopper, member.id, partner, result.transaction_id)
        matched = rules.matching(program, partner, charged, now, shopper, lines)
    if not matched:
        return result
    earned = result.points_earned
    # max_per_member first, on what would give something; then what the allowed give.
    giving = {a.slug for a in rules.awards(earned, matched, lines)}
    allowed: list[Promotion] = []
    uses: dict[str, str] = {}
    for promo in matched:
        if promo.slug not in giving:
            continue
        may, use = await _take_use(session, promo, at, partner, shopper, member.id)
        if not may:
            continue  # used up (perhaps by a concurrent sale): not applied, not told
        allowed.append(promo)
        if use is not None:
            uses[promo.slug] = use
    given = [a for a in rules.awards(earned, allowed, lines) if a.points or a.stamps or a.reward]
    for slug in {p.slug for p in allowed} - {a.slug for a in given}:
        # A multiplier left alone by a used-up one may add nothing: its use is not taken.
        if slug in uses:
            await session.execute(_GIVE_BACK_USE, {"key": uses[slug], "member": member.id})
    if not given:
        return result
    expires_at = expiry_for(program, now)
    balance = result.balance
    done: list[Awarded] = []
    promoted: list[PromotionStamps] = []  # what the stamps did on each card, fills and all
    rows: list[tuple[str, int, int, int | None, int | None]] = []
    for award in given:
        promo = award.promotion
        title = str(promo.title)
        if award.points:
            tx_id, balance = await _post_points(
                session,
                program,
                promo,
                award.points,
                result,
                member,
                accounts,
                key,
                expires_at,
                dict(prepared.funder_accounts),
            )
            multiplier = promo.effect.multiplier
            done.append(Awarded(promo.slug, title, points=award.points, multiplier=multiplier))
            rows.append((promo.slug, award.points, 0, tx_id, None))
        elif award.stamps:
            on_cards, stamps_balance = await add_promotion_stamps(
                session,
                program,
                promotion=promo.slug,
                count=award.stamps,
                sale_id=result.transaction_id,
                sale_key=key,
                member_id=member.id,
                wallet_id=member.wallet_id,
                partner_id=accounts.id,
                partner=accounts.slug,
                issued_id=accounts.issued_id,
                now=now,
            )
            if stamps_balance is not None:
                balance = stamps_balance
            promoted += on_cards
            done.append(Awarded(promo.slug, title, stamps=award.stamps))
            rows.append((promo.slug, 0, award.stamps, None, None))
        elif award.reward:
            payers = rules.funders(promo, partner)
            voucher = await issue_voucher(
                session,
                program,
                member_id=member.id,
                reward=award.reward,
                source=VoucherSource.PROMOTION,
                now=now,
                funder=payers[0][0],
                source_tx_id=result.transaction_id,
            )
            done.append(
                Awarded(
                    promo.slug,
                    title,
                    voucher=voucher.code,
                    reward=voucher.reward,
                    voucher_expires=voucher.expires_at,
                )
            )
            rows.append((promo.slug, 0, 0, None, voucher.id))
    await session.execute(
        _AWARDS,
        {
            "sale": result.transaction_id,
            "promotions": [r[0] for r in rows],
            "positions": list(range(len(rows))),
            "points": [r[1] for r in rows],
            "stamps": [r[2] for r in rows],
            "txs": [r[3] for r in rows],
            "vouchers": [r[4] for r in rows],
        },
    )
    stamps = with_promotion_stamps(result.stamps, promoted) if promoted else result.stamps
    return replace(result, promotions=tuple(done), balance=balance, stamps=stamps)


async def _post_points(
    session: AsyncSession,
    program: Program,
    promo: Promotion,
    points: int,
    result: PurchaseResult,
    member: MemberInfo,
    accounts: PartnerAccounts,
    key: str,
    expires_at: datetime | None,
    known: dict[str | None, int],
) -> tuple[int, int]:
    """One promotion's points: its funders' accounts (or the program's) to the wallet.
    `known`: the funders' accounts `prepare` read. Returns the
    transaction and the wallet's balance after it."""
    legs = [Leg(member.wallet_id, points)]
    for who, part in rules.split(points, rules.funders(promo, result.partner)):
        account = accounts.issued_id if who == accounts.slug else known.get(who)
        if account is None:  # not read by prepare (never, for a valid sale): read it now
            account = await _funder_account(session, who, accounts)
        legs.append(Leg(account, -part))
    posted = await post(
        session,
        legs,
        [Lot(member.id, points, earned_at=result.created_at, expires_at=expires_at)],
        kind=TxKind.PROMOTION,
        key=f"{key}:promo:{promo.slug}",
        digest=fingerprint(TxKind.PROMOTION, result.transaction_id, promo.slug, points),
        member_id=member.id,
        partner_id=accounts.id,
        related_id=result.transaction_id,
        reason=promo.slug,
        created_at=result.created_at,
    )
    assert posted is not None  # the sale was just posted under its key; only it makes these
    return posted.transaction_id, posted.balances[member.wallet_id]


_ISSUED = text(
    """
    SELECT a.id FROM accounts AS a JOIN partners AS p ON p.id = a.partner_id
    WHERE a.kind = 'partner_issued' AND p.slug = :slug
    """
)


async def _funder_account(session: AsyncSession, who: str | None, seller: PartnerAccounts) -> int:
    if who is None:
        return await system_account(session, AccountKind.PROGRAM)
    if who == seller.slug:
        return seller.issued_id
    return int((await session.execute(_ISSUED, {"slug": who})).scalar_one())


# --- a replay -------------------------------------------------------------------------

_OF_SALE = text(
    """
    SELECT pa.promotion, pa.points, pa.stamps, v.code, v.reward, v.expires_at
    FROM promotion_awards AS pa LEFT JOIN vouchers AS v ON v.id = pa.voucher_id
    WHERE pa.sale_id = :sale
    ORDER BY pa.position
    """
)


def _title(program: Program, slug: str) -> str:
    promo = program.promotion(slug)
    return str(promo.title) if promo is not None else slug


async def awarded(session: AsyncSession, program: Program, sale_id: int) -> tuple[Awarded, ...]:
    """What an earlier sale got from promotions, as its posting said (a replay), from the
    ledger whatever the program says now (the caller asks only for a sale with awards:
    purchases._REPLAY says so)."""
    rows = (await session.execute(_OF_SALE, {"sale": sale_id})).all()
    result = []
    for r in rows:
        promo = program.promotion(r.promotion)
        multiplier = promo.effect.multiplier if promo is not None else None
        result.append(
            Awarded(
                r.promotion,
                _title(program, r.promotion),
                points=int(r.points),
                stamps=int(r.stamps),
                multiplier=multiplier if r.points else None,
                voucher=r.code,
                reward=r.reward,
                voucher_expires=r.expires_at,
            )
        )
    return tuple(result)


# --- a refund -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Given:
    promotion: str
    points: int
    stamps: int
    transaction_id: int | None
    voucher_id: int | None
    funders: tuple[tuple[int, int], ...]  # (account, points it paid)
    returned: tuple[int, ...] = ()  # to each funder by earlier refunds (as `funders`)


@dataclass(frozen=True, slots=True)
class RefundPlan:
    """What a sale got from promotions, read before a refund locks its accounts."""

    given: tuple[_Given, ...]

    @property
    def vouchers(self) -> list[int]:
        """The sale's promotion vouchers (a full refund voids those still open)."""
        return sorted({g.voucher_id for g in self.given if g.voucher_id is not None})

    @property
    def accounts(self) -> list[int]:
        """The funders' accounts, for the refund to lock with its own (in id order)."""
        return sorted({acc for g in self.given for acc, _ in g.funders})


_GIVEN = text(
    """
    SELECT pa.promotion, pa.points, pa.stamps, pa.transaction_id, pa.voucher_id,
           coalesce((SELECT array_agg(e.account_id ORDER BY e.id) FROM entries AS e
                     WHERE e.transaction_id = pa.transaction_id AND e.amount < 0), '{}')
               AS accounts,
           coalesce((SELECT array_agg(-e.amount ORDER BY e.id) FROM entries AS e
                     WHERE e.transaction_id = pa.transaction_id AND e.amount < 0), '{}')
               AS paid,
           coalesce((SELECT array_agg(
                         (SELECT coalesce(sum(b.amount), 0) FROM transactions AS r
                          JOIN entries AS b ON b.transaction_id = r.id
                          WHERE r.reverses_id = pa.transaction_id
                            AND b.account_id = e.account_id AND b.amount > 0)
                         ORDER BY e.id)
                     FROM entries AS e
                     WHERE e.transaction_id = pa.transaction_id AND e.amount < 0), '{}')
               AS returned
    FROM promotion_awards AS pa
    WHERE pa.sale_id = :sale
    ORDER BY pa.position
    """
)


async def refund_plan(session: AsyncSession, sale_id: int) -> RefundPlan:
    """The sale's promotion awards, who paid each and what earlier refunds gave each back
    (one query)."""
    rows = (await session.execute(_GIVEN, {"sale": sale_id})).all()
    return RefundPlan(
        tuple(
            _Given(
                r.promotion,
                int(r.points),
                int(r.stamps),
                r.transaction_id,
                r.voucher_id,
                tuple(zip(r.accounts, (int(p) for p in r.paid), strict=True)),
                tuple(int(b) for b in r.returned),
            )
            for r in rows
        )
    )


_LOCK_VOUCHERS = text("SELECT id FROM vouchers WHERE id = ANY(:ids) ORDER BY id FOR UPDATE")


async def lock_vouchers(session: AsyncSession, plan: RefundPlan) -> None:
    """A full refund's promotion vouchers, locked before any account: in the order a claim
    takes them (the member's row, the voucher's, then accounts: voucher_claims.claim_voucher),
    so a refund and a claim of its voucher at the same moment cannot deadlock."""
    if ids := plan.vouchers:
        await session.execute(_LOCK_VOUCHERS, {"ids": ids})


def refund_due(points: int, total: Decimal, before: Decimal, after: Decimal) -> int:
    """What a refund from `before` to `after` (of a sale that charged `total`) takes back of
    an award of `points`: the whole award's refunded part by the sale's rule, from the
    totals, so partial refunds add up to a full one."""
    return rules.refunded_part(points, total, after) - rules.refunded_part(points, total, before)


def refund_claws(
    given: _Given, total: Decimal, before: Decimal, after: Decimal
) -> list[tuple[int, int]]:
    """Each funder's part of what a refund takes back of `given` (refund_due), in
    proportion to what each paid, to the point (db.rules.promotions.refund_parts): a full
    refund gives each funder back all it paid."""
    due = refund_due(given.points, total, before, after)
    paid = [p for _, p in given.funders]
    returned = list(given.returned) or [0] * len(paid)
    parts = rules.refund_parts(due, paid, returned)
    return [(account, part) for (account, _), part in zip(given.funders, parts, strict=True)]


def _shares(total: int, weights: list[int]) -> list[int]:
    """`total` (at most the sum of `weights`) in proportion to them, largest remainders."""
    whole = sum(weights)
    if not whole:
        return [0] * len(weights)
    shares = [total * w // whole for w in weights]
    order = sorted(range(len(weights)), key=lambda i: (-(total * weights[i] % whole), i))
    for i in order[: total - sum(shares)]:
        shares[i] += 1
    return shares


async def take_back(
    session: AsyncSession,
    program: Program,
    plan: RefundPlan,
    *,
    sale_id: int,
    member_id: int,
    wallet: int,
    partner_id: int | None,
    seller_issued: int,
    refund_id: int,
    refund_key: str,
    total: Decimal,
    before: Decimal,
    after: Decimal,
    available: int,
    now: datetime,
) -> tuple[PromotionBack, ...]:
    """Inside a refund's transaction (posted as `refund_id`; the member's wallet and the
    funders' accounts locked): take back what the refunded money earned through the sale's
    promotions. `available`: the wallet's points the refund's own postings left (those
    beyond it are a shortfall: a deleted member's wallet holds none)."""
    done = []
    for given in plan.given:
        title = _title(program, given.promotion)
        points = shortfall = stamps = repaid = 0
        if given.points and given.transaction_id is not None:
            claws = [
                (acc, part) for acc, part in refund_claws(given, total, before, after) if part
            ]
            due = sum(c for _, c in claws)
            taken = min(due, max(available, 0))
            shortfall = due - taken
            # Points the member spent cannot come back from the wallet; the seller keeps
            # their value from the cash, so its account pays them back to the funders.
            if shortfall and any(acc != seller_issued for acc, _ in claws):
                repaid = shortfall
            if repaid:
                credits = claws  # each funder gets back all its part
            else:
                shares = _shares(taken, [c for _, c in claws])
                credits = [(acc, part) for (acc, _), part in zip(claws, shares, strict=True)]
            if taken or repaid:
                legs = [Leg(wallet, -taken)] if taken else []
                legs += [Leg(seller_issued, -repaid)] if repaid else []
                legs += [Leg(acc, part) for acc, part in credits if part]
                posted = await post(
                    session,
                    legs,
                    [Lot(member_id, -taken, prefer_tx=given.transaction_id)] if taken else [],
                    kind=TxKind.REVERSE,
                    key=f"{refund_key}:promo:{given.promotion}",
                    digest=fingerprint(
                        "promotion-back",
                        given.transaction_id,
                        refund_id,
                        taken,
                        *([repaid] if repaid else []),
                    ),
                    member_id=member_id,
                    partner_id=partner_id,
                    reverses_id=given.transaction_id,
                    related_id=refund_id,
                    reason=given.promotion,
                    created_at=now,
                )
                assert posted is not None  # keyed by this refund, just posted
                available -= taken
                points = taken
        if after == 0 and given.stamps:
            stamps = await take_back_promotion_stamps(
                session,
                program,
                promotion=given.promotion,
                sale_id=sale_id,
                member_id=member_id,
                refund_id=refund_id,
                refund_key=refund_key,
                now=now,
            )
        voucher = status = None
        if after == 0 and given.voucher_id is not None:
            voucher, status = await _void_voucher(session, given.voucher_id, now)
        if points or shortfall or stamps or voucher:
            done.append(
                PromotionBack(
                    given.promotion, title, points, shortfall, stamps, voucher, status, repaid
                )
            )
    return tuple(done)


async def _void_voucher(session: AsyncSession, voucher_id: int, now: datetime) -> tuple[str, str]:
    """A fully refunded sale's promotion voucher: voided when still open (it moved nothing:
    a funded voucher costs nobody anything until claimed); a claimed one stays. Returns its
    code and status after."""
    row = (
        await session.execute(
            text("SELECT code, status FROM vouchers WHERE id = :id FOR UPDATE"), {"id": voucher_id}
        )
    ).one()
    if row.status != "open":
        return row.code, row.status
    await session.execute(
        update(Voucher).where(Voucher.id == voucher_id).values(status="voided", resolved_at=now)
    )
    return row.code, "voided"


# What a refund took back of a sale's promotions (a replay): the award, and the points this
# refund's reversal of it took from the member's wallet.
_BACK_OF_REFUND = text(
    """
    SELECT pa.promotion, pa.points, pa.stamps, pa.transaction_id, v.code, v.status,
           coalesce((SELECT sum(-e.amount) FROM transactions AS r
                     JOIN entries AS e ON e.transaction_id = r.id
                     JOIN accounts AS a ON a.id = e.account_id AND a.kind = 'member'
                     WHERE r.reverses_id = pa.transaction_id AND r.related_id = :refund), 0)
               AS taken,
           coalesce((SELECT sum(-e.amount) FROM transactions AS r
                     JOIN entries AS e ON e.transaction_id = r.id
                     JOIN accounts AS a ON a.id = e.account_id AND a.kind <> 'member'
                     WHERE r.reverses_id = pa.transaction_id AND r.related_id = :refund
                       AND e.amount < 0), 0)
               AS repaid,
           coalesce((SELECT sum(e.amount) FROM transactions AS r
                     JOIN entries AS e ON e.transaction_id = r.id
                     JOIN accounts AS a ON a.id = e.account_id AND a.kind = 'stamp_pool'
                     WHERE r.related_id = :refund AND r.kind = 'reverse'
                       AND r.reason = pa.promotion
                       AND r.reverses_id IN (SELECT t.id FROM transactions AS t
                                             WHERE t.related_id = pa.sale_id
                                               AND t.kind = 'promotion'
                                               AND t.reason = pa.promotion)), 0)
               AS stamps_back
    FROM promotion_awards AS pa LEFT JOIN vouchers AS v ON v.id = pa.voucher_id
    WHERE pa.sale_id = :sale
    ORDER BY pa.position
    """
)


async def taken_back(
    session: AsyncSession,
    program: Program,
    *,
    sale_id: int,
    refund_id: int,
    total: Decimal,
    before: Decimal,
    after: Decimal,
) -> tuple[PromotionBack, ...]:
    """What an earlier refund took back of its sale's promotions, from the ledger whatever
    the program says now (a replay; the caller asks only for a sale with awards)."""
    rows = (await session.execute(_BACK_OF_REFUND, {"sale": sale_id, "refund": refund_id})).all()
    done = []
    for r in rows:
        due = refund_due(int(r.points), total, before, after) if r.points else 0
        taken = int(r.taken)
        voucher = r.code if after == 0 else None
        status = r.status if voucher else None
        stamps = int(r.stamps_back)
        if taken or due or stamps or voucher:
            done.append(
                PromotionBack(
                    r.promotion,
                    _title(program, r.promotion),
                    taken,
                    due - taken,
                    stamps,
                    voucher,
                    status,
                    int(r.repaid),
                )
            )
    return tuple(done)
