"""/club, paying for it in Telegram, and /paysupport. The membership a payment buys is
db/usecases/club.py's; this talks to the member and to Telegram's payments.

Paying goes: /club shows an invoice (a link to a Telegram Stars subscription, or a card
invoice sent on request); Telegram asks the bot with a pre_checkout_query, which must be
answered within 10 seconds (so it only checks what the update already carries: the payer,
the invoice and today's price); the membership starts only when the successful_payment
message arrives, recorded exactly once per charge. A payment from someone who is no longer
a member buys nothing: Stars are refunded at once, the owners are told of a card payment.

Telegram has the money by the time successful_payment arrives, and does not send it again
once the update is answered: a payment the database cannot take is retried a few times
(bot/retry.py), and if it still cannot, the owners get a message straight through the Bot
API (the outbox is in the database) with the charge and the way to settle it, and the payer
is told exactly that. The same holds for any failure while such an update is handled (the
errors handler here, before the general one)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial

from aiogram import Bot, F, Router
from aiogram.dispatcher.event.bases import SkipHandler
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import Command, CommandObject, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import (
    CallbackQuery,
    ErrorEvent,
    InlineKeyboardMarkup,
    LabeledPrice,
    Message,
    PreCheckoutQuery,
    SuccessfulPayment,
)
from aiogram.utils.i18n import I18n
from sqlalchemy.ext.asyncio import AsyncSession

from bot.callbacks import ClubCb
from bot.config import Settings
from bot.filters import (
    HasPayment,
    HasText,
    IsCommand,
    IsMember,
    PaymentFailed,
    PrivateChat,
    TextIs,
)
from bot.handlers.everyone.errors import committed
from bot.i18n import DEFAULT_LANGUAGE
from bot.locks import KeyedLocks
from bot.retry import retry_database
from bot.views import club as views
from bot.views import club_charges as charges
from bot.views import keyboards
from bot.views.editing import edit_text
from db.queries.club import Membership, membership, payments, welcome_had
from db.rules import club as rules
from db.rules.errors import NoClub, UnknownMember
from db.rules.program import CLUB_PERIOD, Program
from db.rules.tokens import identity_hash
from db.usecases.club import Payment, record_payment, set_renewal
from db.usecases.club_support import (
    SUPPORT_TEXT_MAX,
    claim_unclaimed,
    support_request,
    unclaimed_payment,
)
from db.usecases.members import MemberInfo

log = logging.getLogger(__name__)
STARS = "XTR"


def _token(settings: Settings) -> str | None:
    token = settings.payment_provider_token
    return token.get_secret_value() if token is not None else None


def _subscribed(found: Membership | None, now: datetime) -> bool:
    """A Stars subscription of theirs still renews the membership (or its renewal, due at
    the end, may still arrive): a second one would charge them twice."""
    return found is not None and found.renewing(now)


def _by_card(program: Program, settings: Settings) -> bool:
    """Whether the club is sold by card in Telegram: a payment provider and a price."""
    return program.club is not None and bool(program.club.price) and bool(_token(settings))


async def _screen(
    bot: Bot,
    session: AsyncSession,
    member: MemberInfo,
    program: Program,
    settings: Settings,
    secret: bytes,
    now: datetime,
) -> tuple[str, InlineKeyboardMarkup | None]:
    club = program.club
    assert club is not None
    found = await membership(session, member.id)
    identity = identity_hash(secret, member.telegram_id) if member.telegram_id else None
    welcome = bool(club.welcome_points) and not await welcome_had(session, member.id, identity)
    link = None
    if club.stars_per_month and not _subscribed(found, now):
        link = await bot.create_invoice_link(
            title=views.invoice_title(club),
            description=views.invoice_description(club),
            payload=rules.payload("stars", member.id),
            currency=STARS,
            prices=[LabeledPrice(label=views.invoice_label(), amount=club.stars_per_month)],
            subscription_period=int(CLUB_PERIOD.total_seconds()),
        )
    card = _by_card(program, settings)
    text = views.screen(program, club, found, now, welcome=welcome, card=card)
    if _renewal_due(found, now):
        text += "\n" + views.renewal_pending()
    return text, views.keyboard(program, club, found, now, stars_link=link, card=card)


def _renewal_due(found: Membership | None, now: datetime) -> bool:
    """The membership has ended and its Stars subscription's renewal may still arrive (the
    grace day): nothing to stop or start now, the payment is on its way or is not."""
    return found is not None and found.overdue(now)


async def club(
    message: Message,
    bot: Bot,
    session: AsyncSession,
    member: MemberInfo,
    program: Program,
    settings: Settings,
    secret: bytes,
    clock: Callable[[], datetime],
) -> None:
    if program.club is None:
        await message.answer(views.no_club())
        return
    text, markup = await _screen(bot, session, member, program, settings, secret, clock())
    await message.answer(text, reply_markup=markup)


async def pay_by_card(
    query: CallbackQuery,
    bot: Bot,
    member: MemberInfo,
    program: Program,
    settings: Settings,
) -> None:
    """Send the card invoice: one price, in the currency's smallest unit."""
    token, club = _token(settings), program.club
    if club is None or not club.price or token is None:
        await query.answer(views.not_by_card(), show_alert=True)
        return
    await query.answer()
    currency = program.program.currency
    await bot.send_invoice(
        chat_id=query.from_user.id,
        title=views.invoice_title(club),
        description=views.invoice_description(club),
        payload=rules.payload("card", member.id),
        provider_token=token,
        currency=currency,
        prices=[
            LabeledPrice(
                label=views.invoice_label(), amount=rules.minor_units(club.price, currency)
            )
        ],
    )


