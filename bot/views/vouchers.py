"""The rewards catalogue and vouchers as people read them: the member's /rewards, the
confirmation, the voucher itself and /vouchers; the cashier's voucher panel; the messages
that claiming and expiry owe (registered with the notice renderers); the refusals."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from html import escape
from typing import Any

from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup
from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import ngettext as _n

from bot.callbacks import RewardCb, VoucherCb
from bot.views import formatting as fmt
from bot.views.notices import Rendered, renders
from db.queries.rewards_figures import RewardFigures
from db.queries.vouchers import OpenVoucher, RewardState
from db.rules.program import Program, Reward
from db.rules.vouchers import display_code
from db.usecases.voucher_claims import VoucherInfo

# The catalogue.


def where(program: Program, slug: str) -> str:
    """The partner's name, and its address when the program gives one."""
    partner = program.partner(slug)
    if partner is not None and partner.address:
        return f"{fmt.partner_html(program, slug)}, 📍 {escape(partner.address)}"
    return fmt.partner_html(program, slug)


def until(program: Program, moment: datetime) -> str:
    """A voucher's expiry as the till's clock shows it."""
    local = moment.astimezone(program.program.zone)
    return _("{date}, {time}").format(date=fmt.day(local), time=fmt.clock(local))


def catalogue_rewards(program: Program) -> list[Reward]:
    """What members can buy with points (rewards worth 0 points are only given)."""
    return [r for r in program.rewards if r.points > 0]


def _blocked(reward: Reward, state: RewardState, available: int) -> str | None:
    """Why the member cannot take this reward now, or None."""
    if reward.stock and state.issued >= reward.stock:
        return _("out of stock")
    if reward.per_member and state.mine >= reward.per_member:
        return _n(
            "you have it already ({n} per member)",
            "you have {n} already ({n} per member)",
            reward.per_member,
        ).format(n=reward.per_member)
    if available < reward.points:
        return _("you need {points} more").format(points=fmt.points(reward.points - available))
    return None


def catalogue(
    program: Program, states: dict[str, RewardState], available: int, held: int
) -> tuple[str, InlineKeyboardMarkup | None]:
    """/rewards: each partner's rewards, with a button for each the member can take now."""
    rewards = catalogue_rewards(program)
    if not rewards:
        return _("There are no rewards to take yet."), None
    lines = [
        _("🎁 <b>Rewards</b>"),
        _("You have {points} to spend.").format(points=fmt.points(available)),
    ]
    if held:
        lines.append(
            _("({points} more are held by your open vouchers and requests.)").format(
                points=fmt.points(held)
            )
        )
    buttons = []
    for partner in program.partners:
        here = [r for r in rewards if r.partner == partner.slug]
        if not here:
            continue
        lines += ["", f"<b>{where(program, partner.slug)}</b>"]
        for reward in here:
            state = states.get(reward.slug, RewardState(0, 0))
            facts = [fmt.points(reward.points)]
            if reward.stock:
                facts.append(
                    _("{left} of {stock} left").format(
                        left=fmt.number(max(reward.stock - state.issued, 0)),
                        stock=fmt.number(reward.stock),
                    )
                )
            if reward.per_member:
                facts.append(
                    _n("{n} per member", "{n} per member", reward.per_member).format(
                        n=reward.per_member
                    )
                )
            why_not = _blocked(reward, state, available)
            if why_not:
                facts.append(f"<i>{why_not}</i>")
            else:
                buttons.append(
                    [
                        InlineKeyboardButton(
                            text=f"🎁 {fmt.text(reward.title)} · {fmt.points(reward.points)}",
                            callback_data=RewardCb(action="ask", reward=reward.slug).pack(),
                        )
                    ]
                )
            lines.append(f"• {fmt.reward_html(program, reward.slug)}: " + " · ".join(facts))
    lines += [
        "",
        _(
            "Taking a reward holds its points until the voucher is used at the till; if it "
            "expires unused, they come back."
        ),
    ]
    return "\n".join(lines), InlineKeyboardMarkup(inline_keyboard=buttons) if buttons else None


