"""The workload: people using the bot through the fake Bot API, each deciding with a
`random.Random(f"{seed}:{name}")` of their own. Each waits for the bot's answer to every step
(STEP seconds at most: a step that gets none is abandoned, as a person would) and writes down
what it was told, which the checks compare with the ledger afterwards.

- Members join (some by a friend's /invite link), answer redemption requests (confirm,
  decline or ignore), ask for their balance, stop offers from a campaign message, block the
  bot (and come back), and delete their account.
- Cashiers at several partners post sales: earn-only, or paid partly with points (the member
  confirms); each sale's amount is unique in the soak (`sale_amount`), so every posting
  names the attempt it came from; some carry a receipt number.
- Members give points to friends, who accept them (benchmarks/chaos/gifts.py).
- Members pay the club's Stars subscription, which Telegram renews now and then
  (benchmarks/chaos/club.py).
- Members take rewards for points; cashiers claim the vouchers (benchmarks/chaos/vouchers.py).
- Managers refund sales of their partner (all, or a part).
- A marketer sends campaigns to everyone who accepts offers.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from aiogram.utils.i18n import I18n
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from benchmarks.chaos.club import ClubCharge, join_club
from benchmarks.chaos.gifts import GiftAttempt, give
from benchmarks.chaos.history import History
from benchmarks.chaos.mail import Inbox, Mail, Mailroom
from benchmarks.chaos.vouchers import VoucherClaim, VoucherTaking, claim, take_reward, voucher_for
from bot.callbacks import EarnOnlyCb, RedeemCb, TillCb
from bot.views import formatting as fmt
from db.rules.tokens import card_token
from tests.fakegram import FakeTelegramServer, UserClient

STEP = 25.0  # seconds a person waits for the bot's answer to one step
WIND_DOWN = 5.0  # at most, once the load is over
EARN, REDEEM = "🧾 Sale: earn points", "💳 Sale: use points"
# What the bot says when it did nothing: a person told so may do it again.
NOTHING = (
    "nothing was changed",
    "Nothing was changed",
    "Nothing was posted",
    "nothing was posted",
    "Not posted.",
    "Nothing was recorded",
    "nothing was refunded",
)
SAVED = "This was done and saved"  # the error report about committed work
CLOSED_SALE = "This sale is closed"


def nothing_done(mail: Mail) -> bool:
    return any(phrase in mail.text for phrase in NOTHING)


def sale_amount(k: int) -> Decimal:
    """The amount of the soak's k-th sale: unique for k < 40,000 (7919 is prime to 40,000),
    between 5.00 and 404.99, so each posting tells which attempt made it."""
    return Decimal(500 + (k * 7919) % 40_000) / 100


@dataclass
class SaleAttempt:
    k: int
    cashier: str
    cashier_chat: int
    partner: str
    member: str
    member_chat: int
    amount: Decimal
    mode: str  # "earn" or "redeem"
    receipt: str | None
    started: float
    dialog: str | None = None
    acked: float | None = None  # when the cashier saw it posted (its amount in the answer)
    # "The member confirmed" names no sale: the cashier takes it for theirs and goes on, and
    # the checks find which request the message told of (its notice's message id).
    confirmed_seen: float | None = None
    how: str = ""  # how it was acknowledged, or why not
    told_nothing: list[float] = field(default_factory=list)  # "nothing was changed" at
    request_closed: str | None = None  # a redemption closed without posting: its word
    abandoned: bool = False


@dataclass
class RefundAttempt:
    manager: str
    chat: int
    message_id: int
    sale: int
    amount: str  # "all" or an amount
    started: float
    acked: float | None = None
    told_nothing: list[float] = field(default_factory=list)


@dataclass
class Answer:
    """A member's answer to a redemption request, and what they were told."""

    member: str
    request: str
    confirm: bool
    at: float
    told: str = ""
    told_at: float | None = None


