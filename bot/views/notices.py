"""How each kind of owed message reads. The outbox stores a kind and its params (see
db/usecases/outbox.py); the notice worker renders them here, in the recipient's language, when it
sends them. Every renderer states only what its params say was committed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from html import escape
from typing import Any

from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup
from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import ngettext as _n

from bot.callbacks import EarnOnlyCb, RedeemCb
from bot.roles import role_name
from bot.views import discounts, promotions, stamps
from bot.views import formatting as fmt
from db.rules.gifts import GIFT_TTL
from db.rules.points import points_money
from db.rules.program import Program


@dataclass(frozen=True, slots=True)
class Rendered:
    text: str
    markup: InlineKeyboardMarkup | None = None


Renderer = Callable[[Program, dict[str, Any]], Rendered]
RENDERERS: dict[str, Renderer] = {}


def renders(kind: str) -> Callable[[Renderer], Renderer]:
    def register(render: Renderer) -> Renderer:
        RENDERERS[kind] = render
        return render

    return register


def _money(program: Program, value: Any) -> str:
    return fmt.money(Decimal(str(value)), program.program.currency)


def _balance(p: dict[str, Any]) -> str:
    return _("Balance: {points}.").format(points=fmt.points(int(p["balance"])))


@renders("purchase")
def purchase(program: Program, p: dict[str, Any]) -> Rendered:
    """The member's news of a sale: what they bought, what points paid, what they earned."""
    partner = fmt.partner_html(program, str(p["partner"]))
    amount, paid = Decimal(p["amount"]), Decimal(p["paid"])
    redeemed, earned = int(p["points_redeemed"]), int(p["points_earned"])
    lines = []
    if p.get("discount"):
        lines += _discounted_purchase(program, p, partner)
    elif redeemed:
        lines.append(
            _("✅ {points} paid {money} of your {amount} purchase at {partner}.").format(
                points=fmt.points(redeemed),
                money=_money(program, amount - paid),
                amount=_money(program, amount),
                partner=partner,
            )
        )
        if earned:
            lines.append(
                _("🟢 +{points} earned on the {money} you paid.").format(
                    points=fmt.points(earned), money=_money(program, paid)
                )
            )
    elif earned:
        lines.append(
            _("🟢 +{points} for your purchase of {money} at {partner}.").format(
                points=fmt.points(earned), money=_money(program, amount), partner=partner
            )
        )
    else:
        lines.append(
            _("Your purchase of {money} at {partner} is recorded.").format(
                money=_money(program, amount), partner=partner
            )
        )
    if int(p.get("referral_points") or 0):
        points = fmt.points(int(p["referral_points"]))
        lines.append(
            _("🎁 +{points}: {friend}'s invitation paid off.").format(
                points=points, friend=escape(p["member_name"])
            )
            if p.get("member_name")
            else _("🎁 +{points}: your friend's invitation paid off.").format(points=points)
        )
    if p.get("tier_reached"):
        lines.append(discounts.tier_reached(program, str(p["tier_reached"])))
    lines += promotions.sale_lines(program, p.get("promotions") or ())
    lines += stamps.sale_lines(program, p.get("stamps") or ())
    lines.append(_balance(p))
    return Rendered("\n".join(lines))


def _discounted_purchase(program: Program, p: dict[str, Any], partner: str) -> list[str]:
    """A discounted sale's first lines: the discount and what was left to pay, then what
    points paid of it and what the money paid earned."""
    to_pay = Decimal(p["amount"]) - Decimal(p["discount"])
    paid = Decimal(p["paid"])
    lines = [discounts.member_line(program, p, partner)]
    if redeemed := int(p["points_redeemed"]):
        lines.append(
            _("✅ {points} paid {money} of it.").format(
                points=fmt.points(redeemed), money=_money(program, to_pay - paid)
            )
        )
    if earned := int(p["points_earned"]):
        lines.append(
            _("🟢 +{points} earned on the {money} you paid.").format(
                points=fmt.points(earned), money=_money(program, paid)
            )
        )
    return lines


@renders("referral_inviter")
def referral_inviter(program: Program, p: dict[str, Any]) -> Rendered:
    """The reward comes with the friend's first purchase of the qualifying amount, which is
    their first purchase only when any amount qualifies."""
    minimum = program.referral.qualifying_purchase
    figures = {
        "points": fmt.points(int(p["points"])),
        "friend": escape(p.get("member_name") or ""),
        "amount": _money(program, minimum),
    }
    if p.get("member_name") and minimum:
        text = _(
            "🎁 +{points}: {friend}, whom you invited, made their first purchase of {amount} "
            "or more!"
        )
    elif p.get("member_name"):
        text = _("🎁 +{points}: {friend}, whom you invited, made their first purchase!")
    elif minimum:
        text = _(
            "🎁 +{points}: a friend you invited made their first purchase of {amount} or more!"
        )
    else:
        text = _("🎁 +{points}: a friend you invited made their first purchase!")
    return Rendered(text.format(**figures))