def confirmation(
    program: Program, reward: Reward, valid_until: datetime, op: str
) -> tuple[str, InlineKeyboardMarkup]:
    text = "\n".join(
        [
            _("Take <b>{title}</b> for {points}?").format(
                title=fmt.reward_html(program, reward.slug), points=fmt.points(reward.points)
            ),
            _("Where: {where}").format(where=where(program, reward.partner)),
            _("Valid until: {until}").format(until=until(program, valid_until)),
            _("The points are held now and spent when the cashier claims the voucher."),
        ]
    )
    markup = InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=_("✅ Confirm"),
                    callback_data=RewardCb(
                        action="take", reward=reward.slug, points=reward.points, op=op
                    ).pack(),
                ),
                InlineKeyboardButton(
                    text=_("✖ Cancel"),
                    callback_data=RewardCb(action="cancel", reward=reward.slug).pack(),
                ),
            ]
        ]
    )
    return text, markup


# The member's vouchers.


def voucher_caption(program: Program, voucher: OpenVoucher) -> str:
    return "\n".join(
        [
            f"🎟 <b>{fmt.reward_html(program, voucher.reward)}</b>",
            _("Where: {where}").format(where=where(program, voucher.partner)),
            _("Valid until: {until}").format(until=until(program, voucher.expires_at)),
            _("Code: <code>{code}</code>").format(code=display_code(voucher.code)),
            _("Show this QR code at the till, or say the code. It can be used once."),
        ]
    )


def vouchers_list(
    program: Program, vouchers: list[OpenVoucher]
) -> tuple[str, InlineKeyboardMarkup | None]:
    if not vouchers:
        return _("You have no open vouchers. /rewards shows what you can take."), None
    lines = [_("🎟 <b>Your vouchers</b>")]
    buttons = []
    for v in vouchers:
        lines.append(
            _("• <b>{title}</b> at {partner}, until {until}: code <code>{code}</code>").format(
                title=fmt.reward_html(program, v.reward),
                partner=fmt.partner_html(program, v.partner),
                until=until(program, v.expires_at),
                code=display_code(v.code),
            )
        )
        buttons.append(
            [
                InlineKeyboardButton(
                    text=_("📱 QR: {title}").format(title=fmt.reward_title(program, v.reward)),
                    callback_data=VoucherCb(action="qr", code=v.code).pack(),
                )
            ]
        )
    lines.append(_("Tap a voucher to show its QR code at the till."))
    return "\n".join(lines), InlineKeyboardMarkup(inline_keyboard=buttons)


# At the till.


def till_panel(
    program: Program, *, reward: str, initial: str, code: str, expires_at: datetime
) -> tuple[str, InlineKeyboardMarkup]:
    text = "\n".join(
        [
            f"🎟 <b>{fmt.reward_html(program, reward)}</b>",
            _("Member: {initial} · code {code}").format(
                initial=escape(initial), code=display_code(code)
            ),
            _("Valid until: {until}").format(until=until(program, expires_at)),
        ]
    )
    markup = InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=_("✅ Claim"), callback_data=VoucherCb(action="claim", code=code).pack()
                )
            ]
        ]
    )
    return text, markup


# What claiming and expiry owe (bot/views/notices.py renders them by kind).


@renders("voucher_claimed")
def voucher_claimed(program: Program, p: dict[str, Any]) -> Rendered:
    """The member's news: their voucher was used, and what it cost."""
    lines = [
        _("🎟 Your voucher “{title}” was used at {partner}.").format(
            title=fmt.reward_html(program, str(p["reward"])),
            partner=fmt.partner_html(program, p["partner"]),
        )
    ]
    if int(p.get("points") or 0):
        lines.append(
            _n(
                "{n} of your points paid for it. Balance: {balance}.",
                "{n} of your points paid for it. Balance: {balance}.",
                int(p["points"]),
            ).format(n=fmt.number(int(p["points"])), balance=fmt.points(int(p["balance"])))
        )
    return Rendered("\n".join(lines))


def claimed_at_till(program: Program, *, code: str, reward: str, name: str) -> str:
    """The cashier's result: claimed, and for whom (the member's initial)."""
    name = name.strip()
    figures = {"code": display_code(code), "title": fmt.reward_html(program, reward)}
    if not name:
        return _("✅ Voucher {code} claimed: hand {title} over.").format(**figures)
    # The initial's own full stop ends the sentence ("… to A."), never a second one.
    return _("✅ Voucher {code} claimed: hand {title} over to {initial}").format(
        initial=escape(f"{name[0]}."), **figures
    )


