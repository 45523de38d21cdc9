"""A simulation's report (db/queries/simulate.py) as CSV and as the command line's text
table. docs/owner.md ("Testing a rule before launch") defines every column; like the
settlement CSV's, the headers are in English whoever asked, so a file reads the same."""

from __future__ import annotations

import csv
from datetime import datetime, timedelta
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
    "Expected cost (actual)",
    "Expected cost (simulated)",
    "Settlement (actual)",
    "Settlement (simulated)",
    "Settlement change",
    "Currency",
    "Redemption rate",
    "Voucher claim rate",
]

PARTNER, PROMOTION, PROGRAM, TOTAL = "partner", "promotion", "program", "total"


def last_day(sim: Simulation) -> str:
    return (sim.end - timedelta(microseconds=1)).date().isoformat()


def plural(n: int, one: str, many: str) -> str:
    """`1 sale`, `2 sales`: the command line's English."""
    return f"{n:,} {one if n == 1 else many}"


def rate_text(rate: Rate, part: str, whole: str) -> str:
    """The rate in words: 2.24 % (30 points redeemed of 1,338 issued), or 100 % assumed."""
    if not rate.measured:
        return f"100 % assumed (no {whole} yet to measure)"
    percent = (rate.value * 100).quantize(Decimal("0.01"))
    return f"{percent} % ({rate.part:,} {part} of {rate.whole:,} {whole})"


def measured(sim: Simulation) -> list[str]:
    """How the rates were measured, in words, for the command line."""
    return [
        "Points redemption rate: "
        + rate_text(sim.points_rate, "points redeemed", "points issued")
        + ", over the program's whole history.",
        "Voucher claim rate: "
        + rate_text(sim.voucher_rate, "claimed", "given vouchers claimed or expired")
        + ".",
    ]


def rate_value(rate: Rate) -> str:
    """The rate the costs use, as a fraction for a spreadsheet: 0.022422; 1 when there was
    nothing to measure (everything counted)."""
    return str(rate.value.quantize(Decimal("0.000001")).normalize())


def _optional(value: object) -> object:
    return "" if value is None else value


def write_simulation(sim: Simulation, out: TextIO) -> None:
    """Partner lines (points each issues: its sales' points and the promotion points it
    funds), promotion lines (what each promotion gives, whoever funds it), the program's own
    promotion points, and the total; `Settlement …` on partner lines and the total; the
    rates the costs use on the total line. A column a line does not fill stays empty."""
    writer = csv.DictWriter(out, fieldnames=HEADER, restval="")
    writer.writeheader()
    period = {
        "First day": sim.start.date().isoformat(),
        "Last day": last_day(sim),
        "Currency": sim.currency,
    }

    def line(kind: str, code: str, name: str, **figures: object) -> None:
        row: dict[str, object] = {**period, "Line": kind, "Code": code, "Name": name}
        row.update({_COLUMNS[key]: value for key, value in figures.items()})
        writer.writerow(row)

    for p in sim.partners:
        line(
            PARTNER,
            p.slug,
            p.name,
            sales=p.sales,
            actual=p.actual_issued,
            simulated=p.simulated_issued,
            change=p.points_change,
            vouchers=p.vouchers,
            actual_cost=sim.partner_actual_cost(p),
            cost=sim.partner_cost(p),
            position=p.position,
            simulated_position=p.simulated_position,
            position_change=p.position_change,
        )
    for promo in sim.promotions:
        line(
            PROMOTION,
            promo.slug,
            str(promo.title),
            sales=promo.sales,
            actual=_optional(promo.actual_points),
            simulated=promo.points,
            change="" if promo.actual_points is None else promo.points - promo.actual_points,
            vouchers=promo.vouchers,
            actual_cost=_optional(sim.promotion_actual_cost(promo)),
            cost=sim.promotion_cost(promo),
        )
    line(
        PROGRAM,
        "",
        "promotion points and vouchers the program itself funds",
        actual=sim.actual_program_points,
        simulated=sim.program_points,
        change=sim.program_points - sim.actual_program_points,
        actual_cost=sim.program_actual_cost,
        cost=sim.program_cost,
    )
    line(
        TOTAL,
        "",
        "",
        sales=sim.sales,
        actual=sim.actual_points,
        simulated=sim.simulated_points,
        change=sim.simulated_points - sim.actual_points,
        vouchers=sim.vouchers,
        actual_cost=sim.total_actual_cost,
        cost=sim.total_cost,
        position=sim.position,
        simulated_position=sim.simulated_position,
        position_change=sim.position_change,
        points_rate=rate_value(sim.points_rate),
        voucher_rate=rate_value(sim.voucher_rate),
    )


