"""The settlement report as CSV: one row per partner, the program's own lines, then the
totals. docs/marketer.md ("Settlement") defines every column; the headers are in English in every
language, so a file reads the same whoever asked for it."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from decimal import Decimal
from typing import TextIO

from db.queries.settlement import Settlement

HEADER = [
    "First day",
    "Last day",
    "Line",
    "Partner code",
    "Name",
    "Points issued",
    "Points redeemed",
    "Points expired",
    "Points forfeited",
    "Net points",
    "Point value",
    "Amount",
    "Currency",
    "Who pays",
    "Points outstanding at end",
    "Liability at end",
    "Vouchers honoured",
    "Donations received",
    "Vouchers funded",
    "Stamp-card rewards",
    "Promotions funded",
    "Club money collected",
]

PARTNER, CHARITY, PROGRAM, EXPIRED, FORFEITED, TOTAL = (
    "partner",
    "charity",
    "program",
    "expired points",
    "forfeited points",
    "total",
)


@dataclass(frozen=True, slots=True)
class _Line:
    kind: str
    code: str
    name: str
    issued: int = 0
    redeemed: int = 0
    expired: int = 0
    forfeited: int = 0
    outstanding: int = 0
    parts: tuple[int, int, int, int, int] = (0, 0, 0, 0, 0)  # the five columns of points
    club_money: Decimal = Decimal("0.00")  # months of the club sold at the partner's till

    @property
    def net(self) -> int:
        """Points out of members' wallets through this line less points into them."""
        return self.redeemed + self.expired + self.forfeited - self.issued


def _who_pays(line: _Line, amount: Decimal) -> str:
    if line.kind == PARTNER:
        if not amount:
            return "nobody (even)"
        return "coalition pays partner" if amount > 0 else "partner pays coalition"
    if line.kind == CHARITY:  # members' donations: the coalition pays their value
        return "coalition pays charity" if amount else "nobody (no donations)"
    if line.kind == PROGRAM:
        return "the program's cost (no payment)"
    if line.kind in (EXPIRED, FORFEITED):
        return "kept by the program (no payment)"
    return ""


def write_settlement(report: Settlement, currency: str, out: TextIO) -> None:
    """`Amount` is Net points × Point value less the club money the partner collected at its
    till for the coalition (positive on a partner's line: the coalition pays the partner;
    negative: the partner pays the coalition); the last line adds up each column."""
    lines = [
        _Line(
            CHARITY if p.kind == "charity" else PARTNER,
            p.slug,
            p.name,
            p.points_issued,
            p.points_redeemed,
            0,
            0,
            p.outstanding,
            (
                p.vouchers_honoured,
                p.donations,
                p.vouchers_funded,
                p.stamp_rewards,
                p.promotions_funded,
            ),
            p.club_money,
        )
        for p in report.partners
    ]
    lines += [
        _Line(
            PROGRAM,
            "",
            "points given by the program: welcome gifts, invitation rewards, adjustments,"
            " promotions it funds",
            issued=report.program_funded,
            outstanding=report.program_outstanding,
            parts=(0, 0, 0, 0, report.program_promotions),
        ),
        _Line(EXPIRED, "", "points that reached their expiry date", expired=report.expired),
        _Line(
            FORFEITED,
            "",
            "points of accounts deleted at the member's request",
            forfeited=report.forfeited,
        ),
    ]
    writer = csv.writer(out)
    writer.writerow(HEADER)
    first, last = report.first_day.isoformat(), report.last_day.isoformat()
    money_total = Decimal(0)
    for line in lines:
        amount = report.money(line.net) - line.club_money
        money_total += amount
        writer.writerow(
            [
                first,
                last,
                line.kind,
                line.code,
                line.name,
                line.issued,
                line.redeemed,
                line.expired,
                line.forfeited,
                line.net,
                report.point_value,
                amount,
                currency,
                _who_pays(line, amount),
                line.outstanding,
                report.money(line.outstanding),
                *line.parts,
                line.club_money,
            ]
        )
    writer.writerow(
        [
            first,
            last,
            TOTAL,
            "",
            "all lines",
            sum(line.issued for line in lines),
            sum(line.redeemed for line in lines),
            report.expired,
            report.forfeited,
            sum(line.net for line in lines),
            report.point_value,
            money_total,
            currency,
            "",
            report.outstanding,
            report.liability,
            *(sum(line.parts[i] for line in lines) for i in range(5)),
            sum((line.club_money for line in lines), Decimal("0.00")),
        ]
    )
