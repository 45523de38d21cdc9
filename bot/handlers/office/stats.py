"""/stats: the program's figures with a chart; /settlement: who owes whom, as CSV.

Owners and marketers see the coalition (and every partner's line); a partner's manager sees
that partner only, always the one of their own staff record, whatever the command says."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from html import escape

from aiogram import Router
from aiogram.filters import Command, CommandObject, or_f
from aiogram.types import BufferedInputFile, Message
from aiogram.utils.i18n import gettext as _
from babel.dates import format_interval
from sqlalchemy.ext.asyncio import AsyncSession

from bot.filters import IsOwner, IsStaff, PrivateChat
from bot.views import formatting as fmt
from bot.views.charts import ChartLabels, render_stats_chart
from bot.views.club_figures import club_lines
from bot.views.gifts import donations_line
from bot.views.settlement_csv import write_settlement
from bot.views.vouchers import rewards_line
from db.queries.donations import donation_figures
from db.queries.rewards_figures import reward_figures
from db.queries.settlement import Settlement, settlement
from db.queries.stats import (
    BadPeriod,
    Kpis,
    Period,
    club_figures,
    coalition_report,
    kpis,
    log_report,
    parse_period,
    previous_month,
)
from db.rules.discounts import has_discounts
from db.rules.program import Program
from db.rules.tokens import REFERRAL_SOURCE
from db.usecases.staff import StaffInfo

PERIODS = "today · week · month · year · 2026-11 · 2026-11-01..2026-11-30"
SETTLEMENT_PERIODS = "2026-11 · 2026-11-01..2026-11-30"  # calendar periods that have ended
MESSAGE_LIMIT = 4096


def _period(arg: str | None, program: Program) -> Period | None:
    try:
        return parse_period(arg, now=datetime.now(UTC), timezone=program.program.timezone)
    except BadPeriod:
        return None


def _stats_period(arg: str | None, program: Program) -> Period | None:
    """A /stats period, ending today at the latest: days still to come have no figures, and
    counting them would report what is not yet so. None for a period that has not begun."""
    period = _period(arg, program)
    if period is None:
        return None
    now = datetime.now(UTC)
    tomorrow = parse_period("today", now=now, timezone=program.program.timezone).end
    if period.start >= tomorrow:
        return None
    return Period(period.start, min(period.end, tomorrow))


async def _usage(message: Message, command: str) -> None:
    default = (
        _("Without one: the last whole month.")
        if command == "/settlement"
        else _("Without one: the last 30 days.")
    )
    await message.answer(
        _(
            "I do not understand that period. Use {command} with one of: {periods} "
            "(in a range both days count)."
        ).format(
            command=command,
            periods=SETTLEMENT_PERIODS if command == "/settlement" else PERIODS,
        )
        + " "
        + default
    )


ROLLING_WORDS = ("today", "week", "month", "year")


def _example_days(now: datetime, tz: str) -> str:
    last = previous_month(now, tz)
    return f"{last.first_day:%Y-%m-%d}..{last.first_day:%Y-%m}-15"


def _days(period: Period) -> str:
    """The period's days, both included: "1 – 30 Nov 2026", "28 Nov – 3 Dec 2026"."""
    first, last = period.start.date(), (period.end - timedelta(days=1)).date()
    return format_interval(first, last, "yMMMd", locale=fmt.locale())


def _rate(value: Decimal | None) -> str:
    if value is None:
        return "—"
    return fmt.percent((value * 100).quantize(Decimal("0.1")).normalize())


def _money(value: Decimal | None, currency: str) -> str:
    return "—" if value is None else fmt.money(value, currency)