# write_simulation's figures by name, and the column each fills.
_COLUMNS = {
    "sales": "Sales",
    "actual": "Points issued (actual)",
    "simulated": "Points issued (simulated)",
    "change": "Points change",
    "vouchers": "Vouchers (simulated)",
    "actual_cost": "Expected cost (actual)",
    "cost": "Expected cost (simulated)",
    "position": "Settlement (actual)",
    "simulated_position": "Settlement (simulated)",
    "position_change": "Settlement change",
    "points_rate": "Redemption rate",
    "voucher_rate": "Voucher claim rate",
}


def _table(rows: list[list[str]], groups: list[tuple[str, int]] | None = None) -> list[str]:
    """Rows as columns (the first left-aligned, the others right-aligned); `groups`, (label,
    how many columns) from the first, are written centred over their columns above the
    header, so the header's words are not repeated."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    if groups:
        cells, i = [], 0
        for label, span in groups:
            width = sum(widths[i : i + span]) + 2 * (span - 1)
            if label and len(label) + 4 <= width:
                label = f" {label} ".center(width, "-")
            cells.append(label.center(width))
            i += span
        lines.append("  ".join(cells).rstrip())
    lines += [
        "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]
    return lines


NOT_ENDED = "the period has not ended: sales still to come are not counted"


def text_report(sim: Simulation, name: str, now: datetime | None = None) -> str:
    """The command line's report: two tables, what their figures mean and how the rates were
    measured; a warning first when the period ends after `now`."""
    currency = sim.currency
    lines = [
        f"{name}: {sim.start.date().isoformat()} to {last_day(sim)} (both included), "
        f"{plural(sim.sales, 'sale', 'sales')} of {plural(sim.members, 'member', 'members')}, "
        f"{plural(sim.refunds, 'refund', 'refunds')} of these sales",
    ]
    if now is not None and sim.end > now:
        lines.append(f"Warning: {NOT_ENDED}.")
    lines.append("")
    groups = [
        ("", 2),
        ("points issued", 3),
        ("", 1),
        (f"expected cost {currency}", 2),
        (f"settlement {currency}", 3),
    ]
    rows = [
        [
            "partner",
            "sales",
            "as it was",
            "simulated",
            "change",
            "vouchers",
            "as it was",
            "simulated",
            "as it was",
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
                f"{sim.partner_actual_cost(p):,}",
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
            f"{sim.program_actual_cost:,}",
            f"{sim.program_cost:,}",
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
            f"{sim.vouchers:,}",
            f"{sim.total_actual_cost:,}",
            f"{sim.total_cost:,}",
            f"{sim.position:,}",
            f"{sim.simulated_position:,}",
            f"{sim.position_change:+,}",
        ]
    )
    lines += _table(rows, groups)
    lines += [
        "",
        "Points issued: the partner's sales' own points and the promotion points it funds. "
        "Expected cost: of all those points and the vouchers it funds (its own earning "
        "included), as it was at the current point value and as simulated at the proposed "
        "one, at the rates below.",
        "Settlement: positive, the coalition pays the partner; negative, the partner pays "
        "the coalition.",
    ]
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
            f"{plural(sim.unknown_partner_sales, 'sale', 'sales')} at partners the proposed "
            "program does not have earn nothing in it."
        )
    return "\n".join(lines)