async def renewal(
    query: CallbackQuery,
    callback_data: ClubCb,
    bot: Bot,
    session: AsyncSession,
    member: MemberInfo,
    program: Program,
    settings: Settings,
    secret: bytes,
    clock: Callable[[], datetime],
    locks: KeyedLocks,
) -> None:
    """Stop or resume the Stars subscription's renewal: Telegram first, then our record.
    One press of a member's at a time (`locks`): a second press waits for the first and reads
    what it did, so it says "already" rather than asking Telegram again. Already so: said,
    nothing changed; Telegram refusing: said, nothing changed; Telegram accepting and the
    record failing: said as it is."""
    renews = callback_data.action == "resume"
    now = clock()
    async with locks.hold(member.id):
        found = await membership(session, member.id)
        due = program.club is not None and _renewal_due(found, now)
        if program.club is None or due or not views.renewable(found, now):
            await query.answer(
                views.renewal_pending() if due else views.no_subscription(), show_alert=True
            )
            return
        assert found is not None and found.subscription_charge_id is not None
        if found.renews == renews:
            await query.answer(views.renewal_already(renews))
        elif not await _switch(query, bot, session, member, found.subscription_charge_id, renews):
            return
    if isinstance(query.message, Message):
        text, markup = await _screen(bot, session, member, program, settings, secret, now)
        await edit_text(query.message, text, reply_markup=markup)


async def _switch(
    query: CallbackQuery,
    bot: Bot,
    session: AsyncSession,
    member: MemberInfo,
    charge_id: str,
    renews: bool,
) -> bool:
    """Ask Telegram, then record it; the press is answered. False when the screen must stay
    as it is (Telegram refused, or the record failed: the database may be down)."""
    try:
        await bot.edit_user_star_subscription(
            user_id=query.from_user.id,
            telegram_payment_charge_id=charge_id,
            is_canceled=not renews,
        )
    except TelegramAPIError as exc:
        log.warning("Telegram refused to change member %s's renewal: %s", member.id, exc)
        now_so = await membership(session, member.id)  # a press elsewhere did it meanwhile?
        if now_so is not None and now_so.renews == renews:
            await query.answer(views.renewal_already(renews))
            return True
        await query.answer(views.renewal_refused(), show_alert=True)
        return False
    try:
        changed = await retry_database(
            partial(set_renewal, session, member.id, renews, actor=query.from_user.id),
            f"recording member {member.id}'s renewal",
        )
    except Exception:  # Telegram has it: never "nothing was changed"
        log.exception("Telegram switched member %s's renewal, not recorded", member.id)
        await query.answer(views.renewal_not_noted(renews), show_alert=True)
        return False
    await query.answer(views.renewal_changed(renews) if changed else views.renewal_already(renews))
    return True