def _figures(k: Kpis, currency: str, *, partner: bool, discounts: bool = False) -> list[str]:
    """The KPIs in words; `partner` words them for one partner's manager; `discounts`: the
    program has tier discounts (their line is shown even at nought, else only if any)."""
    given = (
        [
            _("🏷 Discounts given: {money} (at the selling partner's cost)").format(
                money=fmt.money(k.discounts_total, currency)
            )
        ]
        if discounts or k.discounts_total
        else []
    )
    return [
        (
            _("👥 Customers: {members} (+{new} bought here for the first time)")
            if partner
            else _("👥 Members: {members} (+{new} joined)")
        ).format(members=fmt.number(k.members), new=fmt.number(k.new_members)),
        _("🛒 Active members: {active}; bought twice or more: {repeat}").format(
            active=fmt.number(k.active_members), repeat=_rate(k.repeat_rate)
        ),
        _("🧾 Sales: {sales} for {money}; average check {check}; refunds {refunds}").format(
            sales=fmt.number(k.sales),
            money=fmt.money(k.sales_total, currency),
            check=_money(k.average_check, currency),
            refunds=fmt.money(k.refunds_total, currency),
        ),
        *given,
        *_walk_ins(k, currency),
        _(
            "💎 Customer lifetime value: {clv} (money spent since joining, {customers} buyers)"
        ).format(clv=_money(k.lifetime_value, currency), customers=fmt.number(k.customers)),
        _("🎯 Points issued: {issued}; redeemed: {redeemed}; redemption rate {rate}").format(
            issued=fmt.number(k.points_issued),
            redeemed=fmt.number(k.points_redeemed),
            rate=_rate(k.redemption_rate),
        ),
        (
            _("🤝 Invited friends rewarded for a purchase here: {rewarded} of {invited} ({rate})")
            if partner
            else _("🤝 Referral conversion: {rate} ({rewarded} of {invited} invited friends)")
        ).format(
            rewarded=fmt.number(k.invited_rewarded),
            invited=fmt.number(k.invited),
            rate=_rate(k.referral_conversion),
        ),
        (
            _("🔀 Also bought at other partners: {count} ({rate} of the active members)")
            if partner
            else _("🔀 Bought at 2+ partners: {count} ({rate} of the active members)")
        ).format(count=fmt.number(k.cross_partner_members), rate=_rate(k.cross_partner_rate)),
    ]


def _walk_ins(k: Kpis, currency: str) -> list[str]:
    """Sales without a member card (recorded by tills through the partner API), against the
    members' average check: said only when there were any."""
    if not k.walk_in_sales:
        return []
    return [
        _(
            "🚶 Without a member card: {sales} sales for {money}; average check {check} "
            "(members: {members})"
        ).format(
            sales=fmt.number(k.walk_in_sales),
            money=fmt.money(k.walk_in_total, currency),
            check=_money(k.walk_in_average_check, currency),
            members=_money(k.average_check, currency),
        )
    ]


def _sources(k: Kpis) -> str:
    """New members by the link they joined through, and the share that came from an ad."""
    names = {None: _("no link"), REFERRAL_SOURCE: _("a friend's invitation")}
    counts = " · ".join(
        f"{escape(names.get(source) or source or '')} {fmt.number(n)}"
        for source, n in k.joins_by_source
    )
    return _(
        "📣 Joined through: {sources}. After seeing the program advertised (a poster or a "
        "link with a source): {share} ({count} of {joins})"
    ).format(
        sources=counts or "—",
        share=_rate(k.advertised_share),
        count=fmt.number(k.advertised_joins),
        joins=fmt.number(k.new_members),
    )


def _chunks(lines: list[str]) -> Iterator[str]:
    """Lines joined into messages within Telegram's limit (many partners make a long table)."""
    chunk: list[str] = []
    for line in lines:
        if chunk and len("\n".join([*chunk, line])) > MESSAGE_LIMIT:
            yield "\n".join(chunk)
            chunk = []
        chunk.append(line)
    if chunk:
        yield "\n".join(chunk)


