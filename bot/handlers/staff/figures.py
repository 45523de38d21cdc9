"""/shift for cashiers; /today and /week for a partner's manager."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from html import escape

from aiogram import Router
from aiogram.filters import Command
from aiogram.types import Message
from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import ngettext as _n
from sqlalchemy.ext.asyncio import AsyncSession

from bot.filters import IsStaff, PrivateChat
from bot.views import formatting as fmt
from bot.views.club_figures import till_lines
from bot.views.gifts import donations_line
from db.ledger.models import TxKind
from db.queries.donations import donation_figures
from db.queries.reports import (
    ClubTakings,
    Operation,
    PartnerFigures,
    cash_handed_back,
    club_takings,
    day_start,
    partner_figures,
    shift,
    week_start,
)
from db.rules.discounts import has_discounts
from db.rules.program import Program
from db.usecases.staff import StaffInfo


def _kind(kind: str) -> str:
    return {
        "earn": _("sale"),
        "redeem": _("sale with points"),
        "reverse": _("refund"),
    }.get(kind, kind)


async def show_shift(
    message: Message, session: AsyncSession, staff: StaffInfo, program: Program
) -> None:
    now = datetime.now(UTC)
    start = day_start(now, program.program.timezone)
    end = now + timedelta(seconds=1)
    operations = await shift(session, staff.id, start=start, end=end)
    # Months of the club this cashier sold today: apart from the sales.
    club = (
        await club_takings(session, start=start, end=end, staff_id=staff.id)
        if program.club is not None
        else ClubTakings()
    )
    if not operations and not club.months and not club.refunded:
        await message.answer(_("No operations yet today."))
        return
    zone = program.program.zone  # times as the till's clock shows them, not UTC
    lines = [_("🧾 <b>Your shift today</b>, {date}").format(date=fmt.day(now.astimezone(zone)))]
    if operations:
        lines += await _operations(session, program, staff, operations, start=start, end=end)
    sold = any(op.kind in TxKind.SALES for op in operations)
    lines += till_lines(program, club, sales=sold)
    await message.answer("\n".join(lines))


async def _operations(
    session: AsyncSession,
    program: Program,
    staff: StaffInfo,
    operations: list[Operation],
    *,
    start: datetime,
    end: datetime,
) -> list[str]:
    """/shift's lines of the cashier's operations today, and their totals."""
    currency = program.program.currency
    zone = program.program.zone  # times as the till's clock shows them, not UTC
    lines: list[str] = []
    sales = [op for op in operations if op.kind != "reverse"]
    # Sales in the money they charged (the amount less a tier discount), as refunds are.
    money = sum((_charged(op) for op in sales), start=Decimal(0))
    paid = sum((op.paid or Decimal(0) for op in sales), start=Decimal(0))
    # What each refund handed back from the till (the rest went back as points).
    cash = (
        await cash_handed_back(session, program, start=start, end=end, staff_id=staff.id)
        if len(sales) < len(operations)
        else {}
    )
    for op in operations:
        moved = []
        if op.points_in:
            moved.append("+" + fmt.number(op.points_in))
        if op.points_out:
            moved.append("−" + fmt.number(op.points_out))
        # The sale's number (what /refund takes), then the receipt number the cashier typed.
        parts = [
            fmt.clock(op.created_at.astimezone(zone)),
            _("No. {number}").format(number=op.transaction_id),
        ]
        if op.receipt:
            parts.append(_("receipt {receipt}").format(receipt=escape(op.receipt)))
        parts.append(escape(op.member_name or "—"))
        if op.kind == "voucher":  # what it was for; a funded one moves no member's points
            parts.append(
                _("voucher: {title}").format(title=fmt.reward_html(program, op.reason or ""))
            )
            parts += [" ".join(moved)] if moved else []
        else:
            sale = f"{_kind(op.kind)} {fmt.money(_charged(op), currency)}"
            if op.discount:
                sale += " " + _("(after a discount of {money})").format(
                    money=fmt.money(op.discount, currency)
                )
            if op.transaction_id in cash:
                sale += " " + _("(cash back {money})").format(
                    money=fmt.money(cash[op.transaction_id], currency)
                )
            parts += [sale, " ".join(moved) or "0"]
        lines.append(" · ".join(parts))
    lines.append(
        _n(
            "Total: {n} operation, sales {money} ({paid} of it in money), points "
            "+{issued} / −{redeemed}.",
            "Total: {n} operations, sales {money} ({paid} of it in money), points "
            "+{issued} / −{redeemed}.",
            len(operations),
        ).format(
            n=fmt.number(len(operations)),
            money=fmt.money(money, currency),
            paid=fmt.money(paid, currency),
            issued=fmt.number(sum(op.points_in for op in operations)),
            redeemed=fmt.number(sum(op.points_out for op in operations)),
        )
    )
    if cash:
        lines.append(
            _("Cash handed back for refunds: {money}.").format(
                money=fmt.money(sum(cash.values(), start=Decimal(0)), currency)
            )
        )
    given = sum((op.discount or Decimal(0) for op in sales), start=Decimal(0))
    if given or has_discounts(program):
        lines.append(_discounts_given(given, currency))
    return lines


def _charged(op: Operation) -> Decimal:
    """What an operation's sale charged: its amount less its discount (a refund: its amount,
    money charged given back)."""
    return (op.amount or Decimal(0)) - (op.discount or Decimal(0))


def _discounts_given(money: Decimal, currency: str) -> str:
    """Tier discounts are at the partner's own cost: its figures say how much it gave."""
    return _("Discounts given: {money}.").format(money=fmt.money(money, currency))