# ------------------------------------------------------------------ Telegram's payment


def _refusal(
    query: PreCheckoutQuery,
    program: Program,
    settings: Settings,
    member: MemberInfo | None,
    found: Membership | None,
    now: datetime,
) -> str | None:
    """Why this payment must be refused now (a views.refusal reason), or None."""
    parsed = rules.parse_payload(query.invoice_payload)
    if parsed is None:
        return "unknown"
    method, member_id = parsed
    if member is None:
        return "not_member"
    if member.id != member_id:
        return "other_account"
    club = program.club
    if club is None:
        return "not_sold"
    if method == "stars":
        if not club.stars_per_month:
            return "not_sold"
        if query.currency != STARS or query.total_amount != club.stars_per_month:
            return "price"
        if found is not None and rules.renewing(found.renews, found.subscription_until, now):
            return "subscribed"
        return None
    if not _by_card(program, settings):
        return "not_sold"
    currency = program.program.currency
    if query.currency != currency or query.total_amount != rules.minor_units(club.price, currency):
        return "price"
    return None


async def pre_checkout(
    query: PreCheckoutQuery,
    session: AsyncSession,
    program: Program,
    settings: Settings,
    clock: Callable[[], datetime],
    member: MemberInfo | None = None,
) -> None:
    """Telegram waits 10 s for this answer: one quick read (is a Stars subscription
    already renewing?), no writes."""
    found = await membership(session, member.id) if member is not None else None
    reason = _refusal(query, program, settings, member, found, clock())
    try:
        if reason is None:
            await query.answer(ok=True)
        else:
            await query.answer(ok=False, error_message=views.refusal(reason))
    except TelegramAPIError as exc:  # too late: Telegram has failed the payment itself
        log.warning("could not answer pre-checkout query %s: %s", query.id, exc)


def _amount(paid: SuccessfulPayment) -> Decimal:
    """What was paid, in its currency: Stars are whole; money comes in its smallest unit."""
    if paid.currency == STARS:
        return Decimal(paid.total_amount)
    return rules.from_minor(paid.total_amount, paid.currency)


async def successful_payment(
    message: Message,
    bot: Bot,
    session: AsyncSession,
    program: Program,
    settings: Settings,
    secret: bytes,
    clock: Callable[[], datetime],
    i18n: I18n,
    member: MemberInfo | None = None,
) -> None:
    """Record the payment once per charge (a redelivered update changes nothing and says
    nothing: its news was owed the first time). A payment that cannot buy membership (its
    payer is no longer a member) is given back. The database failing is retried; failing
    still, the owners are told directly and the payer is told so."""
    paid = message.successful_payment
    assert paid is not None and message.from_user is not None
    user_id = message.from_user.id
    parsed = rules.parse_payload(paid.invoice_payload)
    stars = paid.currency == STARS
    if parsed is None or (parsed[0] == "stars") != stars:
        log.error("a payment with an unknown payload: %s", paid.model_dump_json())
        await _give_back(message, bot, session, program, settings, i18n, paid, "unknown")
        return
    method, member_id = parsed
    if member is None or member.id != member_id:
        why = "not_member" if member is None else "other_account"
        await _give_back(message, bot, session, program, settings, i18n, paid, why)
        return
    until = paid.subscription_expiration_date
    payment = Payment(
        member_id=member_id,
        charge_id=paid.telegram_payment_charge_id,
        method=method,
        currency=paid.currency,
        amount=_amount(paid),
        now=clock(),
        until=datetime.fromtimestamp(until, UTC) if stars and until is not None else None,
        renews=stars and until is not None,
        recurring=bool(paid.is_recurring) and not paid.is_first_recurring,
        provider_charge_id=paid.provider_payment_charge_id or None,
    )
    identity = identity_hash(secret, user_id)
    try:
        await retry_database(
            partial(record_payment, session, program, payment, identity=identity, actor=user_id),
            f"recording club payment {payment.charge_id}",
        )
    except UnknownMember:  # deleted meanwhile
        await _give_back(message, bot, session, program, settings, i18n, paid, "not_member")
    except NoClub:
        await _give_back(message, bot, session, program, settings, i18n, paid, "no_club")
    except Exception:
        log.exception("could not record club payment %s", payment)
        await _unrecorded(message, bot, settings, i18n, paid)


