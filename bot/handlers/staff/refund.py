"""/refund, for a partner's manager: parse the command, call the use case, say what to hand
back. Who may refund and how the request is keyed are the use case's (db/usecases/till.py)."""

from __future__ import annotations

import re
from decimal import Decimal
from html import escape

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from bot.filters import IsStaff, PrivateChat
from bot.metrics import POSTINGS
from bot.views import formatting as fmt
from bot.views import promotions, stamps
from db.rules.errors import DomainError
from db.rules.points import currency_signs, parse_till_amount
from db.rules.program import Program
from db.usecases.staff import StaffInfo
from db.usecases.till import refund_key, till_refund

# ASCII digits, no more than a bigint holds.
# The sale's number as /shift shows it ("No. 17"), or bare, or after "#"; then "all" or an
# amount; then the reason (checked apart, to say what is missing).
REFUND_ARGS = re.compile(
    r"(?:no\.?\s*|№\s*|#)?(?P<sale>[0-9]{1,18})\s+(?P<how>\S+)(?:\s+(?P<reason>.+))?",
    re.IGNORECASE | re.DOTALL,
)
REFUND_USAGE = "/refund 1234 all reason · /refund 1234 5.00 reason"


class _NotAnAmount(Exception):
    def __init__(self, text: str) -> None:
        self.text = text


def _refund_amount(words: list[str], signs: frozenset[str]) -> tuple[Decimal | None, int]:
    """What /refund's words after the sale's number start with: "all" (None), or an amount
    as the till reads it (parse_till_amount: "5", "5.00 PLN", "PLN 5", "zł 5"); and how many
    words it took. A number right after the amount is refused with it, not read as the
    reason: "1 250" is never 1."""
    if words[0].lower() in ("all", _("all").lower()):
        return None, 1
    for used in (2, 1):
        typed = " ".join(words[:used])
        if len(words) < used or "#" in typed:
            continue
        try:
            amount = parse_till_amount(typed, signs).amount
        except DomainError:
            continue
        if used == 1 and len(words) > 1 and words[1][0].isdigit():
            raise _NotAnAmount(" ".join(words[:2]))
        return amount, used
    raise _NotAnAmount(words[0])


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
    tx_id, rest = int(typed["sale"]), typed["how"] + " " + (typed["reason"] or "")
    currency = program.program.currency
    try:
        amount, used = _refund_amount(rest.split(), currency_signs(currency, fmt.BABEL_LOCALES))
    except _NotAnAmount as refused:
        await message.answer(
            _(
                "“{text}” is not an amount I can use: nothing was refunded. Type it as at the "
                "till, like 12.50 or 12,50, the currency before or after it: {usage}"
            ).format(text=escape(refused.text[:40]), usage=REFUND_USAGE)
        )
        return
    parts = rest.split(None, used)
    reason = parts[used] if len(parts) > used else ""
    if not reason.strip():
        await message.answer(
            _("Please give a reason, after the amount: {usage}").format(usage=REFUND_USAGE)
        )
        return
    assert message.from_user is not None
    result = await till_refund(
        session,
        program,
        staff,
        transaction_id=tx_id,
        amount=amount,
        reason=reason,
        key=refund_key(message.chat.id, message.message_id),
    )
    # One figure to hand back: the money part less what spent points were worth.
    lines = [
        _("↩️ Refunded {amount} of sale No. {sale}; give back {money} in money.").format(
            amount=fmt.money(result.amount, currency),
            sale=tx_id,
            money=fmt.money(result.cash_back, currency),
        ),
        # Taken back: all of it, the sale's own points and its promotions' (each said below).
        _("Points returned to the member: {returned}; taken back: {clawed}.").format(
            returned=fmt.number(result.points_returned),
            clawed=fmt.number(
                result.points_clawed_back + sum(b.points for b in result.promotions)
            ),
        ),
    ]
    if result.sale_discount:
        # The amount refunded counts from what the sale charged: the discount is not money
        # the customer paid, so none of it goes back.
        lines.append(
            _(
                "Sale No. {sale} had a discount of {discount}: refunds are of the money it "
                "charged, never of the discount."
            ).format(sale=tx_id, discount=fmt.money(result.sale_discount, currency))
        )
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
    # What it took back of the sale's promotions; a claimed promotion voucher stays given.
    lines += promotions.refund_lines(program, [b.params() for b in result.promotions], till=True)
    lines += stamps.refund_lines(program, [b.params() for b in result.stamps], till=True)
    await message.answer("\n".join(lines))
    if not result.replayed:
        POSTINGS.labels("reverse").inc()


def build() -> Router:
    router = Router(name="refund")
    router.message.filter(PrivateChat(), IsStaff("refund"))
    router.message.register(refund, Command("refund"))
    return router