@dataclass
class World:
    """What the actors share: the fake Bot API, the mail, the history, and what each was told."""

    seed: int
    server: FakeTelegramServer
    mailroom: Mailroom
    history: History
    secret: bytes
    engine: AsyncEngine  # the soak's own connection (never killed): lookups only
    i18n: I18n
    currency: str
    deadline: float = 0.0
    members: list[Member] = field(default_factory=list)
    sales: list[SaleAttempt] = field(default_factory=list)
    refunds: list[RefundAttempt] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)
    opted_out: dict[int, float] = field(default_factory=dict)  # chat -> when told "off"
    deleted: dict[int, float] = field(default_factory=dict)  # chat -> when told "deleted"
    campaigns: list[tuple[str, float]] = field(default_factory=list)  # text, sent at
    api_sales: list[Any] = field(default_factory=list)  # api.ApiSale, each also in sales
    takings: list[VoucherTaking] = field(default_factory=list)  # rewards taken for points
    claims: list[VoucherClaim] = field(default_factory=list)  # vouchers claimed at the till
    reward_partners: dict[str, str] = field(default_factory=dict)  # reward -> its partner
    gifts: list[GiftAttempt] = field(default_factory=list)  # points given to a friend
    club_charges: list[ClubCharge] = field(default_factory=list)  # Stars Telegram took
    next_sale: int = 0
    next_user: int = 0

    @property
    def running(self) -> bool:
        return time.monotonic() < self.deadline

    async def nap(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, min(seconds, self.deadline - time.monotonic())))

    def patience(self, seconds: float) -> float:
        """How long to wait for an answer: `seconds`, but once the load is over, only a
        little (WIND_DOWN) past its end."""
        return min(seconds, max(self.deadline + WIND_DOWN - time.monotonic(), 0.5))

    def money(self, amount: Decimal) -> str:
        with self.i18n.context(), self.i18n.use_locale("en"):
            return fmt.money(amount, self.currency)

    def active_members(self) -> list[Member]:
        return [m for m in self.members if m.member_id and not m.deleted]

    async def member_id(self, telegram_id: int) -> int | None:
        """A member's id (as their card carries it); None also while the database is down."""
        try:
            async with self.engine.connect() as conn:
                found = await conn.scalar(
                    text("SELECT id FROM members WHERE telegram_id = :tg AND deleted_at IS NULL"),
                    {"tg": telegram_id},
                )
        except (OSError, DBAPIError):
            return None
        return int(found) if found is not None else None


class Person:
    def __init__(self, world: World, name: str, telegram_id: int, first_name: str) -> None:
        self.world = world
        self.name = name
        self.rng = random.Random(f"{world.seed}:{name}")
        self.user = UserClient(world.server, telegram_id, first_name=first_name)
        self.chat = telegram_id
        self.inbox: Inbox = world.mailroom.inbox(telegram_id)

    def note(self, what: str, detail: str = "") -> None:
        self.world.history.note(self.name, what, detail)

    def op(self, what: str, detail: str = "") -> None:
        self.world.history.operation(self.name, what, detail)

    async def say(self, words: str) -> tuple[int, dict[str, Any]]:
        mark = self.inbox.mark()
        sent = await self.user.send(words)
        self.note("says", words[:60])
        return mark, sent

    async def press(self, mail: Mail, data: str, label: str = "") -> int:
        mark = self.inbox.mark()
        query = await self.user.click(mail.message, data, check=False)
        self.world.mailroom.pressed(query, self.chat)
        self.note("presses", label or data)
        return mark

    async def expect(
        self,
        matches: Any,
        since: int,
        timeout: float = STEP,  # noqa: ASYNC109 - a per-step deadline is the point here
    ) -> Mail | None:
        timeout = self.world.patience(timeout)
        if isinstance(matches, str):
            needle = matches
            found = await self.inbox.wait(lambda m: needle in m.text, since=since, timeout=timeout)
        else:
            found = await self.inbox.wait(matches, since=since, timeout=timeout)
        return found[0] if found else None

    async def pause(self, low: float, high: float) -> None:
        """A while between things (cut short when the load ends)."""
        await self.world.nap(self.rng.uniform(low, high))