@renders("reversal")
def reversal(program: Program, p: dict[str, Any]) -> Rendered:
    """The member's news of a refund: the money they get back, the points returned and
    taken back, and, when points earned on the sale were already spent, what that cost."""
    partner = fmt.partner_html(program, str(p["partner"]))
    if p.get("money_back") is not None:
        head = _("↩️ Refund of {amount} at {partner}: {money} back to you in money.").format(
            amount=_money(program, p["amount"]),
            partner=partner,
            money=_money(program, p["money_back"]),
        )
    else:  # owed before the money back was part of the news
        head = _("↩️ Refund of {money} at {partner}.").format(
            money=_money(program, p["amount"]), partner=partner
        )
    lines = [head]
    if int(p["points_returned"]):
        lines.append(
            _("+{points} returned to you.").format(points=fmt.points(int(p["points_returned"])))
        )
    reward = int(p.get("referral_points") or 0)
    if int(p["points_clawed_back"]) - reward:
        lines.append(
            _("−{points} earned on the refunded money.").format(
                points=fmt.points(int(p["points_clawed_back"]) - reward)
            )
        )
    if reward:
        lines.append(
            _("−{points}: the invitation reward this purchase paid.").format(
                points=fmt.points(reward)
            )
        )
    if shortfall := int(p.get("shortfall") or 0):
        lines.append(
            _(
                "{points} earned with it were already spent: their value, {money}, is kept "
                "from the money back."
            ).format(
                points=fmt.points(shortfall),
                money=_money(
                    program,
                    p["kept"]
                    if p.get("kept") is not None
                    else points_money(shortfall, program.program.point_value),
                ),
            )
        )
    lines += promotions.refund_lines(program, p.get("promotions") or ())
    lines += stamps.refund_lines(program, p.get("stamps") or ())
    lines.append(_balance(p))
    return Rendered("\n".join(lines))


@renders("referral_reversed")
def referral_reversed(program: Program, p: dict[str, Any]) -> Rendered:
    minimum = program.referral.qualifying_purchase
    text = (
        _(
            "↩️ −{points}: your friend's first purchase of {amount} or more was refunded, so "
            "its invitation reward is taken back."
        )
        if minimum
        else _(
            "↩️ −{points}: your friend's first purchase was refunded, so its invitation "
            "reward is taken back."
        )
    )
    return Rendered(
        text.format(points=fmt.points(int(p["points"])), amount=_money(program, minimum))
    )


@renders("adjusted")
def adjusted(program: Program, p: dict[str, Any]) -> Rendered:
    points = int(p["points"])
    return Rendered(
        _("{sign}{points}: {reason}").format(
            sign="+" if points > 0 else "−",
            points=fmt.points(abs(points)),
            reason=escape(str(p["reason"])),
        )
        + "\n"
        + _balance(p)
    )


@renders("expired")
def expired(program: Program, p: dict[str, Any]) -> Rendered:
    return Rendered(_("⌛ {points} expired today.").format(points=fmt.points(int(p["points"]))))


@renders("stamps_lapsing")
def stamps_lapsing(program: Program, p: dict[str, Any]) -> Rendered:
    return Rendered(stamps.lapsing(program, p))


@renders("stamps_lapsed")
def stamps_lapsed(program: Program, p: dict[str, Any]) -> Rendered:
    return Rendered(stamps.lapsed(program, p))


@renders("sale_posted")
def sale_posted(program: Program, p: dict[str, Any]) -> Rendered:
    """The cashier's receipt of an earn-only sale, naming the member it went to."""
    figures = {
        "amount": _money(program, p["amount"]),
        # All it gave the member; the lines below say each part.
        "points": fmt.points(promotions.sale_points(p)),
        "balance": fmt.points(int(p["balance"])),
    }
    # A discounted sale says first what the customer was charged.
    charged = discounts.sold(program, p)
    if p.get("member_name"):
        head = _("✅ {member}: {amount}, +{points}. Their balance: {balance}.").format(
            member=escape(p["member_name"]), **figures
        )
    else:
        head = _("✅ {amount}: +{points}. The member's balance: {balance}.").format(**figures)
    lines = [charged] if charged else []
    lines += [
        head,
        *promotions.own_points_line(p),
        *promotions.sale_lines(program, p.get("promotions") or ()),
        *promotions.not_applied_lines(program, p.get("not_applied") or ()),
        *stamps.sale_lines(
            program, p.get("stamps") or (), till=True, discounted=bool(p.get("discount"))
        ),
    ]
    return Rendered("\n".join(lines))


