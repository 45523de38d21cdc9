"""Who owes whom for a period, and what the program still owes its members at its end.

A partner's position is (points redeemed at it − points issued by it) × point_value:
positive, the coalition pays the partner; negative, the partner pays the coalition. A charity
partner issues no points and redeems only members' donations (db/usecases/donations.py): its
position is what the coalition pays it for them.
Reversals count in the period they are posted, so a period's figures never change later.

Months of the club sold at a partner's till were paid to the partner in money that belongs to
the coalition: its `club_money` (collected in the period, less what was refunded in it) is
money the partner owes the coalition, on top of its points' position.

Every figure is a sum of ledger entries, so the lines reconcile exactly: the points issued
(by partners and by the program) minus those redeemed, expired and forfeited in the period
are the net points that entered members' wallets in the period (`wallets_change`).

Points outstanding at the end of the period are the points members held then: the sum of
every entry on members' wallets posted before `end` (exact, and it never changes later). A
member's points are one balance, spent oldest first whoever issued them, so the ledger does
not say which partner's points are still unspent; the outstanding points are attributed to
the issuers in proportion to the points each issued, net of claw-backs, from the program's
start to `end` (the program's own share for its welcome, referral and manual points), the
remainder of the division going by largest remainder, so the shares add up to the total
exactly. The liability is outstanding points × point_value.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from db.ledger.models import AccountKind, Partner
from db.rules.points import points_money
from db.rules.program import Program

# Deleting an account forfeits its points with an `expire` posting under this key prefix
# (db/usecases/privacy.py); a refund of a deleted member's sale forfeits what it returns (a
# `reverse` to breakage). Only lots that reached their expiry date are "expired".
FORFEIT_KEY = "forfeit:"


@dataclass(frozen=True, slots=True)
class PartnerPosition:
    slug: str
    name: str
    points_issued: int
    points_redeemed: int
    outstanding: int = 0  # its share of the points members held at `end`
    # Parts of the two figures above, by what moved the points:
    vouchers_honoured: int = 0  # of points_redeemed: vouchers claimed at this partner
    donations: int = 0  # of points_redeemed: points members gave this charity
    vouchers_funded: int = 0  # of points_issued: vouchers it funded, honoured anywhere
    stamp_rewards: int = 0  # of points_issued: points its full stamp cards gave
    # of points_issued: its share of promotions' points, less what refunds gave back to it
    promotions_funded: int = 0
    # "charity": its points redeemed are members' donations (it sells nothing, issues none)
    kind: str = "business"
    # Money for months of the club sold at its till in the period (club_payments of method
    # "till", in the program's currency), less those refunded in the period: it owes it to
    # the coalition. Its two parts: collected in the period, and refunded in it (of months
    # sold in the period or before).
    club_money: Decimal = Decimal("0.00")
    club_collected: Decimal = Decimal("0.00")
    club_refunded: Decimal = Decimal("0.00")

    @property
    def net_points(self) -> int:
        return self.points_redeemed - self.points_issued


@dataclass(frozen=True, slots=True)
class Settlement:
    start: datetime
    end: datetime
    point_value: Decimal
    partners: list[PartnerPosition]
    # Points the program paid: welcome, referral and manual points, the promotions it funds
    # (program_promotions, net of refunds) and the program-funded vouchers claimed.
    program_funded: int
    expired: int  # points whose lots reached their expiry date in the period
    forfeited: int  # points of deleted accounts, taken at deletion or by a later refund
    program_outstanding: int = 0  # the program's share of the points members held at `end`
    # of program_funded: promotions' points the program paid, less refunds' give-backs
    program_promotions: int = 0

    @property
    def first_day(self) -> date:
        return self.start.date()

    @property
    def last_day(self) -> date:
        """The period's last day, included (`end` is exclusive)."""
        return (self.end - timedelta(microseconds=1)).date()

    @property
    def club_money(self) -> Decimal:
        """Money the partners kept of what their tills took for the club in the period (what
        they collected less what they gave back): they owe it to the coalition."""
        return sum((p.club_money for p in self.partners), Decimal("0.00"))

    @property
    def club_collected(self) -> Decimal:
        """Money the partners' tills took for months of the club in the period."""
        return sum((p.club_collected for p in self.partners), Decimal("0.00"))

    @property
    def club_refunded(self) -> Decimal:
        """Money of till-sold months refunded in the period (whenever they were sold)."""
        return sum((p.club_refunded for p in self.partners), Decimal("0.00"))

    @property
    def breakage(self) -> int:
        return self.expired + self.forfeited

    @property
    def outstanding(self) -> int:
        """Points members held at `end`."""
        return self.program_outstanding + sum(p.outstanding for p in self.partners)

    def money(self, points: int) -> Decimal:
        return points_money(points, self.point_value)

    @property
    def liability(self) -> Decimal:
        """The outstanding points' value: each issuer's share in money, added up (as the
        CSV's column is)."""
        shares = [p.outstanding for p in self.partners] + [self.program_outstanding]
        return sum((self.money(points) for points in shares), Decimal(0))

    @property
    def wallets_change(self) -> int:
        """Net points that went into members' wallets: what the other lines must explain."""
        issued = sum(p.points_issued for p in self.partners) + self.program_funded
        return issued - sum(p.points_redeemed for p in self.partners) - self.breakage