class Member(Person):
    def __init__(self, world: World, index: int, telegram_id: int) -> None:
        super().__init__(world, f"member{index}", telegram_id, f"M{index}")
        self.member_id: int | None = None
        self.deleted = False
        self.blocked = False
        self.consent = False
        self.in_club = False
        self.gift_lock = asyncio.Lock()  # gifts opened one at a time (benchmarks/chaos/gifts.py)
        self.charge_id = ""  # the Stars subscription's latest charge
        self._seen = 0  # redemption requests are looked for from here on

    async def join(self, payload: str | None = None) -> bool:
        """/start (with a friend's link), accept the rules, answer the offers question.
        Tried again from the start when a step gets no answer."""
        for _attempt in range(3):
            if not self.world.running:
                return False
            mark, _ = await self.say("/start" + (f" {payload}" if payload else ""))
            rules = await self.expect(lambda m: m.data("✅ I accept the rules, join"), mark)
            if rules is None:
                continue
            data = rules.data("✅ I accept the rules, join")
            assert data is not None
            mark = await self.press(rules, data, "accept the rules")
            question = await self.expect(lambda m: m.data("Yes, send me offers"), mark)
            if question is None:
                if await self.world.member_id(self.chat) is None:
                    continue
            else:
                consent = self.rng.random() < 0.8
                label = "Yes, send me offers" if consent else "No, thanks"
                choice = question.data(label)
                assert choice is not None
                mark = await self.press(question, choice, label)
                told = await self.expect(
                    lambda m: "You will get offers" in m.text or "No offers, then" in m.text,
                    mark,
                )
                self.consent = consent and told is not None
            self.member_id = await self.world.member_id(self.chat)
            if self.member_id is not None:
                self.op("join", f"by link {payload[:12]}…" if payload else "")
                self._seen = self.inbox.mark()
                return True
        self.note("join abandoned")
        return False

    async def invite_link(self) -> str | None:
        mark, _ = await self.say("/invite")
        found = await self.expect("Your link:", mark)
        if found is None:
            return None
        link = found.text.split("Your link: ")[1].split()[0]
        return link.split("start=")[1]

    async def live(self) -> None:
        """Answer redemption requests as they come; now and then do something of one's own."""
        while self.world.running and not self.deleted:
            request = await self.inbox.wait(
                lambda m: m.kind == "sent" and (m.data("✅ Confirm") or "").startswith("rdm:"),
                since=self._seen,
                timeout=self.world.patience(self.rng.uniform(4, 12)),
            )
            if request is not None:
                mail, self._seen = request
                await self.answer(mail)
                continue
            self._seen = self.inbox.mark()
            await self.something()

    async def answer(self, mail: Mail) -> None:
        roll = self.rng.random()
        if roll < 0.15 or self.blocked:
            self.note("ignores request")
            return
        await self.pause(0.1, 2.0)
        confirm = roll < 0.75
        label = "✅ Confirm" if confirm else "✖ Decline"
        data = mail.data(label)
        assert data is not None
        request = RedeemCb.unpack(data).request
        answer = Answer(self.name, request, confirm, time.time())
        self.world.answers.append(answer)
        self.op("confirm" if confirm else "decline", request)
        mark = await self.press(mail, data, label)

        def told(m: Mail) -> bool:
            return (m.kind == "answer" and bool(m.message["text"])) or (
                m.kind == "edited" and m.message_id == mail.message_id
            )

        reply = await self.expect(told, mark)
        if reply is not None:
            answer.told, answer.told_at = reply.text, reply.at
            self.note("told", reply.text[:70])

    async def something(self) -> None:
        roll = self.rng.random()
        if self.blocked:
            if roll < 0.5:
                await self.unblock()
            return
        if roll < 0.45:
            mark, _ = await self.say("/balance")
            await self.expect(lambda m: "Tier" in m.text or nothing_done(m), mark)
            self.op("balance")
        elif roll < 0.465:
            await self.block()
        elif roll < 0.47:
            await self.delete()
        elif roll < 0.57:
            mark, _ = await self.say("/stamps")
            await self.expect(lambda m: "Tour of the town" in m.text or nothing_done(m), mark)
            self.op("stamps")
        elif roll < 0.62:
            await take_reward(self)
        elif roll < 0.67:
            await give(self)
        elif roll < 0.69:
            await join_club(self)

    async def block(self) -> None:
        await self.user.block()
        self.blocked = True
        self.world.history.fault("403 member blocks", self.name)

    async def unblock(self) -> None:
        await self.user.unblock()
        self.blocked = False
        mark, _ = await self.say("/start")
        await self.expect(lambda m: "Welcome back" in m.text or "welcome back" in m.text, mark)
        self.op("unblock")

    async def stop_offers(self, mail: Mail) -> None:
        data = mail.data("🔕 Stop offers")
        if data is None:
            return
        mark = await self.press(mail, data, "stop offers")
        told = await self.expect(lambda m: "Offers are off" in m.text, mark)
        if told is not None:
            self.world.opted_out.setdefault(self.chat, told.at)
            self.consent = False
            self.op("stop offers")

    async def delete(self) -> None:
        mark, _ = await self.say("/privacy")
        overview = await self.expect(lambda m: m.data("🗑 Delete my account") is not None, mark)
        if overview is None:
            return
        ask = overview.data("🗑 Delete my account")
        assert ask is not None
        mark = await self.press(overview, ask, "delete my account")
        sure = await self.expect(lambda m: m.data("Yes, delete everything") is not None, mark)
        if sure is None:
            return
        yes = sure.data("Yes, delete everything")
        assert yes is not None
        mark = await self.press(sure, yes, "yes, delete everything")
        done = await self.expect(lambda m: "forfeited" in m.text or "is deleted" in m.text, mark)
        if done is not None:
            self.deleted = True
            self.world.deleted.setdefault(self.chat, done.at)
            self.op("delete account")