async def _figures(
    message: Message, session: AsyncSession, staff: StaffInfo, program: Program, week: bool
) -> None:
    now = datetime.now(UTC)
    tz = program.program.timezone
    start = week_start(now, tz) if week else day_start(now, tz)
    assert staff.partner_id is not None
    f = await partner_figures(
        session, staff.partner_id, start=start, end=now + timedelta(seconds=1)
    )
    currency = program.program.currency
    title = _("This week") if week else _("Today")
    rules = program.partner(staff.partner_slug or "")
    if rules is not None and rules.charity:  # a charity sells nothing: its donations
        donations = await donation_figures(
            session, start=start, end=now + timedelta(seconds=1), partner_id=staff.partner_id
        )
        await message.answer(
            f"📊 <b>{escape(staff.partner_name or '')}</b>: {title}\n"
            + donations_line(donations, program)
        )
        return
    cash = await cash_handed_back(
        session, program, start=start, end=now + timedelta(seconds=1), partner_id=staff.partner_id
    )
    club = (
        await club_takings(
            session, start=start, end=now + timedelta(seconds=1), partner_id=staff.partner_id
        )
        if program.club is not None
        else ClubTakings()
    )
    await message.answer(
        "\n".join(
            [
                f"📊 <b>{escape(staff.partner_name or '')}</b>: {title}",
                _n(
                    "Sales to members: {sales} ({n} member), {money}.",
                    "Sales to members: {sales} ({n} members), {money}.",
                    f.members,
                ).format(
                    sales=fmt.number(f.sales),
                    n=fmt.number(f.members),
                    money=fmt.money(f.revenue, currency),
                ),
                _(
                    "Paid with points: {money}. Sales refunded: {refunds} (cash handed back: "
                    "{cash})."
                ).format(
                    money=fmt.money(f.paid_with_points, currency),
                    refunds=fmt.money(f.refunds, currency),
                    cash=fmt.money(sum(cash.values(), start=Decimal(0)), currency),
                ),
                *_points_lines(f),
                *(
                    [_discounts_given(f.discounts, currency)]
                    if f.discounts or has_discounts(program)
                    else []
                ),
                *till_lines(program, club, sales=bool(f.sales)),
            ]
        )
    )


def _points_lines(f: PartnerFigures) -> list[str]:
    """The partner's points, each figure a count of one thing (docs/cashier-and-manager.md):
    what its own sales gave members and what refunds took back of such points; what it
    funded through promotions (at any partner) and funded vouchers, and what refunds took
    back of its promotions' shares; what members spent with it."""
    lines = [
        _("Points its sales gave members: {issued}.").format(issued=fmt.number(f.points_issued))
        if not f.points_taken_back
        else _(
            "Points its sales gave members: {issued}; refunds took back {back} of such points."
        ).format(issued=fmt.number(f.points_issued), back=fmt.number(f.points_taken_back))
    ]
    if f.points_funded or f.funded_taken_back:
        lines.append(
            _("Points it funded through promotions and vouchers: {funded}.").format(
                funded=fmt.number(f.points_funded)
            )
            if not f.funded_taken_back
            else _(
                "Points it funded through promotions and vouchers: {funded}; refunds took back "
                "{back} of its promotions' points."
            ).format(funded=fmt.number(f.points_funded), back=fmt.number(f.funded_taken_back))
        )
    lines.append(
        _("Points members spent here: {redeemed}.").format(redeemed=fmt.number(f.points_redeemed))
    )
    return lines


async def today(
    message: Message, session: AsyncSession, staff: StaffInfo, program: Program
) -> None:
    await _figures(message, session, staff, program, week=False)


async def this_week(
    message: Message, session: AsyncSession, staff: StaffInfo, program: Program
) -> None:
    await _figures(message, session, staff, program, week=True)


def build() -> Router:
    router = Router(name="figures")
    # Members skip the whole router: each command below is for staff.
    router.message.filter(PrivateChat(), IsStaff())
    router.message.register(show_shift, Command("shift"), IsStaff("shift"))
    router.message.register(today, Command("today"), IsStaff("partner_figures"))
    router.message.register(this_week, Command("week"), IsStaff("partner_figures"))
    return router
