"""The /stats chart (bot/views/charts.py): each panel says its unit, and money is plotted as
money."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from bot.views.charts import ChartLabels, render_stats_chart, stats_figure
from db.queries.stats import DayFigures

SERIES = [
    DayFigures(date(2026, 11, 5), 2, 2, 100, 0, Decimal("45.50")),
    DayFigures(date(2026, 11, 6), 0, 0, 0, 0, Decimal(0)),
    DayFigures(date(2026, 11, 7), 1, 1, 50, 20, Decimal("10.00")),
]
LABELS = ChartLabels(
    sales="Number of sales",
    active="Active members",
    issued="Points issued",
    redeemed="Points redeemed",
    currency="PLN",
    sales_money="Sales, money",
    money_axis="Sales, PLN",
    count_axis="Sales and members",
    points_axis="Points",
    day_axis="Day",
)


def test_every_panel_names_its_unit_and_money_is_money() -> None:
    fig = stats_figure(SERIES, "Test Bonus · 5 – 7 Nov 2026", LABELS)
    money, counts, points = fig.axes
    assert [ax.get_ylabel() for ax in fig.axes] == ["Sales, PLN", "Sales and members", "Points"]
    assert points.get_xlabel() == "Day"
    # The money panel plots the sales' money, not their number; its ticks carry the currency.
    assert [bar.get_height() for bar in money.patches] == [45.5, 0.0, 10.0]
    assert [bar.get_height() for bar in counts.patches] == [2, 0, 1]
    fig.canvas.draw()
    ticks = [t.get_text() for t in money.get_yticklabels() if t.get_text()]
    assert ticks and all("PLN" in t for t in ticks), ticks
    assert [t.get_text() for t in money.get_legend().get_texts()] == ["Sales, money"]


def test_the_chart_is_a_png() -> None:
    assert render_stats_chart(SERIES, "Test", LABELS).startswith(b"\x89PNG\r\n\x1a\n")
    assert render_stats_chart([], "Empty", LABELS).startswith(b"\x89PNG")
