"""The settlement report as CSV: one row per partner, then the program's own lines."""

from __future__ import annotations

import csv
from typing import TextIO

from db.settlement import Settlement

HEADER = [
    "period_start",
    "period_end",
    "partner",
    "name",
    "points_issued",
    "points_redeemed",
    "net_points",
    "amount",
    "currency",
    "direction",
]


def write_settlement(report: Settlement, currency: str, out: TextIO) -> None:
    """`amount` is net_points × point_value: positive, the coalition pays the partner;
    negative, the partner pays the coalition."""
    writer = csv.writer(out)
    writer.writerow(HEADER)
    start, end = report.start.date().isoformat(), report.end.date().isoformat()
    for p in report.partners:
        money = report.money(p.net_points)
        direction = "coalition pays partner" if money > 0 else "partner pays coalition"
        writer.writerow(
            [
                start,
                end,
                p.slug,
                p.name,
                p.points_issued,
                p.points_redeemed,
                p.net_points,
                money,
                currency,
                direction if money else "even",
            ]
        )
    writer.writerow(
        [
            start,
            end,
            "(program)",
            "welcome, referral and manual points",
            report.program_funded,
            0,
            -report.program_funded,
            report.money(-report.program_funded),
            currency,
            "funded",
        ]
    )
    writer.writerow(
        [
            start,
            end,
            "(breakage)",
            "expired points",
            0,
            report.breakage,
            report.breakage,
            report.money(report.breakage),
            currency,
            "kept by the program",
        ]
    )