@renders("redeem_request")
def redeem_request(program: Program, p: dict[str, Any]) -> Rendered:
    """The member is asked to confirm paying part of a purchase with points (of what is
    left to pay after their tier discount, if they have one)."""
    partner = fmt.partner_html(program, str(p["partner"]))
    amount = Decimal(p["amount"]) - Decimal(p.get("discount") or 0)
    figures = {
        "partner": partner,
        "money": _money(program, p["money"]),
        "amount": _money(program, amount),
        "points": fmt.points(int(p["points"])),
    }
    text = (
        # After the discount's line, which named the purchase: what is left to pay.
        _("💳 {partner} asks to pay {money} of the {amount} to pay with {points}. Confirm?")
        if p.get("discount")
        else _(
            "💳 {partner} asks to pay {money} of your {amount} purchase with {points}. Confirm?"
        )
    ).format(**figures)
    if p.get("discount"):
        text = discounts.member_line(program, p, partner) + "\n" + text
    request = str(p["request"])
    markup = InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=_("✅ Confirm"), callback_data=RedeemCb(request=request, ok=True).pack()
                ),
                InlineKeyboardButton(
                    text=_("✖ Decline"), callback_data=RedeemCb(request=request, ok=False).pack()
                ),
            ]
        ]
    )
    return Rendered(text, markup)


def _settled() -> Rendered:
    """The cashier's "waiting" message once the request ended: the outcome itself follows
    in a new message, said once."""
    return Rendered(_("⏳ This request is closed: its outcome is in the next message."))


@renders("request_confirmed")
def request_confirmed(program: Program, p: dict[str, Any]) -> Rendered:
    """The cashier's outcome when the member confirmed."""
    if p.get("settled"):
        return _settled()
    amount, paid = Decimal(p["amount"]), Decimal(p["paid"])
    to_pay = amount - Decimal(p.get("discount") or 0)
    head = [line] if (line := discounts.sold(program, p)) else []
    return Rendered(
        "\n".join(
            [
                *head,
                _("✅ The member confirmed: {points} paid {money}.").format(
                    points=fmt.points(int(p["points_redeemed"])),
                    money=_money(program, to_pay - paid),
                ),
                _("💵 The customer pays {money}.").format(money=_money(program, paid)),
                _("+{points} earned. The member's balance: {balance}.").format(
                    points=fmt.points(promotions.sale_points(p)),
                    balance=fmt.points(int(p["balance"])),
                ),
                *promotions.own_points_line(p),
                *promotions.sale_lines(program, p.get("promotions") or ()),
                *stamps.sale_lines(
                    program, p.get("stamps") or (), till=True, discounted=bool(p.get("discount"))
                ),
            ]
        )
    )


def earn_only_markup(program: Program, request: str, amount: Any) -> InlineKeyboardMarkup:
    """One button: post the same sale (amount, receipt) without points."""
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=_("🧾 Post {amount} without points").format(
                        amount=_money(program, amount)
                    ),
                    callback_data=EarnOnlyCb(request=request).pack(),
                )
            ]
        ]
    )


@renders("request_closed")
def request_closed(program: Program, p: dict[str, Any]) -> Rendered:
    """The cashier's outcome when the request ended without a posting, with a button to
    finish the same sale without points."""
    if p.get("settled"):
        return _settled()
    status = p["status"]
    if status == "declined":
        text = _("✖ The member declined. Nothing was charged.")
    elif status == "withdrawn":
        text = _("✖ You withdrew the request. Nothing was charged.")
    elif status == "cancelled":
        text = _("✖ The request was closed: its cashier's staff rights were revoked.")
    elif status == "not_enough":
        text = _(
            "✖ The member confirmed, but their points no longer cover this request (they "
            "were spent elsewhere meanwhile). Nothing was charged."
        )
    elif status == "discount_changed":
        text = _(
            "✖ The member's discount changed since the amount was shown (their tier or club "
            "membership changed). Nothing was charged. Scan the card again."
        )
    elif status == "unreachable":
        text = _(
            "🚫 The member cannot confirm in Telegram (they blocked the bot), so points cannot "
            "pay. Nothing was charged."
        )
    else:
        text = _("⌛ The member did not answer in time. Nothing was charged.")
    markup = None
    # A sale whose discount changed cannot be posted as shown: no button for it.
    if p.get("button") and p.get("amount") is not None and status != "discount_changed":
        markup = earn_only_markup(program, str(p["request"]), p["amount"])
    return Rendered(text, markup)