async def _send_chart(message: Message, k: Kpis, title: str, currency: str) -> None:
    labels = ChartLabels(
        sales=_("Number of sales"),
        active=_("Active members"),
        issued=_("Points issued"),
        redeemed=_("Points redeemed"),
        locale=fmt.locale(),
        currency=currency,
        sales_money=_("Sales, money"),
        money_axis=_("Sales, {currency}").format(currency=currency),
        count_axis=_("Sales and members"),
        points_axis=_("Points"),
        day_axis=_("Day"),
    )
    # Drawing takes a few hundred milliseconds of CPU: not on the event loop.
    png = await asyncio.to_thread(render_stats_chart, k.days, title, labels)
    await message.answer_photo(BufferedInputFile(png, filename="stats.png"), caption=escape(title))


async def _club(session: AsyncSession, program: Program, period: Period) -> list[str]:
    """The club's lines, when the program has a club."""
    if program.club is None:
        return []
    now = datetime.now(UTC)
    figures = await club_figures(session, start=period.start, end=period.end, now=now)
    return club_lines(figures, program, running=period.end > now)


async def coalition_stats(
    message: Message,
    command: CommandObject,
    session: AsyncSession,
    program: Program,
    staff: StaffInfo | None = None,
) -> None:
    period = _stats_period(command.args, program)
    if period is None:
        await _usage(message, "/stats")
        return
    assert message.from_user is not None
    k, rows = await coalition_report(session, program, start=period.start, end=period.end)
    await log_report(
        session,
        "stats",
        actor=message.from_user.id,
        staff=staff,
        start=period.start,
        end=period.end,
    )
    currency = program.program.currency
    await _send_chart(message, k, f"{program.program.name} · {_days(period)}", currency)
    lines = [
        f"📊 <b>{escape(program.program.name)}</b> · {_days(period)}",
        *_figures(k, currency, partner=False, discounts=has_discounts(program)),
        _sources(k),
        donations_line(
            await donation_figures(session, start=period.start, end=period.end), program
        ),
        rewards_line(await reward_figures(session, start=period.start, end=period.end)),
        *await _club(session, program, period),
        "",
        _("<b>By partner</b>"),
    ]
    for row in rows:
        p = row.kpis
        lines.append(
            f"<b>{escape(row.name)}</b>: "
            + _(
                "active {active} · sales {sales}, {money}, average {check} · repeat {repeat} · "
                "2+ partners {cross} · points +{issued} / −{redeemed}"
            ).format(
                active=fmt.number(p.active_members),
                sales=fmt.number(p.sales),
                money=fmt.money(p.sales_total, currency),
                check=_money(p.average_check, currency),
                repeat=_rate(p.repeat_rate),
                cross=_rate(p.cross_partner_rate),
                issued=fmt.number(p.points_issued),
                redeemed=fmt.number(p.points_redeemed),
            )
            + (
                " · " + _("discounts {money}").format(money=fmt.money(p.discounts_total, currency))
                if p.discounts_total
                else ""
            )
        )
    for text in _chunks(lines):
        await message.answer(text)


async def partner_stats(
    message: Message,
    command: CommandObject,
    session: AsyncSession,
    program: Program,
    staff: StaffInfo,
) -> None:
    # The partner is the manager's own, from their staff record loaded for this update.
    staff.require("partner_figures")
    assert staff.partner_id is not None and message.from_user is not None
    period = _stats_period(command.args, program)
    if period is None:
        await _usage(message, "/stats")
        return
    k = await kpis(
        session, program, start=period.start, end=period.end, partner_id=staff.partner_id
    )
    await log_report(
        session,
        "stats",
        actor=message.from_user.id,
        staff=staff,
        start=period.start,
        end=period.end,
        partner_id=staff.partner_id,
    )
    name = staff.partner_name or ""
    await _send_chart(message, k, f"{name} · {_days(period)}", program.program.currency)
    lines = [
        f"📊 <b>{escape(name)}</b> · {_days(period)}",
        *_figures(k, program.program.currency, partner=True, discounts=has_discounts(program)),
    ]
    rules = program.partner(staff.partner_slug or "")
    if rules is not None and rules.charity:
        figures = await donation_figures(
            session, start=period.start, end=period.end, partner_id=staff.partner_id
        )
        lines.append(donations_line(figures, program))
    else:
        lines.append(
            rewards_line(
                await reward_figures(
                    session, start=period.start, end=period.end, partner_id=staff.partner_id
                )
            )
        )
    for text in _chunks(lines):
        await message.answer(text)


