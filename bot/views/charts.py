"""The /stats chart: a PNG drawn with matplotlib's Agg backend (no display, no pyplot state,
so it can run in a worker thread). matplotlib is imported when a chart is drawn, so the bot
starts as fast without it."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any

from babel.dates import format_skeleton
from babel.numbers import format_currency, format_decimal

from db.queries.stats import DayFigures

MONEY_COLOUR = "#8172B3"
SALES_COLOUR = "#4C72B0"
ACTIVE_COLOUR = "#DD8452"
ISSUED_COLOUR = "#55A868"
REDEEMED_COLOUR = "#C44E52"


@dataclass(frozen=True, slots=True)
class ChartLabels:
    """The chart's words, already translated, the program's currency, and the Babel locale
    for its dates and numbers. `money_axis` names the money panel's unit ("Sales, PLN")."""

    sales: str
    active: str
    issued: str
    redeemed: str
    locale: str = "en_GB"
    currency: str = ""
    sales_money: str = "Sales"
    money_axis: str = "Money"
    count_axis: str = "Count"
    points_axis: str = "Points"
    day_axis: str = "Day"


def stats_figure(series: Sequence[DayFigures], title: str, labels: ChartLabels) -> Any:
    """Three panels over the same dated axis, each with its unit on its axis: sales in money
    (bars; a shaded area past two months); the number of sales (bars) and of active members
    (a line); points issued and redeemed. Sized and lettered to be read on a phone: 1200 ×
    1500 pixels, 12-point ticks, legends above the panels."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import dates as mdates
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    days = [datetime.combine(d.day, time()) for d in series]
    if not days:  # an empty series still draws (an empty chart), never fails
        series = [DayFigures(date.today(), 0, 0, 0, 0)]
        days = [datetime.combine(series[0].day, time())]
    few = len(days) <= 62
    marker = "o" if len(days) <= 31 else None
    fig = Figure(figsize=(8, 10), dpi=150, layout="constrained")
    money_ax, top, bottom = fig.subplots(3, 1, sharex=True)
    fig.suptitle(title, fontsize=16, fontweight="bold")

    shown: dict[Any, list[Any]] = {money_ax: [], top: [], bottom: []}  # legends, in order

    def bars(ax: Any, values: list[Any], colour: str, label: str) -> None:
        if few:
            shown[ax].append(ax.bar(days, values, width=0.8, color=colour, label=label))
        else:  # hundreds of bars turn into noise on a phone: a shaded area reads better
            shown[ax].append(
                ax.fill_between(days, values, step="mid", color=colour, alpha=0.6, label=label)
            )

    bars(money_ax, [float(d.sales_total) for d in series], MONEY_COLOUR, labels.sales_money)
    bars(top, [d.sales for d in series], SALES_COLOUR, labels.sales)
    lines = (
        (top, [d.active_members for d in series], ACTIVE_COLOUR, labels.active),
        (bottom, [d.points_issued for d in series], ISSUED_COLOUR, labels.issued),
        (bottom, [d.points_redeemed for d in series], REDEEMED_COLOUR, labels.redeemed),
    )
    for ax, values, colour, label in lines:
        shown[ax] += ax.plot(days, values, color=colour, linewidth=2.5, marker=marker, label=label)
    bottom.axhline(0, color="#888888", linewidth=0.8)

    def day_label(value: float, _pos: int) -> str:
        return format_skeleton("dMMM", mdates.num2date(value).date(), locale=labels.locale)

    locator = mdates.AutoDateLocator(minticks=3, maxticks=7)
    bottom.xaxis.set_major_locator(locator)
    bottom.xaxis.set_major_formatter(FuncFormatter(day_label))
    bottom.set_xlabel(labels.day_axis, fontsize=12)
    if len(days) == 1:  # one day: keep the bar narrow instead of filling the whole width
        only = mdates.date2num(days[0])
        bottom.set_xlim(only - 2, only + 2)
    count = FuncFormatter(lambda value, _pos: format_decimal(round(value), locale=labels.locale))
    money = FuncFormatter(
        lambda value, _pos: (
            format_currency(value, labels.currency, locale=labels.locale, format_type="standard")
            if labels.currency
            else format_decimal(value, locale=labels.locale)
        )
    )
    for ax, unit, formatter in (
        (money_ax, labels.money_axis, money),
        (top, labels.count_axis, count),
        (bottom, labels.points_axis, count),
    ):
        ax.set_ylabel(unit, fontsize=12)
        ax.yaxis.set_major_locator(MaxNLocator(nbins=5, integer=ax is not money_ax))
        ax.yaxis.set_major_formatter(formatter)
        ax.tick_params(labelsize=12)
        ax.grid(axis="y", alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
        # Above the panel, so it never hides a day's figures.
        ax.legend(
            handles=shown[ax],
            fontsize=12,
            loc="lower left",
            bbox_to_anchor=(0, 1),
            ncols=2,
            frameon=False,
        )
        ax.set_ylim(bottom=min(0, ax.get_ylim()[0]))
    return fig


def render_stats_chart(series: Sequence[DayFigures], title: str, labels: ChartLabels) -> bytes:
    """The chart of `stats_figure` as a PNG."""
    buffer = io.BytesIO()
    stats_figure(series, title, labels).savefig(buffer, format="png")
    return buffer.getvalue()


def simulation_figure(
    names: Sequence[str],
    actual: Sequence[int],
    simulated: Sequence[int],
    title: str,
    labels: tuple[str, str, str],
    locale: str = "en_GB",
) -> Any:
    """Points each partner issued, as it was and as simulated, side by side (`labels`:
    the two series' names and the points axis), horizontal so long names read on a phone."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    rows = max(len(names), 1)
    fig = Figure(figsize=(8, 2.5 + 0.7 * rows), dpi=150, layout="constrained")
    ax = fig.subplots()
    fig.suptitle(title, fontsize=16, fontweight="bold")
    places = list(range(len(names)))
    height = 0.38
    ax.barh([p - height / 2 for p in places], actual, height, color=ISSUED_COLOUR, label=labels[0])
    ax.barh(
        [p + height / 2 for p in places], simulated, height, color=MONEY_COLOUR, label=labels[1]
    )
    ax.set_yticks(places, list(names), fontsize=12)
    ax.invert_yaxis()  # the program file's order, top down
    ax.set_xlabel(labels[2], fontsize=12)
    ax.xaxis.set_major_formatter(
        FuncFormatter(lambda value, _pos: format_decimal(round(value), locale=locale))
    )
    ax.tick_params(labelsize=12)
    ax.grid(axis="x", alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(fontsize=12, loc="lower left", bbox_to_anchor=(0, 1), ncols=2, frameon=False)
    return fig


def render_simulation_chart(
    names: Sequence[str],
    actual: Sequence[int],
    simulated: Sequence[int],
    title: str,
    labels: tuple[str, str, str],
    locale: str = "en_GB",
) -> bytes:
    buffer = io.BytesIO()
    simulation_figure(names, actual, simulated, title, labels, locale).savefig(
        buffer, format="png"
    )
    return buffer.getvalue()