class Joiner:
    """New people join all along, some by a member's /invite link."""

    def __init__(self, world: World, first_id: int, rng: random.Random) -> None:
        self.world = world
        self.first_id = first_id
        self.rng = rng
        self.tasks: set[asyncio.Task[None]] = set()

    def new_member(self) -> Member:
        index = len(self.world.members)
        member = Member(self.world, index, self.first_id + index)
        self.world.members.append(member)
        return member

    async def arrive(self, member: Member, inviter: Member | None) -> None:
        payload = await inviter.invite_link() if inviter is not None else None
        if await member.join(payload):
            await member.live()

    def spawn(self, member: Member, inviter: Member | None = None) -> None:
        task = asyncio.create_task(self.arrive(member, inviter))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def run(self) -> None:
        while self.world.running:
            await self.world.nap(self.rng.uniform(0.5, 3.0))
            active = self.world.active_members()
            inviter = self.rng.choice(active) if active and self.rng.random() < 0.4 else None
            self.spawn(self.new_member(), inviter)


class Cashier(Person):
    def __init__(
        self, world: World, index: int, count: int, telegram_id: int, partner: str
    ) -> None:
        super().__init__(world, f"cashier{index}-{partner}", telegram_id, f"C{index}")
        self.index, self.count, self.partner = index, count, partner
        self.sales = 0
        self.unresolved: set[str] = set()  # requests it stopped waiting for

    async def run(self) -> None:
        while self.world.running:
            members = self.world.active_members()
            if not members:
                await asyncio.sleep(0.5)
                continue
            if self.rng.random() < 0.7 and (taking := voucher_for(self)) is not None:
                await claim(self, taking)
            else:
                await self.sale(self.rng.choice(members))
            await self.pause(0.1, 1.5)

    async def sale(self, member: Member) -> None:
        k = self.index + self.count * self.sales
        self.sales += 1
        mode = "redeem" if self.rng.random() < 0.4 else "earn"
        receipt = f"S{k}" if self.rng.random() < 0.3 else None
        amount = sale_amount(k)
        attempt = SaleAttempt(
            k,
            self.name,
            self.chat,
            self.partner,
            member.name,
            member.chat,
            amount,
            mode,
            receipt,
            time.time(),
        )
        self.world.sales.append(attempt)
        self.op(f"sale ({mode})", f"#{k} {amount} to {member.name}")
        assert member.member_id is not None
        token = card_token(
            self.world.secret, member.member_id, datetime.now(UTC) + timedelta(minutes=5)
        )
        mark, _ = await self.say(f"/start {token}")
        panel = await self.expect(
            lambda m: m.data(EARN) is not None or nothing_done(m) or "No such member" in m.text,
            mark,
        )
        if panel is None or panel.data(EARN) is None:
            return self._give_up(attempt, panel, "no panel")
        choice = panel.data(EARN if mode == "earn" else REDEEM)
        assert choice is not None
        attempt.dialog = TillCb.unpack(choice).dialog
        mark = await self.press(panel, choice, mode)
        prompt = await self.expect(
            lambda m: "Enter the purchase amount" in m.text or (m.kind == "answer" and m.text),
            mark,
        )
        if prompt is None or "Enter the purchase amount" not in prompt.text:
            return self._give_up(attempt, prompt, "no prompt")
        typed = f"{amount}" if self.rng.random() < 0.5 else f"{amount}".replace(".", ",")
        if receipt:
            typed += f" #{receipt}"
        mark, _ = await self.say(typed)
        if mode == "earn":
            await self.finish_earn(attempt, mark, typed)
        else:
            await self.finish_redeem(attempt, mark, typed)

    @staticmethod
    def _ours(data: str | None, attempt: SaleAttempt) -> bool:
        """Whether a button belongs to this sale (its dialog, or its redemption request):
        a late message of an earlier sale is not this one's to press."""
        if not data or attempt.dialog is None:
            return False
        if data.startswith("till:"):
            return TillCb.unpack(data).dialog == attempt.dialog
        if data.startswith("eo:"):
            return EarnOnlyCb.unpack(data).request == attempt.dialog
        return False

    def _give_up(self, attempt: SaleAttempt, mail: Mail | None, why: str) -> None:
        if mail is not None and nothing_done(mail):
            attempt.told_nothing.append(mail.at)
        attempt.abandoned = True
        attempt.how = why if mail is None else f"{why}: {mail.text[:60]}"
        self.note("gives up", f"#{attempt.k}: {attempt.how}")

    def _posted(self, attempt: SaleAttempt, mail: Mail, how: str) -> None:
        attempt.acked, attempt.how = mail.at, how
        self.note("posted", f"#{attempt.k} {how}")

    def _receipt(self, attempt: SaleAttempt) -> Any:
        money = self.world.money(attempt.amount)

        def matches(m: Mail) -> bool:
            return m.kind == "sent" and "✅" in m.text and money in m.text

        return matches

    async def finish_earn(self, attempt: SaleAttempt, mark: int, typed: str) -> None:
        """After the amount: the receipt (its amount is this sale's), or a question to
        answer (again? the discount? type it again?), or a refusal."""
        receipt = self._receipt(attempt)
        for _step in range(4):
            reply = await self.expect(
                lambda m: (
                    receipt(m)
                    or (
                        m.kind in ("sent", "answer")
                        and (
                            "already posted" in m.text
                            or self._ours(m.data("✅ Post again"), attempt)
                            or self._ours(m.data(prefix="🧾 Post"), attempt)
                            or "Type the amount again" in m.text
                            or nothing_done(m)
                            or SAVED in m.text
                            or CLOSED_SALE in m.text
                            or "not enough" in m.text.lower()
                        )
                    )
                ),
                mark,
            )
            if reply is None:
                return self._give_up(attempt, None, "no receipt")
            if receipt(reply):
                return self._posted(attempt, reply, "receipt")
            if "already posted" in reply.text and self.world.money(attempt.amount) in reply.text:
                return self._posted(attempt, reply, "already posted")
            if SAVED in reply.text:
                # Committed, the bot says: the receipt is owed and must come.
                attempt.how = "saved"
                mark = self.inbox.mark()
                continue
            again = reply.data("✅ Post again") or reply.data(prefix="🧾 Post")
            if again is not None and self._ours(again, attempt):
                mark = await self.press(reply, again, "post")
                continue
            if "Type the amount again" in reply.text and typed:
                mark, _ = await self.say(typed)
                continue
            return self._give_up(attempt, reply, "refused")
        return self._give_up(attempt, None, "too many steps")

    async def finish_redeem(self, attempt: SaleAttempt, mark: int, typed: str) -> None:
        for _step in range(4):
            reply = await self.expect(
                lambda m: (
                    m.kind in ("sent", "answer")
                    and (
                        "How many points?" in m.text
                        or "Waiting for the member" in m.text
                        or self._ours(m.data(prefix="🧾 Post"), attempt)
                        or "Type the amount again" in m.text
                        or nothing_done(m)
                        or SAVED in m.text
                        or CLOSED_SALE in m.text
                        or ("points" in m.text.lower() and "not" in m.text.lower())
                    )
                ),
                mark,
            )
            if reply is None:
                return self._give_up(attempt, None, "no answer to the amount")
            if "How many points?" in reply.text:
                data = reply.data(prefix="Max")
                if data is not None and self.rng.random() < 0.7:
                    mark = await self.press(reply, data, "max")
                else:
                    mark, _ = await self.say(str(self.rng.randint(1, 30)))
                continue
            if "Waiting for the member" in reply.text:
                return await self.await_member(attempt)
            if "Type the amount again" in reply.text:
                mark, _ = await self.say(typed)
                continue
            button = reply.data(prefix="🧾 Post")
            if button is not None and self._ours(button, attempt):
                # No points to use (post without them), or the member cannot be asked.
                attempt.mode = "earn"
                mark = await self.press(reply, button, "post without points")
                return await self.finish_earn(attempt, mark, typed)
            return self._give_up(attempt, reply, "refused")
        return self._give_up(attempt, None, "too many steps")

    async def await_member(self, attempt: SaleAttempt) -> None:
        """The member's answer, as the outbox brings it; after a while, withdraw the request
        (/cancel) and wait for that outcome instead. A request closed without a posting may
        be finished without points."""
        assert attempt.dialog is not None
        request = attempt.dialog
        mark = self.inbox.mark()
        patience = self.rng.uniform(3, 10)
        cancelled = False
        deadline = time.monotonic() + STEP + patience

        def outcome(m: Mail) -> bool:
            if m.kind != "sent":
                return False
            data = m.data(prefix="🧾 Post")
            if data is not None and data.startswith("eo:"):
                return EarnOnlyCb.unpack(data).request == request
            if "The member confirmed" in m.text:
                return not self.unresolved
            return "Nothing to cancel" in m.text

        while time.monotonic() < deadline:
            wait = patience if not cancelled else deadline - time.monotonic()
            wait = self.world.patience(max(wait, 0.1))
            found = await self.inbox.wait(outcome, since=mark, timeout=wait)
            if found is None:
                if cancelled:
                    break
                cancelled = True
                await self.say("/cancel")
                self.op("withdraw", request)
                continue
            mail, _ = found
            if "The member confirmed" in mail.text:
                attempt.confirmed_seen, attempt.how = mail.at, "confirmed"
                self.note("confirmed", f"#{attempt.k} (a confirmation arrived)")
                return
            if "Nothing to cancel" in mail.text:
                if "refunded" not in mail.text and self.world.money(attempt.amount) in mail.text:
                    return self._posted(attempt, mail, "confirmed (cancel said)")
                mark = self.inbox.mark()
                continue
            attempt.request_closed = mail.text.splitlines()[0]
            attempt.told_nothing.append(mail.at)
            data = mail.data(prefix="🧾 Post")
            if data is not None and self.rng.random() < 0.7:
                attempt.mode = "earn (after the request)"
                mark = await self.press(mail, data, "post without points")
                return await self.finish_earn(attempt, mark, "")
            attempt.how = f"request closed: {attempt.request_closed}"
            return
        self.unresolved.add(request)
        return self._give_up(attempt, None, "no outcome of the request")