@renders("request_expired_member")
def request_expired_member(program: Program, p: dict[str, Any]) -> Rendered:
    if p.get("status") == "withdrawn":
        return Rendered(_("✖ The till withdrew this request. Nothing was charged."))
    return Rendered(_("⌛ This request expired. Nothing was charged."))


def campaign_results(p: dict[str, Any]) -> str:
    """A campaign's figures, as /campaigns and the finished notice say them."""
    text = _("Sent {sent} of {total}; failed {failed}; blocked the bot {blocked}.").format(
        sent=fmt.number(int(p["sent"])),
        total=fmt.number(int(p["audience"])),
        failed=fmt.number(int(p["failed"])),
        blocked=fmt.number(int(p["blocked"])),
    )
    if int(p.get("skipped") or 0):
        text += "\n" + _("Not sent: {skipped} opted out or left since.").format(
            skipped=fmt.number(int(p["skipped"]))
        )
    return text


@renders("campaign_finished")
def campaign_finished(program: Program, p: dict[str, Any]) -> Rendered:
    """The creator's news that their scheduled campaign has finished."""
    head = _("✅ Campaign #{id} finished.").format(id=p["campaign"])
    if not int(p["audience"]):
        return Rendered(
            head + "\n" + _("Nobody in its audience accepts offers any more: nothing was sent.")
        )
    return Rendered(head + "\n" + campaign_results(p))


@renders("staff_joined")
def staff_joined(program: Program, p: dict[str, Any]) -> Rendered:
    """The owner's news that an invite they made was used, and by whom."""
    where = " · " + escape(p["partner"]) if p.get("partner") else ""
    return Rendered(
        _("✅ Your staff invite was used: {name} is now {role}{where}.").format(
            name=escape(p.get("name") or "—"), role=role_name(str(p["role"])), where=where
        )
    )


# Gifts and donations (db/usecases/gifts.py, db/usecases/donations.py). `member_name` is the
# other member's first name, read when the notice is sent (absent once they left).


@renders("gift_received")
def gift_received(program: Program, p: dict[str, Any]) -> Rendered:
    points = fmt.points(int(p["points"]))
    head = (
        _("🎁 +{points}: a gift from {friend}.").format(
            points=points, friend=escape(p["member_name"])
        )
        if p.get("member_name")
        else _("🎁 +{points}: a gift from a friend.").format(points=points)
    )
    return Rendered(head + "\n" + _balance(p))


@renders("gift_accepted")
def gift_accepted(program: Program, p: dict[str, Any]) -> Rendered:
    points = fmt.points(int(p["points"]))
    if p.get("member_name"):
        return Rendered(
            _("🎀 {friend} accepted your gift of {points}.").format(
                friend=escape(p["member_name"]), points=points
            )
        )
    return Rendered(_("🎀 Your gift of {points} was accepted.").format(points=points))


@renders("gift_returned")
def gift_returned(program: Program, p: dict[str, Any]) -> Rendered:
    return Rendered(
        _n(
            "↩️ Nobody accepted your gift of {points} within {n} day: the points are yours again.",
            "↩️ Nobody accepted your gift of {points} within {n} days: the points are yours again.",
            GIFT_TTL.days,
        ).format(points=fmt.points(int(p["points"])), n=fmt.number(GIFT_TTL.days))
    )


@renders("donation")
def donation(program: Program, p: dict[str, Any]) -> Rendered:
    points = int(p["points"])
    return Rendered(
        _("🤍 Thank you! You gave {points} (worth {money}) to {charity}.").format(
            points=fmt.points(points),
            money=_money(program, points_money(points, program.program.point_value)),
            charity=fmt.partner_html(program, str(p["partner"])),
        )
        + "\n"
        + _balance(p)
    )


# The rewards catalogue's, vouchers' and the club's notices (paid, at the till, about a
# membership's end) live with their other texts; importing the modules registers them.
from bot.views import club as _club  # noqa: E402, F401
from bot.views import club_lapses as _club_lapses  # noqa: E402, F401
from bot.views import club_till as _club_till  # noqa: E402, F401
from bot.views import vouchers as _vouchers  # noqa: E402, F401