def share_out(total: int, weights: list[int]) -> list[int]:
    """`total` split in proportion to `weights` (negative ones count as 0), in whole points
    that add up to `total`: each gets the floor of its share, then the points left over go
    one each to the largest remainders (the first weight on a tie). No weight: the last one
    (the program) gets everything."""
    weights = [max(w, 0) for w in weights]
    whole = sum(weights)
    if not whole:
        return [0] * (len(weights) - 1) + [total]
    shares = [total * w // whole for w in weights]
    by_remainder = sorted(range(len(weights)), key=lambda i: (-(total * weights[i] % whole), i))
    for i in by_remainder[: total - sum(shares)]:
        shares[i] += 1
    return shares


# Per kind of account and partner: the entries of the period, those of expiries in it, and
# the balance at `end` (the balance now less what was posted since `end`). One statement,
# so one snapshot: a posting committed meanwhile is in every figure or in none. The entries
# since `start` are read, and for the balance now of the accounts whose balance is not kept
# on their row (partners', the program's: account_balances), the sum of all their entries.
_TOTALS = text(
    """
    WITH moved AS (
        SELECT e.account_id,
               sum(e.amount) FILTER (WHERE t.created_at < :end) AS in_period,
               sum(e.amount) FILTER (
                   WHERE t.created_at < :end AND t.kind = 'expire'
                     AND t.idempotency_key NOT LIKE :forfeit
               ) AS expired,
               sum(e.amount) FILTER (WHERE t.created_at >= :end) AS after_end,
               sum(e.amount) FILTER (
                   WHERE t.created_at < :end AND t.kind = 'voucher') AS vouchers,
               sum(e.amount) FILTER (
                   WHERE t.created_at < :end AND t.kind = 'donation') AS donations,
               sum(e.amount) FILTER (
                   WHERE t.created_at < :end AND t.kind = 'card_filled') AS stamp_rewards,
               sum(e.amount) FILTER (
                   WHERE t.created_at < :end AND (t.kind = 'promotion' OR r.kind = 'promotion')
               ) AS promotions
        FROM entries AS e JOIN transactions AS t ON t.id = e.transaction_id
        LEFT JOIN transactions AS r ON r.id = t.reverses_id
        WHERE t.created_at >= :start
        GROUP BY e.account_id
    )
    SELECT a.kind, a.partner_id, coalesce(sum(m.in_period), 0) AS in_period,
           coalesce(sum(m.expired), 0) AS expired,
           sum(a.balance) - coalesce(sum(m.after_end), 0) AS at_end,
           coalesce(sum(m.vouchers), 0) AS vouchers, coalesce(sum(m.donations), 0) AS donations,
           coalesce(sum(m.stamp_rewards), 0) AS stamp_rewards,
           coalesce(sum(m.promotions), 0) AS promotions
    FROM account_balances AS a LEFT JOIN moved AS m ON m.account_id = a.id
    WHERE a.unit = 'points'
    GROUP BY a.kind, a.partner_id
    """
)


# Per partner: the money of months of the club sold at its till in the period, less the
# money of such months refunded in the period (refunded_at), each in the period it happened.
_CLUB_MONEY = text(
    """
    SELECT partner_id,
           coalesce(sum(amount) FILTER (WHERE created_at >= :start AND created_at < :end), 0)
               AS collected,
           coalesce(sum(amount) FILTER (WHERE refunded_at >= :start AND refunded_at < :end), 0)
               AS refunded
    FROM club_payments
    WHERE method = 'till' AND currency = :currency
      AND (created_at >= :start AND created_at < :end
           OR refunded_at >= :start AND refunded_at < :end)
    GROUP BY partner_id
    """
)


def _part(
    parts: dict[tuple[str, int | None], Any], kind: str, partner: int | None, name: str
) -> int:
    row = parts.get((kind, partner))
    return int(getattr(row, name)) if row is not None else 0


async def settlement(
    session: AsyncSession, program: Program, *, start: datetime, end: datetime
) -> Settlement:
    """Positions for [start, end) straight from the entries, and the points outstanding at
    `end` attributed to their issuers."""
    rows = (
        await session.execute(_TOTALS, {"start": start, "end": end, "forfeit": FORFEIT_KEY + "%"})
    ).all()
    period = {(r.kind, r.partner_id): int(r.in_period) for r in rows}
    to_date = {(r.kind, r.partner_id): int(r.at_end) for r in rows}
    parts = {(r.kind, r.partner_id): r for r in rows}
    expired_points = sum(int(r.expired) for r in rows if r.kind == AccountKind.BREAKAGE)
    breakage = period.get((AccountKind.BREAKAGE, None), 0)
    partners = (await session.execute(select(Partner).order_by(Partner.id))).scalars().all()
    club = await session.execute(
        _CLUB_MONEY, {"start": start, "end": end, "currency": program.program.currency}
    )
    club_money = {r.partner_id: (Decimal(r.collected), Decimal(r.refunded)) for r in club}
    none = (Decimal("0.00"), Decimal("0.00"))
    held = sum(total for (kind, _p), total in to_date.items() if kind == AccountKind.MEMBER)
    shares = share_out(
        held,
        [-to_date.get((AccountKind.PARTNER_ISSUED, p.id), 0) for p in partners]
        + [-to_date.get((AccountKind.PROGRAM, None), 0)],
    )
    positions = [
        PartnerPosition(
            slug=p.slug,
            name=p.name,
            points_issued=-period.get((AccountKind.PARTNER_ISSUED, p.id), 0),
            points_redeemed=period.get((AccountKind.PARTNER_REDEEMED, p.id), 0),
            outstanding=share,
            vouchers_honoured=_part(parts, AccountKind.PARTNER_REDEEMED, p.id, "vouchers"),
            donations=_part(parts, AccountKind.PARTNER_REDEEMED, p.id, "donations"),
            vouchers_funded=-_part(parts, AccountKind.PARTNER_ISSUED, p.id, "vouchers"),
            stamp_rewards=-_part(parts, AccountKind.PARTNER_ISSUED, p.id, "stamp_rewards"),
            promotions_funded=-_part(parts, AccountKind.PARTNER_ISSUED, p.id, "promotions"),
            kind=p.kind,
            club_money=club_money.get(p.id, none)[0] - club_money.get(p.id, none)[1],
            club_collected=club_money.get(p.id, none)[0],
            club_refunded=club_money.get(p.id, none)[1],
        )
        for p, share in zip(partners, shares, strict=False)
    ]
    return Settlement(
        start=start,
        end=end,
        point_value=program.program.point_value,
        partners=positions,
        program_funded=-period.get((AccountKind.PROGRAM, None), 0),
        expired=expired_points,
        forfeited=breakage - expired_points,
        program_outstanding=shares[-1],
        program_promotions=-_part(parts, AccountKind.PROGRAM, None, "promotions"),
    )