class Manager(Person):
    def __init__(self, world: World, index: int, telegram_id: int, partner: str) -> None:
        super().__init__(world, f"manager{index}-{partner}", telegram_id, f"Boss{index}")
        self.partner = partner

    async def run(self) -> None:
        while self.world.running:
            await self.pause(2, 6)
            sales = [
                s
                for s in self.world.sales
                if s.partner == self.partner and (s.acked or s.confirmed_seen)
            ]
            if not sales:
                continue
            sale = self.rng.choice(sales[-30:])
            number = await self.sale_number(sale)
            if number is None:
                continue
            if self.rng.random() < 0.5:
                how = "all"
            else:
                how = str(
                    (sale.amount * Decimal(self.rng.randint(5, 60)) / 100).quantize(
                        Decimal("0.01")
                    )
                )
            await self.refund(number, how)

    async def sale_number(self, sale: SaleAttempt) -> int | None:
        """The sale's number, as /shift shows it to the partner's staff."""
        try:
            async with self.world.engine.connect() as conn:
                found = await conn.scalar(
                    text(
                        "SELECT id FROM transactions WHERE amount = :amount"
                        " AND kind IN ('earn', 'redeem') ORDER BY id LIMIT 1"
                    ),
                    {"amount": sale.amount},
                )
        except (OSError, DBAPIError):
            return None
        return int(found) if found is not None else None

    async def refund(self, number: int, how: str) -> None:
        mark, sent = await self.say(f"/refund {number} {how} chaos")
        attempt = RefundAttempt(self.name, self.chat, sent["message_id"], number, how, time.time())
        self.world.refunds.append(attempt)
        self.op("refund", f"No. {number} {how}")
        reply = await self.expect(
            lambda m: (
                m.kind == "sent"
                and (
                    "Refunded" in m.text
                    or nothing_done(m)
                    or "refund" in m.text.lower()
                    or SAVED in m.text
                )
            ),
            mark,
        )
        if reply is None:
            self.note("no answer to the refund")
        elif "↩️ Refunded" in reply.text or SAVED in reply.text:
            attempt.acked = reply.at
        elif nothing_done(reply):
            attempt.told_nothing.append(reply.at)


