"""A simulation's report (db/queries/simulate.py) as CSV and as the command line's text
table. docs/owner.md ("Testing a rule before launch") defines every column; like the
settlement CSV's, the headers are in English whoever asked, so a file reads the same."""

from __future__ import annotations

import csv
from datetime import timedelta
from decimal import Decimal
from typing import TextIO

from db.queries.simulate import Rate, Simulation

HEADER = [
    "First day",
    "Last day",
    "Line",
    "Code",
    "Name",
    "Sales",
    "Points issued (actual)",
    "Points issued (simulated)",
    "Points change",
    "Vouchers (simulated)",
    "Expected cost (simulated)",
    "Settlement (actual)",
    "Settlement (simulated)",
    "Settlement change",
    "Currency",
]

PARTNER, PROMOTION, PROGRAM, TOTAL = "partner", "promotion", "program", "total"


def last_day(sim: Simulation) -> str:
    return (sim.end - timedelta(microseconds=1)).date().isoformat()


def rate_text(rate: Rate, part: str, whole: str) -> str:
    """The rate in words: 2.24 % (30 points redeemed of 1,338 issued), or 100 % assumed."""
    if not rate.measured:
        return f"100 % assumed (no {whole} yet to measure)"
    percent = (rate.value * 100).quantize(Decimal("0.01"))
    return f"{percent} % ({rate.part:,} {part} of {rate.whole:,} {whole})"


def measured(sim: Simulation) -> list[str]:
    """How the rates were measured, in words, for the CLI and the CSV's notes."""
    return [
        "Points redemption rate: "
        + rate_text(sim.points_rate, "points redeemed", "points issued")
        + ", over the program's whole history.",
        "Voucher claim rate: "
        + rate_text(sim.voucher_rate, "claimed", "given vouchers claimed or expired")
        + ".",
    ]


def write_simulation(sim: Simulation, out: TextIO) -> None:
    """Partner lines (points each issues: its sales' points and the promotion points it
    funds), promotion lines (what each promotion gives, whoever funds it), the program's own
    promotion points, and the total; `Settlement …` only on partner lines."""
    writer = csv.writer(out)
    writer.writerow(HEADER)
    first, last, currency = sim.start.date().isoformat(), last_day(sim), sim.currency
    for p in sim.partners:
        writer.writerow(
            [
                first,
                last,
                PARTNER,
                p.slug,
                p.name,
                p.sales,
                p.actual_issued,
                p.simulated_issued,
                p.points_change,
                p.vouchers,
                sim.partner_cost(p),
                p.position,
                p.simulated_position,
                p.position_change,
                currency,
            ]
        )
    for promo in sim.promotions:
        writer.writerow(
            [
                first,
                last,
                PROMOTION,
                promo.slug,
                str(promo.title),
                promo.sales,
                "" if promo.actual_points is None else promo.actual_points,
                promo.points,
                "" if promo.actual_points is None else promo.points - promo.actual_points,
                promo.vouchers,
                sim.promotion_cost(promo),
                "",
                "",
                "",
                currency,
            ]
        )
    writer.writerow(
        [
            first,
            last,
            PROGRAM,
            "",
            "promotion points and vouchers the program itself funds",
            "",
            sim.actual_program_points,
            sim.program_points,
            sim.program_points - sim.actual_program_points,
            "",
            sim.cost(sim.program_points, sim.program_voucher_points),
            "",
            "",
            "",
            currency,
        ]
    )
    writer.writerow(
        [
            first,
            last,
            TOTAL,
            "",
            " ".join(measured(sim)),
            sim.sales,
            sim.actual_points,
            sim.simulated_points,
            sim.simulated_points - sim.actual_points,
            sum(p.vouchers for p in sim.partners),
            sim.total_cost,
            sum((p.position for p in sim.partners), Decimal(0)),
            sum((p.simulated_position for p in sim.partners), Decimal(0)),
            sum((p.position_change for p in sim.partners), Decimal(0)),
            currency,
        ]
    )


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]


def text_report(sim: Simulation, name: str) -> str:
    """The command line's report: two tables and how the rates were measured."""
    currency = sim.currency
    lines = [
        f"{name}: {sim.start.date().isoformat()} to {last_day(sim)} (both included), "
        f"{sim.sales:,} sales of {sim.members:,} members, {sim.refunds:,} refunds of them",
        "",
    ]
    rows = [
        [
            "partner",
            "sales",
            "points actual",
            "simulated",
            "change",
            "vouchers",
            f"expected cost {currency}",
            f"settlement actual {currency}",
            "simulated",
            "change",
        ]
    ]
    for p in sim.partners:
        rows.append(
            [
                p.slug,
                f"{p.sales:,}",
                f"{p.actual_issued:,}",
                f"{p.simulated_issued:,}",
                f"{p.points_change:+,}",
                f"{p.vouchers:,}",
                f"{sim.partner_cost(p):,}",
                f"{p.position:,}",
                f"{p.simulated_position:,}",
                f"{p.position_change:+,}",
            ]
        )
    rows.append(
        [
            "(program)",
            "",
            f"{sim.actual_program_points:,}",
            f"{sim.program_points:,}",
            f"{sim.program_points - sim.actual_program_points:+,}",
            "",
            f"{sim.cost(sim.program_points, sim.program_voucher_points):,}",
            "",
            "",
            "",
        ]
    )
    rows.append(
        [
            "total",
            f"{sim.sales:,}",
            f"{sim.actual_points:,}",
            f"{sim.simulated_points:,}",
            f"{sim.simulated_points - sim.actual_points:+,}",
            f"{sum(p.vouchers for p in sim.partners):,}",
            f"{sim.total_cost:,}",
            "",
            "",
            f"{sum((p.position_change for p in sim.partners), Decimal(0)):+,}",
        ]
    )
    lines += _table(rows)
    if sim.promotions:
        rows = [
            [
                "promotion",
                "sales",
                "points",
                "vouchers",
                "stamps",
                f"expected cost {currency}",
                "funded by",
            ]
        ]
        for promo in sim.promotions:
            rows.append(
                [
                    promo.slug,
                    f"{promo.sales:,}",
                    f"{promo.points:,}",
                    f"{promo.vouchers:,}",
                    f"{promo.stamps:,}",
                    f"{sim.promotion_cost(promo):,}",
                    promo.funded_by or "the selling partner",
                ]
            )
        lines += ["", *_table(rows)]
    lines += ["", *measured(sim)]
    if sim.unknown_partner_sales:
        lines.append(
            f"{sim.unknown_partner_sales:,} sales at partners the proposed program does not "
            "have earn nothing in it."
        )
    return "\n".join(lines)
