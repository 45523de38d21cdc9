"""Messages the bot sends on its own: points arrived, spent, refunded, expiring, expired.

Each is written in the member's language. A member who blocked the bot is marked
unreachable and not tried again; a send that fails for any other reason is logged, never
raised into the posting that triggered it (the points are already safely stored)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from html import escape

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError, TelegramForbiddenError, TelegramRetryAfter
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import formatting as fmt
from bot.metrics import DELIVERIES
from db.members import contact
from db.program import Program
from db.purchases import PurchaseResult, ReversalResult
from db.reminders import Reminder
from db.wallet import set_reachable

log = logging.getLogger(__name__)


class Notifier:
    def __init__(
        self,
        bot: Bot,
        i18n: I18n,
        sessions: async_sessionmaker[AsyncSession],
        program: Program,
    ) -> None:
        self.bot = bot
        self.i18n = i18n
        self.sessions = sessions
        self.program = program

    async def to_member(self, member_id: int, compose: Callable[[], str]) -> bool:
        async with self.sessions() as session:
            who = await contact(session, member_id)
        if who is None:
            return False
        return await self.send(who.telegram_id, who.language, compose)

    async def send(self, telegram_id: int, language: str, compose: Callable[[], str]) -> bool:
        with self.i18n.context(), self.i18n.use_locale(language):
            text = compose()
        for _attempt in range(3):
            try:
                await self.bot.send_message(telegram_id, text)
                DELIVERIES.labels("sent").inc()
                return True
            except TelegramRetryAfter as exc:
                await asyncio.sleep(exc.retry_after)
            except TelegramForbiddenError:
                DELIVERIES.labels("blocked").inc()
                async with self.sessions() as session:
                    await set_reachable(session, telegram_id, False)
                return False
            except TelegramAPIError:
                log.warning("could not notify %s", telegram_id, exc_info=True)
                DELIVERIES.labels("failed").inc()
                return False
        return False

    def _money(self, value: object) -> str:
        return fmt.money(value, self.program.program.currency)  # type: ignore[arg-type]

    async def purchase(self, result: PurchaseResult, partner_name: str) -> None:
        partner_name = escape(partner_name)

        def compose() -> str:
            lines = []
            if result.points_redeemed:
                lines.append(
                    _("✅ {points} paid {money} at {partner}.").format(
                        points=fmt.points(result.points_redeemed),
                        money=self._money(result.amount - result.paid),
                        partner=partner_name,
                    )
                )
            if result.points_earned:
                lines.append(
                    _("🟢 +{points} for your purchase of {money} at {partner}.").format(
                        points=fmt.points(result.points_earned),
                        money=self._money(result.paid),
                        partner=partner_name,
                    )
                )
            elif not result.points_redeemed:
                lines.append(
                    _("Your purchase of {money} at {partner} is recorded.").format(
                        money=self._money(result.amount), partner=partner_name
                    )
                )
            if result.referral and result.referral.invitee_points:
                lines.append(
                    _("🎁 +{points}: your friend's invitation paid off.").format(
                        points=fmt.points(result.referral.invitee_points)
                    )
                )
            lines.append(_("Balance: {points}.").format(points=fmt.points(result.balance)))
            return "\n".join(lines)

        await self.to_member(result.member_id, compose)
        reward = result.referral
        if reward and reward.inviter_id is not None and reward.inviter_points:
            await self.to_member(
                reward.inviter_id,
                lambda: _("🎁 +{points}: a friend you invited made their first purchase!").format(
                    points=fmt.points(reward.inviter_points)
                ),
            )

    async def reversal(self, result: ReversalResult, partner_name: str) -> None:
        partner_name = escape(partner_name)

        def compose() -> str:
            lines = [
                _("↩️ Refund of {money} at {partner}.").format(
                    money=self._money(result.amount), partner=partner_name
                )
            ]
            if result.points_returned:
                lines.append(
                    _("+{points} returned to you.").format(
                        points=fmt.points(result.points_returned)
                    )
                )
            reward = result.referral.invitee_points if result.referral else 0
            if result.points_clawed_back - reward:
                lines.append(
                    _("−{points} earned on the refunded money.").format(
                        points=fmt.points(result.points_clawed_back - reward)
                    )
                )
            if reward:
                lines.append(
                    _("−{points}: the invitation reward this purchase paid.").format(
                        points=fmt.points(reward)
                    )
                )
            lines.append(_("Balance: {points}.").format(points=fmt.points(result.balance)))
            return "\n".join(lines)

        await self.to_member(result.member_id, compose)
        back = result.referral
        if back and back.inviter_id is not None and back.inviter_points:
            await self.to_member(
                back.inviter_id,
                lambda: _(
                    "↩️ −{points}: your friend's first purchase was refunded, so its invitation "
                    "reward is taken back."
                ).format(points=fmt.points(back.inviter_points)),
            )

    async def adjusted(self, member_id: int, points: int, balance: int, reason: str) -> None:
        await self.to_member(
            member_id,
            lambda: (
                _("{sign}{points}: {reason}").format(
                    sign="+" if points > 0 else "−",
                    points=fmt.points(abs(points)),
                    reason=escape(reason),
                )
                + "\n"
                + _("Balance: {points}.").format(points=fmt.points(balance))
            ),
        )

    async def expiring(self, reminder: Reminder) -> bool:
        return await self.send(
            reminder.telegram_id,
            reminder.language,
            lambda: _(
                "⏳ {points} will expire on {date}. Spend them at any partner before then: "
                "/partners"
            ).format(points=fmt.points(reminder.points), date=fmt.day(reminder.expires_at)),
        )

    async def expired(self, member_id: int, points: int) -> None:
        await self.to_member(
            member_id,
            lambda: _("⌛ {points} expired today.").format(points=fmt.points(points)),
        )