class Marketer(Person):
    def __init__(self, world: World, telegram_id: int) -> None:
        super().__init__(world, "marketer", telegram_id, "Mia")
        self.sent = 0

    async def run(self) -> None:
        await self.pause(1, 5)
        while self.world.running:
            await self.campaign()
            await self.pause(8, 20)

    async def campaign(self) -> None:
        self.sent += 1
        words = f"Chaos offer {self.sent} (seed {self.world.seed})"
        mark, _ = await self.say("/campaign")
        draft = await self.expect(lambda m: m.data("Next: write the message ▶"), mark)
        if draft is None:
            return self.note("campaign abandoned", "no draft")
        data = draft.data("Next: write the message ▶")
        assert data is not None
        mark = await self.press(draft, data, "next")
        if await self.expect("Send the message", mark) is None:
            return self.note("campaign abandoned", "no prompt")
        mark, _ = await self.say(words)
        if await self.expect("link button", mark) is None:
            return self.note("campaign abandoned", "no link question")
        mark, _ = await self.say("/skip")
        ready = await self.expect(lambda m: m.data("🚀 Send now") is not None, mark)
        if ready is None:
            return self.note("campaign abandoned", "no send button")
        data = ready.data("🚀 Send now")
        assert data is not None
        mark = await self.press(ready, data, "send now")
        started = await self.expect("is being sent", mark)
        if started is not None:
            self.world.campaigns.append((words, started.at))
            self.op("campaign", words)
        else:
            # Perhaps sent, perhaps not: its messages are checked all the same.
            self.world.campaigns.append((words, time.time()))
            self.note("campaign unconfirmed", words)


class OfferReader:
    """Members who get a campaign message sometimes press its "stop offers" button."""

    def __init__(self, world: World, rng: random.Random) -> None:
        self.world = world
        self.rng = rng
        self.seen = 0
        self.tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        while self.world.running:
            await self.world.nap(1)
            sends = self.world.mailroom.sends
            fresh, self.seen = sends[self.seen :], len(sends)
            by_chat = {m.chat: m for m in self.world.members}
            for mail in fresh:
                member = by_chat.get(int(mail.message["chat"]["id"]))
                if (
                    member is not None
                    and not member.deleted
                    and mail.text.startswith("Chaos offer")
                    and self.rng.random() < 0.08
                ):
                    task = asyncio.create_task(member.stop_offers(mail))
                    self.tasks.add(task)
                    task.add_done_callback(self.tasks.discard)
