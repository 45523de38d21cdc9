"""Payments for the fake Bot API: invoices, the pre-checkout round trip, charges, refunds and
Telegram Stars subscriptions, as the Bot API does them.

The bot makes an invoice (``createInvoiceLink`` for a link, ``sendInvoice`` for a message in
a chat); a test, acting as the user, pays it (``FakeTelegramServer.pay``). Telegram then asks
the bot with a ``pre_checkout_query`` update and waits up to 10 seconds for
``answerPreCheckoutQuery``: no answer, a late one or ``ok=False`` fails the payment, and the
user sees the bot's ``error_message``. On ``ok=True`` the money is taken and a message with
``successful_payment`` arrives in the user's chat with the bot. A Stars subscription
(``subscription_period``) is charged again by ``renew_subscription`` unless the user or the
bot cancelled it (``editUserStarSubscription``); a renewal asks nothing first. The bot may
re-enable only a subscription it cancelled itself: one the user cancelled in Telegram's own
settings stays cancelled (Telegram: "Pass False to allow the user to re-enable a subscription
that was previously canceled by the bot").

Which charge id names a subscription: Telegram documents ``editUserStarSubscription``'s
``telegram_payment_charge_id`` as "Telegram payment identifier for the subscription". The
bot sends the charge id of the subscription's latest payment (db/usecases/club.py keeps the
newest as ``club_memberships.subscription_charge_id``: the first charge, then each
renewal's). This fake accepts any charge of the subscription, first or renewal, so it cannot
tell a right id from a wrong one of the same subscription; whether Telegram accepts a
renewal's charge id is not documented.

Telegram's rules that a bot can trip over are checked and refused with Telegram's errors:
Stars (currency ``XTR``) take no provider token and exactly one price, subscriptions exist
only for Stars and only for 30 days, prices are whole numbers in the currency's smallest
unit, a charge is refunded at most once.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from babel.numbers import list_currencies

from .server import JSON, RecordedRequest, bad_request

if TYPE_CHECKING:
    from .server import FakeTelegramServer

STARS = "XTR"
# The only subscription period Telegram allows (30 days), and the most a month may cost.
SUBSCRIPTION_PERIOD = 2592000
MAX_SUBSCRIPTION_STARS = 10_000
# Telegram waits this long for answerPreCheckoutQuery before it fails the payment.
PRE_CHECKOUT_TIMEOUT = 10.0
INVOICE_LINK_PREFIX = "https://t.me/$"


@dataclass
class Invoice:
    """What the bot asked to be paid, as ``createInvoiceLink`` or ``sendInvoice`` got it."""

    title: str
    description: str
    payload: str
    currency: str
    prices: list[JSON]
    provider_token: str = ""
    subscription_period: int | None = None
    link: str | None = None  # createInvoiceLink's answer
    chat_id: int | None = None  # sendInvoice's message
    message_id: int | None = None

    @property
    def total_amount(self) -> int:
        return sum(int(price["amount"]) for price in self.prices)


@dataclass
class Subscription:
    """A Telegram Stars subscription: charged every period until cancelled."""

    user: JSON
    invoice: Invoice
    expiration_date: int
    charges: list[str] = field(default_factory=list)
    is_canceled: bool = False
    canceled_by_user: bool = False  # in Telegram's settings: the bot cannot re-enable it


@dataclass
class Charge:
    """One payment Telegram took: the ``successful_payment`` the bot was sent."""

    telegram_payment_charge_id: str
    provider_payment_charge_id: str
    user: JSON
    invoice: Invoice
    currency: str
    total_amount: int
    successful_payment: JSON
    message: JSON
    subscription: Subscription | None = None
    refunded: bool = False


@dataclass
class PaymentOutcome:
    """How paying an invoice ended. ``ok`` False: nothing was taken; ``error_message`` is
    what the user saw (the bot's refusal, or Telegram's own when the bot did not answer in
    time); ``answered`` says whether the bot answered the pre-checkout query in time."""

    ok: bool
    error_message: str | None = None
    answered: bool = True
    charge: Charge | None = None

    @property
    def message(self) -> JSON | None:
        return self.charge.message if self.charge else None


@dataclass
class _PreCheckout:
    query: JSON
    answer: asyncio.Future[JSON]


class FakePayments:
    """The payments part of a FakeTelegramServer (``server.payments``)."""

    def __init__(self, server: FakeTelegramServer) -> None:
        self.server = server
        self.pre_checkout_timeout = PRE_CHECKOUT_TIMEOUT
        # None: any non-empty provider token works; else only these.
        self.provider_tokens: set[str] | None = None
        self.invoices: list[Invoice] = []
        self.charges: dict[str, Charge] = {}
        self.subscriptions: list[Subscription] = []
        self.failed: list[PaymentOutcome] = []
        self.late_answers: list[JSON] = []  # answers that came after the deadline
        self._links: dict[str, Invoice] = {}
        self._messages: dict[tuple[int, int], Invoice] = {}
        self._open: dict[str, _PreCheckout] = {}
        self._numbers = itertools.count(1)

    def method_table(self) -> dict[str, Any]:
        return {
            "createinvoicelink": self._create_invoice_link,
            "sendinvoice": self._send_invoice,
            "answerprecheckoutquery": self._answer_pre_checkout_query,
            "refundstarpayment": self._refund_star_payment,
            "edituserstarsubscription": self._edit_user_star_subscription,
        }

    # ----------------------------------------------------------------- invoices

    def _invoice(self, params: JSON, *, link: bool) -> Invoice:
        """The invoice in a createInvoiceLink/sendInvoice call, refused as Telegram would."""
        title, description = str(params.get("title") or ""), str(params.get("description") or "")
        payload = str(params.get("payload") or "")
        if not 1 <= len(title) <= 32:
            raise bad_request("INVOICE_TITLE_INVALID")
        if not 1 <= len(description) <= 255:
            raise bad_request("INVOICE_DESCRIPTION_INVALID")
        if not 1 <= len(payload.encode()) <= 128:
            raise bad_request("INVOICE_PAYLOAD_INVALID")
        currency = str(params.get("currency") or "")
        if currency != STARS and currency not in list_currencies():
            raise bad_request("CURRENCY_INVALID")
        prices = params.get("prices")
        if not isinstance(prices, list) or not prices:
            raise bad_request("prices must be a non-empty array")
        for price in prices:
            amount = price.get("amount") if isinstance(price, dict) else None
            if not isinstance(amount, int) or isinstance(amount, bool) or not price.get("label"):
                raise bad_request("can't parse prices JSON object")
        token = str(params.get("provider_token") or "")
        period = params.get("subscription_period")
        invoice = Invoice(title, description, payload, currency, copy.deepcopy(prices), token)
        if invoice.total_amount <= 0:
            raise bad_request("CURRENCY_TOTAL_AMOUNT_INVALID")
        if currency == STARS:
            # Stars: no provider, one price, no tips.
            if token or len(prices) != 1 or params.get("max_tip_amount"):
                raise bad_request("STARS_INVOICE_INVALID")
        elif not token or (self.provider_tokens is not None and token not in self.provider_tokens):
            raise bad_request("PAYMENT_PROVIDER_INVALID")
        if period is not None:
            if not link or currency != STARS or period != SUBSCRIPTION_PERIOD:
                raise bad_request("SUBSCRIPTION_PERIOD_INVALID")
            if invoice.total_amount > MAX_SUBSCRIPTION_STARS:
                raise bad_request("STARS_INVOICE_INVALID")
            invoice.subscription_period = period
        return invoice

    def _create_invoice_link(self, record: RecordedRequest) -> str:
        invoice = self._invoice(record.params, link=True)
        number = next(self._numbers)
        digest = hashlib.sha256(f"{number}:{invoice.payload}".encode()).hexdigest()[:12]
        invoice.link = f"{INVOICE_LINK_PREFIX}{digest}{number}"
        self._links[invoice.link] = invoice
        self.invoices.append(invoice)
        return invoice.link

    def _send_invoice(self, record: RecordedRequest) -> JSON:
        invoice = self._invoice(record.params, link=False)
        content = {
            "invoice": {
                "title": invoice.title,
                "description": invoice.description,
                "start_parameter": str(record.params.get("start_parameter") or ""),
                "currency": invoice.currency,
                "total_amount": invoice.total_amount,
            }
        }
        message = self.server._send(record, content)
        invoice.chat_id, invoice.message_id = message["chat"]["id"], message["message_id"]
        self._messages[(invoice.chat_id, invoice.message_id)] = invoice
        self.invoices.append(invoice)
        return message

    def invoice(self, target: str | JSON) -> Invoice:
        """The invoice behind a link or an invoice message."""
        if isinstance(target, str):
            found = self._links.get(target)
        else:
            found = self._messages.get((target["chat"]["id"], target["message_id"]))
        if found is None:
            raise LookupError(f"no invoice behind {target!r}")
        return found

    # ----------------------------------------------------------------- paying

    async def pay(self, user: JSON, target: str | JSON) -> PaymentOutcome:
        """The user pays the invoice: a pre_checkout_query goes to the bot, which has
        ``pre_checkout_timeout`` seconds to answer; on ok the charge is made and the
        successful_payment message is sent in the user's chat with the bot."""
        invoice = self.invoice(target)
        query_id = f"pcq{next(self._numbers)}"
        query = {
            "id": query_id,
            "from": dict(user),
            "currency": invoice.currency,
            "total_amount": invoice.total_amount,
            "invoice_payload": invoice.payload,
        }
        waiter: asyncio.Future[JSON] = asyncio.get_running_loop().create_future()
        self._open[query_id] = _PreCheckout(query, waiter)
        self.server.push_update({"pre_checkout_query": query})
        try:
            async with asyncio.timeout(self.pre_checkout_timeout):
                answer = await waiter
        except TimeoutError:
            outcome = PaymentOutcome(
                False, "The bot didn't respond in time. Please try again later.", answered=False
            )
            self.failed.append(outcome)
            return outcome
        finally:
            del self._open[query_id]
        if not answer.get("ok"):
            outcome = PaymentOutcome(False, str(answer.get("error_message") or ""))
            self.failed.append(outcome)
            return outcome
        subscription = None
        if invoice.subscription_period:
            expiration = int(self.server.clock()) + invoice.subscription_period
            subscription = Subscription(dict(user), invoice, expiration)
            self.subscriptions.append(subscription)
        return PaymentOutcome(True, charge=self._charge(user, invoice, subscription, first=True))

    def renew(self, charge_id: str) -> Charge | None:
        """Telegram charges a Stars subscription again at the end of its period: a new
        charge id, the subscription's next expiration date. None when it was cancelled."""
        subscription = self.subscription_of(charge_id)
        if subscription.is_canceled:
            return None
        subscription.expiration_date += subscription.invoice.subscription_period or 0
        return self._charge(subscription.user, subscription.invoice, subscription, first=False)

    def _charge(
        self, user: JSON, invoice: Invoice, subscription: Subscription | None, *, first: bool
    ) -> Charge:
        number = next(self._numbers)
        stars = invoice.currency == STARS
        charge_id = f"stxFAKE{number:06d}" if stars else f"{user['id']}_{number}"
        provider_id = f"{user['id']}_{number}" if stars else f"prov_{number:06d}"
        paid: JSON = {
            "currency": invoice.currency,
            "total_amount": invoice.total_amount,
            "invoice_payload": invoice.payload,
            "telegram_payment_charge_id": charge_id,
            "provider_payment_charge_id": provider_id,
        }
        if subscription is not None:
            paid["subscription_expiration_date"] = subscription.expiration_date
            paid["is_recurring"] = True
            if first:
                paid["is_first_recurring"] = True
            subscription.charges.append(charge_id)
        chat = {"id": user["id"], "type": "private", "first_name": user.get("first_name", "")}
        message = self.server.add_user_message(chat, user, {"successful_payment": paid})
        charge = Charge(
            charge_id,
            provider_id,
            dict(user),
            invoice,
            invoice.currency,
            invoice.total_amount,
            paid,
            message,
            subscription,
        )
        self.charges[charge_id] = charge
        return charge

    def subscription_of(self, charge_id: str) -> Subscription:
        charge = self.charges.get(charge_id)
        if charge is None or charge.subscription is None:
            raise LookupError(f"{charge_id!r} is no charge of a subscription")
        return charge.subscription

    # ----------------------------------------------------------------- the bot's calls

    def _answer_pre_checkout_query(self, record: RecordedRequest) -> bool:
        query_id = str(record.params.get("pre_checkout_query_id") or "")
        ok = record.params.get("ok")
        if not isinstance(ok, bool):
            raise bad_request('parameter "ok" is required')
        if not ok and not str(record.params.get("error_message") or "").strip():
            raise bad_request("ERROR_MESSAGE_EMPTY")
        waiting = self._open.get(query_id)
        if waiting is None or waiting.answer.done():
            # Too late (Telegram gave up on it), answered already, or never asked.
            self.late_answers.append(dict(record.params))
            raise bad_request("QUERY_ID_INVALID")
        waiting.answer.set_result(dict(record.params))
        return True

    def _paid_charge(self, record: RecordedRequest) -> Charge:
        charge_id = str(record.params.get("telegram_payment_charge_id") or "")
        if not charge_id:
            raise bad_request("CHARGE_ID_EMPTY")
        charge = self.charges.get(charge_id)
        if charge is None or charge.user["id"] != record.params.get("user_id"):
            raise bad_request("CHARGE_NOT_FOUND")
        return charge

    def _refund_star_payment(self, record: RecordedRequest) -> bool:
        charge = self._paid_charge(record)
        if charge.currency != STARS:
            raise bad_request("CHARGE_NOT_FOUND")
        if charge.refunded:
            raise bad_request("CHARGE_ALREADY_REFUNDED")
        charge.refunded = True
        self.server._notify()
        return True

    def _edit_user_star_subscription(self, record: RecordedRequest) -> bool:
        charge = self._paid_charge(record)
        canceled = record.params.get("is_canceled")
        if not isinstance(canceled, bool):
            raise bad_request('parameter "is_canceled" is required')
        if charge.subscription is None:
            raise bad_request("SUBSCRIPTION_NOT_FOUND")
        if not canceled and charge.subscription.canceled_by_user:
            # Only a subscription the bot cancelled may be re-enabled by it. Telegram's exact
            # description of this refusal is not documented: this one is the fake's own.
            raise bad_request("SUBSCRIPTION_CANCELED_BY_USER")
        charge.subscription.is_canceled = canceled
        self.server._notify()
        return True

    def add_known_charge(self, user_id: int, charge_id: str, *, stars: int = 250) -> Charge:
        """A Stars subscription's charge the bot recorded without the pay flow (a test that
        writes the payment straight to the database): refundStarPayment and
        editUserStarSubscription then answer for it as Telegram would. A user's known
        charges share one subscription."""
        user: JSON = {"id": user_id, "is_bot": False, "first_name": ""}
        subscription = next(
            (c.subscription for c in self.charges.values() if c.user["id"] == user_id), None
        )
        if subscription is None:
            invoice = Invoice(
                "club",
                "",
                f"known:{user_id}",
                STARS,
                [{"label": "month", "amount": stars}],
                subscription_period=SUBSCRIPTION_PERIOD,
            )
            subscription = Subscription(user, invoice, 0)
            self.subscriptions.append(subscription)
        subscription.charges.append(charge_id)
        paid: JSON = {
            "currency": STARS,
            "total_amount": stars,
            "telegram_payment_charge_id": charge_id,
        }
        charge = Charge(
            charge_id, "", user, subscription.invoice, STARS, stars, paid, {}, subscription
        )
        self.charges[charge_id] = charge
        return charge

    def cancel(self, charge_id: str) -> None:
        """The user cancels the subscription themselves, in Telegram's settings (the bot is
        not told, and cannot re-enable it)."""
        subscription = self.subscription_of(charge_id)
        subscription.is_canceled = subscription.canceled_by_user = True

    def refunded(self) -> list[Charge]:
        return [charge for charge in self.charges.values() if charge.refunded]