async def _give_back(
    message: Message,
    bot: Bot,
    session: AsyncSession,
    program: Program,
    settings: Settings,
    i18n: I18n,
    paid: SuccessfulPayment,
    reason: str,
) -> None:
    """A payment that bought nothing (`reason`: views.given_back's): Stars refunded at
    once; the owners told of what is left for them to refund; audited once per charge,
    and said once. The database failing: the owners are told directly of what was not
    refunded, and the payer of what was (never "nothing was changed")."""
    assert message.from_user is not None
    user_id = message.from_user.id
    charge = paid.telegram_payment_charge_id
    stars = paid.currency == STARS
    amount = _amount(paid)

    async def claim() -> bool:
        return await claim_unclaimed(
            session,
            charge_id=charge,
            method="stars" if stars else "card",
            currency=paid.currency,
            amount=amount,
            reason=reason,
        )

    try:
        if not await retry_database(claim, f"claiming charge {charge}"):
            return  # recorded, or a redelivered update: refunded or told the first time
    except Exception:  # unknown: go on (Telegram refunds a charge once, and says so)
        log.exception("could not claim charge %s", charge)
    refunded = False
    if stars:
        try:
            refunded = await bot.refund_star_payment(user_id, charge)
        except TelegramAPIError as exc:
            refunded = "CHARGE_ALREADY_REFUNDED" in str(exc)
            if not refunded:
                log.warning("could not refund charge %s: %s", charge, exc)
    said = views.given_back(
        reason, views.paid(amount, paid.currency), refunded=refunded, stars=stars
    )
    try:
        new = await retry_database(
            partial(
                unclaimed_payment,
                session,
                telegram_id=user_id,
                name=message.from_user.first_name,
                charge_id=charge,
                provider_charge_id=paid.provider_payment_charge_id or None,
                method="stars" if stars else "card",
                currency=paid.currency,
                amount=amount,
                refunded=refunded,
                reason=reason,
                owners=settings.admin_ids,
            ),
            f"recording unclaimed charge {charge}",
        )
    except Exception:
        log.exception(
            "charge %s (refunded: %s) that bought nothing not recorded", charge, refunded
        )
        if not refunded:  # the owners' notice was to go through the database: straight now
            with i18n.use_locale(DEFAULT_LANGUAGE):
                text = views.club_unclaimed(
                    program,
                    {
                        "telegram_id": user_id,
                        "name": message.from_user.first_name,
                        "charge_id": charge,
                        "provider_charge_id": paid.provider_payment_charge_id or None,
                        "amount": amount,
                        "currency": paid.currency,
                        "reason": reason,
                    },
                ).text
            if not await _tell_owners(bot, settings, text):
                said = charges.unrecorded(
                    views.paid(amount, paid.currency), told=False, charge_id=charge
                )
        await _say(message, said)
        return
    if new:
        await _say(message, said)


async def _unrecorded(
    message: Message, bot: Bot, settings: Settings, i18n: I18n, paid: SuccessfulPayment
) -> None:
    """Telegram took the money and the bot could not record it: the owners get a message
    straight through the Bot API (the outbox is in the database) with the charge and the
    way to settle it, and the payer is told the truth."""
    assert message.from_user is not None
    user = message.from_user
    amount = _amount(paid)
    with i18n.use_locale(DEFAULT_LANGUAGE):
        text = charges.unrecorded_owner(
            name=user.first_name,
            telegram_id=user.id,
            currency=paid.currency,
            amount=amount,
            charge_id=paid.telegram_payment_charge_id,
            provider_charge_id=paid.provider_payment_charge_id or None,
        )
    told = await _tell_owners(bot, settings, text)
    await _say(
        message,
        charges.unrecorded(
            views.paid(amount, paid.currency),
            told=told > 0,
            charge_id=paid.telegram_payment_charge_id,
        ),
    )


async def _tell_owners(bot: Bot, settings: Settings, text: str) -> int:
    """Send `text` to each owner (ADMIN_IDS) through the Bot API; how many it reached."""
    told = 0
    for owner in dict.fromkeys(settings.admin_ids):
        try:
            await bot.send_message(owner, text)
        except TelegramAPIError as exc:
            log.error("could not tell owner %s of a payment: %s (%s)", owner, exc, text)
        else:
            told += 1
    return told


