"""/shift for cashiers; /today, /week and /refund for a partner's manager."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from html import escape

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message
from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import ngettext as _n
from sqlalchemy.ext.asyncio import AsyncSession

from bot.filters import IsStaff, PrivateChat
from bot.metrics import POSTINGS
from bot.views import formatting as fmt
from db.queries.reports import day_start, partner_figures, shift, week_start
from db.rules.points import parse_money
from db.rules.program import Program
from db.usecases.staff import StaffInfo
from db.usecases.till import till_refund


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
    operations = await shift(session, staff.id, start=start, end=now + timedelta(seconds=1))
    currency = program.program.currency
    if not operations:
        await message.answer(_("No operations yet today."))
        return
    zone = program.program.zone  # times as the till's clock shows them, not UTC
    lines = [_("🧾 <b>Your shift today</b>, {date}").format(date=fmt.day(now.astimezone(zone)))]
    sales = [op for op in operations if op.kind != "reverse"]
    money = sum((op.amount or Decimal(0) for op in sales), start=Decimal(0))
    paid = sum((op.paid or Decimal(0) for op in sales), start=Decimal(0))
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
        parts += [
            escape(op.member_name or "—"),
            f"{_kind(op.kind)} {fmt.money(op.amount or Decimal(0), currency)}",
            " ".join(moved) or "0",
        ]
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
    await message.answer("\n".join(lines))


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
                _("Paid with points: {money}. Sales refunded: {refunds}.").format(
                    money=fmt.money(f.paid_with_points, currency),
                    refunds=fmt.money(f.refunds, currency),
                ),
                _("Points issued: {issued}. Points redeemed: {redeemed}.").format(
                    issued=fmt.number(f.points_issued), redeemed=fmt.number(f.points_redeemed)
                ),
            ]
        )
    )


async def today(
    message: Message, session: AsyncSession, staff: StaffInfo, program: Program
) -> None:
    await _figures(message, session, staff, program, week=False)


async def this_week(
    message: Message, session: AsyncSession, staff: StaffInfo, program: Program
) -> None:
    await _figures(message, session, staff, program, week=True)


# ASCII digits, no more than a bigint holds.
# The sale's number as /shift shows it ("No. 17"), or bare, or after "#"; then "all" or an
# amount; then the reason (checked apart, to say what is missing).
REFUND_ARGS = re.compile(
    r"(?:no\.?\s*|№\s*|#)?(?P<sale>[0-9]{1,18})\s+(?P<how>\S+)(?:\s+(?P<reason>.+))?",
    re.IGNORECASE | re.DOTALL,
)
REFUND_USAGE = "/refund 1234 all reason · /refund 1234 5.00 reason"


async def refund(
    message: Message,
    command: CommandObject,
    session: AsyncSession,
    staff: StaffInfo,
    program: Program,
) -> None:
    typed = REFUND_ARGS.fullmatch((command.args or "").strip())
    if typed is None:
        await message.answer(
            _("Refund a sale: {usage}. The number is the one /shift shows.").format(
                usage=REFUND_USAGE
            )
        )
        return
    if not typed["reason"]:
        await message.answer(
            _("Please give a reason, after the amount: {usage}").format(usage=REFUND_USAGE)
        )
        return
    tx_id, how, reason = int(typed["sale"]), typed["how"], typed["reason"]
    amount = None if how.lower() in ("all", _("all").lower()) else parse_money(how)
    assert message.from_user is not None
    result = await till_refund(
        session,
        program,
        staff,
        transaction_id=tx_id,
        amount=amount,
        reason=reason,
        # The message identifies the request: Telegram re-delivering it posts nothing new.
        key=f"refund:{message.chat.id}:{message.message_id}",
    )
    currency = program.program.currency
    # One figure to hand back: the money part less what spent points were worth.
    lines = [
        _("↩️ Refunded {amount} of sale No. {sale}; give back {money} in money.").format(
            amount=fmt.money(result.amount, currency),
            sale=tx_id,
            money=fmt.money(result.cash_back, currency),
        ),
        _("Points returned to the member: {returned}; taken back: {clawed}.").format(
            returned=fmt.number(result.points_returned),
            clawed=fmt.number(result.points_clawed_back),
        ),
    ]
    if result.shortfall:
        lines.append(
            _(
                "The member had already spent {points} earned with this sale: their value, "
                "{money}, is already kept out of the sum above."
            ).format(
                points=fmt.points(result.shortfall),
                money=fmt.money(result.money_refund - result.cash_back, currency),
            )
        )
    if result.referral is not None:
        lines.append(
            _(
                "Invitation rewards taken back: {member} from the member, {inviter} from the "
                "friend who invited them."
            ).format(
                member=fmt.number(result.referral.invitee_points),
                inviter=fmt.number(result.referral.inviter_points),
            )
        )
        if result.referral.inviter_shortfall:
            lines.append(
                _(
                    "The inviting friend had already spent {points} of their reward: the "
                    "program bears them, the customer does not."
                ).format(points=fmt.points(result.referral.inviter_shortfall))
            )
    await message.answer("\n".join(lines))
    if not result.replayed:
        POSTINGS.labels("reverse").inc()


def build() -> Router:
    router = Router(name="figures")
    # Members skip the whole router: each command below is for staff.
    router.message.filter(PrivateChat(), IsStaff())
    router.message.register(show_shift, Command("shift"), IsStaff("shift"))
    router.message.register(today, Command("today"), IsStaff("partner_figures"))
    router.message.register(this_week, Command("week"), IsStaff("partner_figures"))
    router.message.register(refund, Command("refund"), IsStaff("refund"))
    return router
