"""Domain errors become a short message in the reader's language; anything else is logged
with its update id and the person is asked to try again."""

from __future__ import annotations

import logging
from collections.abc import Callable
from html import escape
from typing import Any

from aiogram import Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import ExceptionTypeFilter
from aiogram.types import ErrorEvent
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from bot.views import formatting as fmt
from bot.views.vouchers import MESSAGES as VOUCHER_MESSAGES
from db.rules.errors import DomainError
from db.rules.program import Program

log = logging.getLogger(__name__)


def _money(params: dict[str, Any], key: str) -> str:
    """An amount in the error, with the program's currency when the reporter knows it."""
    currency = params.get("currency")
    return fmt.money(params[key], currency) if currency else fmt.number(params[key])


def _receipt_taken(p: dict[str, Any]) -> str:
    """What differs from the sale posted under that receipt number, when known."""
    differs = p.get("differs")
    if differs == "member":
        text = _("Receipt {receipt} was already posted here today for another member.")
    elif differs == "amount":
        text = _("Receipt {receipt} was already posted here today for another amount.")
    elif differs == "discount":
        text = _("Receipt {receipt} was already posted here today with another discount.")
    elif differs == "points":
        text = _("Receipt {receipt} was already posted here today with other points.")
    elif differs == "lines":
        text = _("Receipt {receipt} was already posted here today with other itemised lines.")
    else:
        return _(
            "Receipt {receipt} was already posted here today for another member or amount. "
            "Check the number; /shift lists today's sales."
        ).format(receipt=escape(str(p["receipt"])))
    check = _("Check the number; /shift lists today's sales.")
    return text.format(receipt=escape(str(p["receipt"]))) + " " + check


MESSAGES: dict[str, Callable[[dict[str, Any]], str]] = {
    "invalid_amount": lambda p: _(
        "That is not an amount I can use: {amount}. Type it like 12.50."
    ).format(amount=escape(str(p.get("amount", "")))),
    "invalid_receipt": lambda p: _(
        "A receipt number goes after # and is 1 to {max} letters, digits or signs, like "
        "12.50 #A-1043."
    ).format(max=p["max"]),
    "receipt_taken": lambda p: _receipt_taken(p),
    "amount_too_large": lambda p: _(
        "That is more than {max}, the largest purchase allowed. Check the amount."
    ).format(max=_money(p, "max")),
    "invalid_points": lambda p: _("That is not a number of points I can use."),
    "not_enough_points": lambda p: _("Not enough points."),
    "redeem_limit_exceeded": lambda p: _("Points can pay at most {max} on this purchase.").format(
        max=fmt.points(p["max"])
    ),
    "idempotency_conflict": lambda p: _(
        "This operation was already done with other details. Start it again."
    ),
    "unknown_member": lambda p: _("No such member."),
    "unknown_partner": lambda p: _("No such partner."),
    "unknown_transaction": lambda p: _("No such transaction."),
    "not_reversible": lambda p: _not_reversible(p),
    "already_reversed": lambda p: _(
        "This sale was already refunded in full. Nothing was changed."
    ),
    "refund_too_large": lambda p: _(
        "At most {max} of this sale is left to refund. Nothing was changed."
    ).format(max=_money(p, "max")),
    "wrong_partner": lambda p: _("This belongs to another partner."),
    "reason_required": lambda p: _("Please give a reason."),
    "invalid_token": lambda p: _("This link is not valid. Check it, or ask for a new one."),
    "own_card": lambda p: _(
        "This is your own member card: staff cannot credit or redeem on it. Another cashier "
        "can serve you."
    ),
    "too_many_lookups": lambda p: _(
        "Too many card numbers that match no member in the last {minutes} minutes. Scan the "
        "member's QR code, or type the number again later."
    ).format(minutes=p["minutes"]),
    "card_expired": lambda p: _("This card code has expired: ask the member to open /card again."),
    "invalid_invite": lambda p: _(
        "This staff invite cannot be used: it was used already, has expired (invites last 24 "
        "hours) or is incomplete. Ask the program's owner for a new one."
    ),
    "not_staff": lambda p: _not_staff(p),
    "request_closed": lambda p: _(
        "This request is already closed: it was answered, cancelled or has expired. Nothing "
        "more happens with it."
    ),
    "discount_changed": lambda p: _(
        "The member's discount changed since the amount was shown (their tier or club "
        "membership changed). Nothing was posted. Scan the card again."
    ),
    "club_price_changed": lambda p: _(
        "The price of a month of the club has changed: it is now {price}. Nothing was "
        "recorded. Scan the card again."
    ).format(price=_money(p, "price")),
    "no_club": lambda p: _("The program has no club to join this way. Nothing was paid."),
    "repeat_sale": lambda p: _(
        "The same amount was just posted to this member, so it was not posted again. Scan the "
        "card again if this is another sale."
    ),
    # Gifts and donations (db/rules/gifts.py).
    "gifting_off": lambda p: _("Gifting points to other members is off in this program."),
    "gift_limit": lambda p: _(
        "You can give at most {max} a day, and {left} are left today. Nothing was held."
    ).format(max=fmt.points(p["max"]), left=fmt.points(p["left"])),
    "gift_closed": lambda p: _gift_closed(str(p.get("status", ""))),
    "own_gift": lambda p: _(
        "You cannot accept your own gift. Send the link to a friend; /gift lists your open gifts."
    ),
    "not_a_charity": lambda p: _("Donations go only to the program's charities: see /donate."),
    "charity_takes_no_sales": lambda p: _(
        "This partner is a charity: it takes members' donated points (/donate), not sales. "
        "Nothing was posted."
    ),
    # The partner API's (db/usecases/api/): its clients read them as problem details.
    "invalid_lines": lambda p: _(
        "A line of the sale cannot be used ({field}). Nothing was posted."
    ).format(field=escape(str(p.get("field", "lines")))),
    "lines_dont_add_up": lambda p: _(
        "The sale's lines add up to {total}, not to its amount {amount}. Nothing was posted."
    ).format(total=_money(p, "total"), amount=_money(p, "amount")),
    "unknown_sale": lambda p: _("No sale here has document number {document} that day.").format(
        document=escape(str(p.get("document", "")))
    ),
    **VOUCHER_MESSAGES,  # the rewards catalogue's and the till's voucher refusals
}