async def _say(message: Message, text: str) -> None:
    """Tell the payer; a failure is logged (the update is not failed again for it)."""
    try:
        await message.answer(text)
    except TelegramAPIError as exc:
        log.warning("could not tell %s about their payment: %s", message.chat.id, exc)


async def payment_failed(
    event: ErrorEvent,
    bot: Bot,
    settings: Settings,
    i18n: I18n,
    session: AsyncSession | None = None,
) -> None:
    """Anything that failed while a successful_payment was handled (the database down when
    the payer was looked up, say) before it was recorded: Telegram will not send it again,
    so it is handled as a payment that could not be recorded. Saved work goes to the general
    errors handler ("done and saved")."""
    message = event.update.message
    if message is None or message.successful_payment is None or committed(session):
        raise SkipHandler()
    log.error(
        "update %s with a payment failed",
        event.update.update_id,
        exc_info=(type(event.exception), event.exception, event.exception.__traceback__),
    )
    await _unrecorded(message, bot, settings, i18n, message.successful_payment)


# ------------------------------------------------------------------ /paysupport


class PaySupport(StatesGroup):
    text = State()


async def paysupport(
    message: Message,
    command: CommandObject,
    session: AsyncSession,
    state: FSMContext,
    program: Program,
    settings: Settings,
    clock: Callable[[], datetime],
    member: MemberInfo | None = None,
) -> None:
    """Telegram requires a bot that sells for Stars to answer /paysupport: the member's
    club payments, and their request passed to the owners (`/paysupport TEXT` at once)."""
    if command.args:
        await _pass_on(message, command.args, session, settings, clock, member)
        return
    paid = await payments(session, member.id) if member is not None else []
    await state.set_state(PaySupport.text)
    await message.answer(views.support(program, paid, member=member is not None))


async def support_text(
    message: Message,
    session: AsyncSession,
    state: FSMContext,
    settings: Settings,
    clock: Callable[[], datetime],
    member: MemberInfo | None = None,
) -> None:
    await state.clear()
    await _pass_on(message, message.text or "", session, settings, clock, member)


async def support_not_text(message: Message) -> None:
    await message.answer(views.support_text_only())


async def _pass_on(
    message: Message,
    text: str,
    session: AsyncSession,
    settings: Settings,
    clock: Callable[[], datetime],
    member: MemberInfo | None,
) -> None:
    assert message.from_user is not None
    told = await support_request(
        session,
        telegram_id=message.from_user.id,
        name=message.from_user.first_name,
        member_id=member.id if member is not None else None,
        card_number=member.card_number if member is not None else None,
        text=text.strip()[:SUPPORT_TEXT_MAX],
        owners=settings.admin_ids,
        now=clock(),
    )
    await message.answer(views.support_sent() if told else views.support_nobody())


def build_payments() -> Router:
    """Telegram's payment updates and /paysupport, for anyone (a payment from someone who
    left must still be answered), before the staff routers: money never waits behind a
    dialog."""
    router = Router(name="club payments")
    router.pre_checkout_query.register(pre_checkout)
    router.message.register(successful_payment, HasPayment())
    router.errors.register(payment_failed, PaymentFailed())
    router.message.filter(PrivateChat())
    router.message.register(paysupport, Command("paysupport"))
    router.message.register(support_text, StateFilter(PaySupport.text), HasText(), ~IsCommand())
    router.message.register(support_not_text, StateFilter(PaySupport.text), ~HasText())
    return router


def build() -> Router:
    router = Router(name="club")
    router.message.filter(PrivateChat(), IsMember())
    router.callback_query.filter(IsMember())
    router.message.register(club, Command("club"))
    router.message.register(club, TextIs(keyboards.CLUB))
    router.callback_query.register(pay_by_card, ClubCb.filter(F.action == "card"))
    locks = KeyedLocks()  # a member's renewal presses, one at a time
    router.callback_query.register(
        partial(renewal, locks=locks), ClubCb.filter(F.action.in_({"stop", "resume"}))
    )
    return router
