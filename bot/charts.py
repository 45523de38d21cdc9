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
from babel.numbers import format_decimal

from db.stats import DayFigures

SALES_COLOUR = "#4C72B0"
ACTIVE_COLOUR = "#DD8452"
ISSUED_COLOUR = "#55A868"
REDEEMED_COLOUR = "#C44E52"


@dataclass(frozen=True, slots=True)
class ChartLabels:
    """The chart's words, already translated, and the Babel locale for its dates."""

    sales: str
    active: str
    issued: str
    redeemed: str
    locale: str = "en_GB"


def render_stats_chart(series: Sequence[DayFigures], title: str, labels: ChartLabels) -> bytes:
    """Two panels over the same dated axis: sales (bars; a shaded area past two months) and
    active members (a line) per day; points issued and redeemed per day. Sized and lettered
    to be read on a phone: 1200 × 1200 pixels, 12-point ticks, legends above the panels."""
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
    fig = Figure(figsize=(8, 8), dpi=150, layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True)
    fig.suptitle(title, fontsize=16, fontweight="bold")

    sales = [d.sales for d in series]
    shown: dict[Any, list[Any]] = {top: [], bottom: []}  # legend entries, in drawing order
    if few:
        shown[top].append(top.bar(days, sales, width=0.8, color=SALES_COLOUR, label=labels.sales))
    else:  # hundreds of bars turn into noise on a phone: a shaded area reads better
        shown[top].append(
            top.fill_between(
                days, sales, step="mid", color=SALES_COLOUR, alpha=0.6, label=labels.sales
            )
        )
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
    if len(days) == 1:  # one day: keep the bar narrow instead of filling the whole width
        only = mdates.date2num(days[0])
        bottom.set_xlim(only - 2, only + 2)
    count = FuncFormatter(lambda value, _pos: format_decimal(round(value), locale=labels.locale))
    for ax in (top, bottom):
        ax.yaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
        ax.yaxis.set_major_formatter(count)
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
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()