def _gift_closed(status: str) -> str:
    if status == "accepted":
        return _("This gift was already accepted by someone else.")
    if status == "accepted_by_you":
        return _("You have already accepted this gift.")
    if status == "returned":
        return _(
            "This gift is no longer available: the giver took it back, or nobody accepted it "
            "in time."
        )
    if status == "expired":
        return _("This gift has expired: its points go back to the giver.")
    return _("This gift link is not valid. Check it, or ask your friend for a new one.")


def _not_reversible(p: dict[str, Any]) -> str:
    if p.get("kind") == "voucher":  # a claim is no sale: there is nothing to hand back
        return _(
            "No. {number} is a voucher claim, not a sale: it cannot be refunded, and a claim "
            "cannot be undone in the bot. If it was claimed by mistake, contact the program's "
            "owner. Nothing was changed."
        ).format(number=escape(str(p.get("transaction", ""))))
    return _("This transaction cannot be refunded. Nothing was changed.")


def _not_staff(p: dict[str, Any]) -> str:
    if "staff" in p:  # an owner naming a staff ID that is not (or no longer) staff
        return _("No active staff member has ID {id}: /staff_list shows the IDs.").format(
            id=escape(str(p["staff"]))
        )
    return _(
        "Your staff role does not allow this, or you are no longer staff. /help shows what "
        "you can do; the program's owner can give you another role."
    )


def describe(error: DomainError, currency: str | None = None) -> str:
    render = MESSAGES.get(error.code)
    if render is None:
        return _("That did not work. Please try again.")
    return render({**error.params, "currency": currency} if currency else error.params)


def committed(session: AsyncSession | None) -> bool:
    """Whether this update's work was saved before the failure (see db/engine.py)."""
    return session is not None and bool(session.info.get("committed"))


async def domain_error(event: ErrorEvent, program: Program | None = None) -> None:
    """A refusal: the use case that raised it wrote nothing (at most an audit row of the
    attempt), so its message is the whole truth."""
    assert isinstance(event.exception, DomainError)
    currency = program.program.currency if program is not None else None
    await _tell(event, describe(event.exception, currency))


async def unexpected(event: ErrorEvent, session: AsyncSession | None = None) -> None:
    log.exception("update %s failed", event.update.update_id, exc_info=event.exception)
    if committed(session):
        # Never "nothing was changed" about committed work; a retry could do it twice.
        assert session is not None
        text = (
            _(
                "This was done and saved, but showing you the result failed. Do not repeat "
                "it: the messages it owes are on their way."
            )
            if session.info.get("owed")
            else _("This was done and saved, but showing you the result failed. Do not repeat it.")
        )
    else:
        text = _(
            "Something went wrong on our side; nothing was changed. Please try again in a moment."
        )
    await _tell(event, text)


async def _tell(event: ErrorEvent, text: str) -> None:
    update = event.update
    try:
        if update.callback_query is not None:
            query = update.callback_query
            try:
                answered = await query.answer(text, show_alert=True)
            except TelegramBadRequest:
                answered = False
            if not answered and query.bot is not None:
                # The press was answered already (by the handler, or by its first handling
                # when it came again) or too long ago: Telegram takes one answer, for a
                # while, so say it in the chat instead (bot/retry.py LateAnswerMiddleware).
                await query.bot.send_message(query.from_user.id, text)
        elif update.message is not None:
            await update.message.answer(text)
    except Exception:  # the error report itself must never raise
        log.warning("could not report the error of update %s", update.update_id, exc_info=True)


def build() -> Router:
    router = Router(name="errors")
    router.errors.register(domain_error, ExceptionTypeFilter(DomainError))
    router.errors.register(unexpected)
    return router