@renders("voucher_claimed_staff")
def voucher_claimed_staff(program: Program, p: dict[str, Any]) -> Rendered:
    return Rendered(
        claimed_at_till(
            program,
            code=str(p["code"]),
            reward=str(p["reward"]),
            name=str(p.get("member_name") or ""),
        )
    )


def claim_replayed(program: Program, voucher: VoucherInfo) -> str:
    """The cashier tapped Claim again: their first claim's result, said to be done already."""
    assert voucher.resolved_at is not None
    at = voucher.resolved_at.astimezone(program.program.zone)
    return "\n".join(
        [
            claimed_at_till(
                program,
                code=voucher.code,
                reward=voucher.reward,
                name=voucher.member_first_name,
            ),
            _("(Already done at {time}: this second tap changed nothing.)").format(
                time=fmt.clock(at)
            ),
        ]
    )


@renders("voucher_expired")
def voucher_expired(program: Program, p: dict[str, Any]) -> Rendered:
    text = _("⌛ Your voucher “{title}” expired unused.").format(
        title=fmt.reward_html(program, str(p["reward"]))
    )
    if int(p.get("points") or 0):
        text += "\n" + _("Its {points} are yours to spend again.").format(
            points=fmt.points(int(p["points"]))
        )
    return Rendered(text)


# Refusals (bot/handlers/everyone/errors.py says them by code).


def _at(p: dict[str, Any]) -> dict[str, str]:
    moment: datetime = p["at"]
    return {"date": fmt.day(moment), "time": fmt.clock(moment)}


MESSAGES: dict[str, Callable[[dict[str, Any]], str]] = {
    "reward_unavailable": lambda p: _(
        "This reward cannot be taken with points: /rewards shows what can."
    ),
    "reward_price_changed": lambda p: _(
        "This reward now costs {points}: nothing was taken. Open /rewards to see it again."
    ).format(points=fmt.points(int(p["points"]))),
    "reward_out_of_stock": lambda p: _("This reward is out of stock: nothing was taken."),
    "reward_limit": lambda p: _n(
        "You already have this reward ({n} per member): nothing was taken.",
        "You already have {n} of this reward ({n} per member): nothing was taken.",
        int(p["limit"]),
    ).format(n=p["limit"]),
    "voucher_code_taken": lambda p: _(
        "That did not work, and nothing was taken. Please open /rewards and try again."
    ),
    "unknown_voucher": lambda p: _(
        "No voucher has the code {code}. Check it, or scan the voucher's QR code. Nothing "
        "was changed."
    ).format(code=escape(display_code(str(p.get("code") or "")))),
    "voucher_wrong_partner": lambda p: _(
        "This voucher is for {partner}: it cannot be claimed here. Nothing was changed."
    ).format(partner=escape(fmt.text(p["partner"]))),
    "voucher_expired": lambda p: _(
        "This voucher expired on {date} at {time}: it cannot be claimed. Nothing was changed."
    ).format(**_at(p)),
    "voucher_claimed": lambda p: _(
        "Already claimed on {date} at {time}: a voucher is used once. Nothing was changed."
    ).format(**_at(p)),
    "voucher_voided": lambda p: _(
        "This voucher was cancelled (its member left the program): it cannot be claimed."
    ),
    "own_voucher": lambda p: _(
        "This is your own voucher: staff cannot claim their own. Another cashier can."
    ),
    "too_many_voucher_codes": lambda p: _(
        "Too many codes that match no voucher in the last {minutes} minutes. Scan the "
        "voucher's QR code, or type the code again later."
    ).format(minutes=p["minutes"]),
}


def rewards_line(f: RewardFigures) -> str:
    """A period's rewards in the figures: vouchers issued, claimed and expired, and stamp
    cards filled."""
    return _(
        "🎟 Vouchers: {issued} issued, {claimed} claimed, {expired} expired · "
        "stamp cards filled: {filled}"
    ).format(
        issued=fmt.number(f.vouchers_issued),
        claimed=fmt.number(f.vouchers_claimed),
        expired=fmt.number(f.vouchers_expired),
        filled=fmt.number(f.cards_filled),
    )