async def settlement_report(
    message: Message,
    command: CommandObject,
    session: AsyncSession,
    program: Program,
    staff: StaffInfo | None = None,
) -> None:
    """The settlement CSV for a period that has ended: a calendar month (`2026-11`) or days
    (`2026-11-01..2026-11-15`); without a period, the last whole calendar month. Rolling
    periods (`month`: the last 30 days) are for /stats: settled every month they would overlap
    or leave gaps, and a period still running would report its end before it comes."""
    tz = program.program.timezone
    now = datetime.now(UTC)
    args = (command.args or "").strip()
    if args.lower() in ROLLING_WORDS:
        await message.answer(
            _(
                "Settlement is for calendar periods, so that consecutive reports neither overlap "
                "nor leave gaps: send /settlement for the last whole month, or a month like "
                "{month}, or days like {days}."
            ).format(
                month=f"{previous_month(now, tz).first_day:%Y-%m}", days=_example_days(now, tz)
            )
        )
        return
    period = _period(args, program) if args else previous_month(now, tz)
    if period is None:
        await _usage(message, "/settlement")
        return
    if period.end > now:
        await message.answer(
            _(
                "{period} has not ended yet, and settlement states where each partner stands at "
                "its end. Ask again once it is over; /stats gives the figures so far."
            ).format(period=_days(period))
        )
        return
    assert message.from_user is not None
    report = await settlement(session, program, start=period.start, end=period.end)
    await log_report(
        session,
        "settlement",
        actor=message.from_user.id,
        staff=staff,
        start=period.start,
        end=period.end,
    )
    out = io.StringIO()
    write_settlement(report, program.program.currency, out)
    # With a byte-order mark, spreadsheet programs read partners' names as UTF-8.
    data = out.getvalue().encode("utf-8-sig")
    # The file's name, its "First day" and "Last day", and the caption name the same days.
    filename = f"settlement-{report.first_day.isoformat()}-{report.last_day.isoformat()}.csv"
    currency = program.program.currency
    await message.answer_document(
        BufferedInputFile(data, filename=filename),
        caption=_(
            "Settlement for {period}, in {currency}: a positive amount is paid to the partner, "
            "a negative one by the partner."
        ).format(period=_days(period), currency=currency)
        + "\n"
        + _("Points members held at the end of {day}: {points}, a liability of {money}.").format(
            day=fmt.day(report.last_day),
            points=fmt.number(report.outstanding),
            money=fmt.money(report.liability, currency),
        )
        + _club_caption(report, currency),
    )


def _club_caption(report: Settlement, currency: str) -> str:
    """The club's money at the tills in the period, as /stats says it ("kept of … paid,
    … refunded"): what the partners kept is what they owe the coalition ("" for none)."""
    if not report.club_collected and not report.club_refunded:
        return ""
    if not report.club_refunded:
        return "\n" + _(
            "Club months sold at tills: {money} collected by the partners for the "
            "coalition (in their amounts)."
        ).format(money=fmt.money(report.club_collected, currency))
    return "\n" + _(
        "Club months at tills: {kept} kept of {collected} collected ({refunded} refunded in "
        "the period), owed by the partners to the coalition (in their amounts)."
    ).format(
        kept=fmt.money(report.club_money, currency),
        collected=fmt.money(report.club_collected, currency),
        refunded=fmt.money(report.club_refunded, currency),
    )


def build() -> Router:
    router = Router(name="stats")
    # Members skip the whole router: each command below is for owners or staff.
    router.message.filter(PrivateChat(), or_f(IsOwner(), IsStaff()))
    coalition = or_f(IsOwner(), IsStaff("coalition_figures"))
    router.message.register(coalition_stats, Command("stats"), coalition)
    router.message.register(partner_stats, Command("stats"), IsStaff("partner_figures"))
    router.message.register(settlement_report, Command("settlement"), coalition)
    return router
