"""A club payment Telegram took that the bot could not record (the database failed): what the
payer is told, the owners' direct message (sent through the Bot API, as the outbox is in the
database) with the way to settle it, and the owner's `/club_refund TELEGRAM-ID CHARGE-ID
STARS` that refunds such a Stars charge (bot/handlers/office/club_charges.py)."""

from __future__ import annotations

from decimal import Decimal
from html import escape

from aiogram.utils.i18n import gettext as _

from bot.views.club import STARS, paid, settle

USAGE = "/club_refund 123456789 stxAbC123 250"


def unrecorded(amount: str, *, told: bool, charge_id: str) -> str:
    """Said to the payer: the money arrived, nothing is recorded yet, who sees to it."""
    if told:
        return _(
            "Your payment of {amount} arrived; it could not be recorded yet. The owners have "
            "been told and will set it right; nothing more to do."
        ).format(amount=amount)
    return _(
        "Your payment of {amount} arrived; it could not be recorded yet, and the program's "
        "owner could not be told just now. Please send /paysupport later with this payment's "
        "id: <code>{charge}</code>."
    ).format(amount=amount, charge=escape(charge_id))


def unrecorded_owner(
    *,
    name: str,
    telegram_id: int,
    currency: str,
    amount: Decimal,
    charge_id: str,
    provider_charge_id: str | None,
) -> str:
    """The owners' message: who paid what, the charges, and how to settle it."""
    head = _(
        "⚠️ A club payment could not be recorded (the database failed): {amount} from {name} "
        "(Telegram id {id}). Telegram charge <code>{charge}</code>, provider charge "
        "<code>{provider}</code>. It bought nothing yet, and they were told you will set it "
        "right."
    ).format(
        amount=paid(amount, currency),
        name=escape(name) or "—",
        id=telegram_id,
        charge=escape(charge_id),
        provider=escape(provider_charge_id or "—"),
    )
    return head + "\n" + settle(telegram_id, currency, amount, charge_id)


def usage() -> str:
    return _(
        "Usage: /club_refund TELEGRAM-ID CHARGE-ID STARS, like {example}: refunds a Telegram "
        "Stars payment the bot could not record (the owners' message about it gives the "
        "command)."
    ).format(example=USAGE)


def recorded_payment(number: int) -> str:
    return _(
        "This charge is recorded as club payment No. {number}: refund it from the list of "
        "/club_refund CARD-NUMBER (its member's card). Nothing was done."
    ).format(number=number)


def refused(reason: str) -> str:
    return _("Telegram refused the refund: {reason}. Nothing was recorded.").format(
        reason=escape(reason)
    )


def not_confirmed() -> str:
    return _(
        "Telegram did not confirm the refund, so nothing was recorded. Send the command again "
        "in a moment: a refund Telegram did make is then recorded."
    )


def refunded(telegram_id: int, stars: int, charge_id: str, *, already: bool, new: bool) -> str:
    """The owner's answer. `already`: Telegram had refunded it before; `new`: recorded now
    (else it was on record before, as a payment that bought nothing, and stays so)."""
    if already:
        text = _(
            "Telegram says charge <code>{charge}</code> was refunded already ({amount} to "
            "Telegram id {id}): nothing more to do."
        )
    elif new:
        text = _(
            "✅ Refunded: Telegram gives {amount} back to Telegram id {id} (charge "
            "<code>{charge}</code>). Recorded."
        )
    else:
        text = _(
            "✅ Refunded: Telegram gives {amount} back to Telegram id {id} (charge "
            "<code>{charge}</code>). It was on record already, as a payment that bought nothing."
        )
    return text.format(amount=paid(stars, STARS), id=telegram_id, charge=escape(charge_id))


def refunded_not_recorded(telegram_id: int, stars: int) -> str:
    return _(
        "✅ Telegram gives {amount} back to Telegram id {id}, but recording the refund failed. "
        "Nothing more to do for the money; send the command again later to record it "
        "(Telegram then says it was refunded already)."
    ).format(amount=paid(stars, STARS), id=telegram_id)


def payer_told(told: bool) -> str:
    return (
        _("They were told.")
        if told
        else _("They could not be told (they blocked the bot, or Telegram refused).")
    )


def refunded_to_payer(stars: int) -> str:
    """The payer's news: the payment that could not be recorded was given back."""
    return _(
        "↩️ Your payment of {amount}, which could not be recorded, was refunded: Telegram "
        "gives the Stars back."
    ).format(amount=paid(stars, STARS))
