"""What the soak proves, from what each person was told (actors.World), what reached the
fake Bot API (mail.Mailroom) and what the database holds. Each check gives a figure and its
violations; every violation names the moment it is about, so its history can be shown."""

from __future__ import annotations

import re
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from benchmarks.chaos.actors import World
from db.rules.discounts import charged
from db.rules.program import Program
from tests.invariants import ledger_violations


@dataclass(frozen=True, slots=True)
class Violation:
    check: str
    what: str
    at: float  # the moment it is about (seconds since the epoch)
    actors: frozenset[str] = frozenset()


@dataclass
class Check:
    name: str
    figure: str = ""
    violations: list[Violation] = field(default_factory=list)

    def fail(self, what: str, at: float, *actors: str) -> None:
        self.violations.append(Violation(self.name, what, at, frozenset(actors)))


def _ts(value: datetime) -> float:
    return value.timestamp()


async def invariants(session: AsyncSession, at: float) -> Check:
    check = Check("ledger invariants")
    found = await ledger_violations(session)
    for name, rows in found.items():
        check.fail(f"{name}: {rows[:10]}", at)
    return check


async def sales(engine: AsyncEngine, world: World) -> Check:
    """Every sale a cashier saw acknowledged is posted exactly once; none is posted twice;
    no posting is one nobody made; nobody was told "nothing was done" about a sale posted
    before they were told so."""
    check = Check("sales")
    async with engine.connect() as conn:
        confirmations = (
            await conn.execute(
                text(
                    "SELECT params->>'request' AS request, chat_id, message_id FROM notices"
                    " WHERE kind = 'request_confirmed' AND status = 'sent'"
                    " AND edit_message_id IS NULL"
                )
            )
        ).all()
        rows = (
            await conn.execute(
                text(
                    "SELECT id, amount, kind, created_at, idempotency_key FROM transactions"
                    " WHERE kind IN ('earn', 'redeem') ORDER BY id"
                )
            )
        ).all()
    posted: dict[Decimal, list[Any]] = defaultdict(list)
    for row in rows:
        posted[Decimal(row.amount)].append(row)
    attempts = {a.amount: a for a in world.sales}
    # The confirmations that reached the cashiers, by request: the message the bot says it
    # sent (its notice) is in the cashier's chat.
    seen = {(int(m.message["chat"]["id"]), m.message_id): m for m in world.mailroom.sends}
    confirmed = {
        c.request: seen[(c.chat_id, c.message_id)]
        for c in confirmations
        if (c.chat_id, c.message_id) in seen
    }
    acked = unknown = refused = 0
    for attempt in world.sales:
        found = posted.get(attempt.amount, [])
        who = (attempt.cashier, attempt.member)
        if attempt.acked is None and attempt.dialog in confirmed:
            attempt.acked = confirmed[attempt.dialog].at
            attempt.how = "confirmed"
        if len(found) > 1:
            ids = [r.id for r in found]
            check.fail(
                f"sale #{attempt.k} ({attempt.amount}) posted {len(found)} times: {ids}",
                attempt.started,
                *who,
            )
        if attempt.acked is not None:
            acked += 1
            if not found:
                check.fail(
                    f"sale #{attempt.k} ({attempt.amount}) acknowledged ({attempt.how}) but not"
                    " posted",
                    attempt.acked,
                    *who,
                )
        elif attempt.told_nothing:
            refused += 1
        else:
            unknown += 1
        for told in attempt.told_nothing:
            early = [r for r in found if _ts(r.created_at) < told]
            if early:
                check.fail(
                    f"sale #{attempt.k} ({attempt.amount}): told that nothing was done, but"
                    f" transaction {early[0].id} was posted before",
                    told,
                    *who,
                )
    strangers = [r for amount, rs in posted.items() if amount not in attempts for r in rs]
    for row in strangers:
        check.fail(
            f"transaction {row.id} ({row.amount}) matches no sale made", _ts(row.created_at)
        )
    check.figure = (
        f"{len(world.sales)} attempted: {acked} acknowledged, {refused} refused, "
        f"{unknown} left unanswered; {len(rows)} posted"
    )
    return check


async def answers(engine: AsyncEngine, world: World) -> Check:
    """A member told "Confirmed" has their redemption posted (once: its key); one told
    "Declined", "already closed" or "nothing was changed" has none posted before that."""
    check = Check("redemption answers")
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT idempotency_key, created_at FROM transactions"
                    " WHERE idempotency_key LIKE 'redemption:%'"
                )
            )
        ).all()
    posted = {r.idempotency_key.removeprefix("redemption:"): _ts(r.created_at) for r in rows}
    confirmed = 0
    for answer in world.answers:
        at = posted.get(answer.request)
        if answer.told.startswith("✅ Confirmed"):
            confirmed += 1
            if at is None:
                check.fail(
                    f"{answer.member} told confirmed, {answer.request} not posted",
                    answer.told_at or answer.at,
                    answer.member,
                )
        elif (
            answer.told_at is not None
            and at is not None
            and at < answer.told_at
            and ("Nothing was charged" in answer.told or "nothing was changed" in answer.told)
        ):
            check.fail(
                f"{answer.member} told {answer.told[:50]!r} of {answer.request}, posted before",
                answer.told_at,
                answer.member,
            )
    check.figure = f"{len(world.answers)} answers, {confirmed} told confirmed"
    return check


async def refunds(engine: AsyncEngine, world: World) -> Check:
    check = Check("refunds")
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT idempotency_key, created_at FROM transactions"
                    " WHERE idempotency_key LIKE 'refund:%'"
                )
            )
        ).all()
    posted = Counter(r.idempotency_key for r in rows)
    when = {r.idempotency_key: _ts(r.created_at) for r in rows}
    acked = 0
    for attempt in world.refunds:
        key = f"refund:{attempt.chat}:{attempt.message_id}"
        if attempt.acked is not None:
            acked += 1
            if posted[key] != 1:
                check.fail(
                    f"refund {key} acknowledged, posted {posted[key]} times",
                    attempt.acked,
                    attempt.manager,
                )
        for told in attempt.told_nothing:
            if key in when and when[key] < told:
                check.fail(
                    f"refund {key}: told nothing was done, but it was posted",
                    told,
                    attempt.manager,
                )
    check.figure = f"{len(world.refunds)} attempted, {acked} acknowledged, {len(rows)} posted"
    return check


async def stamps(engine: AsyncEngine, world: World, program: Program) -> Check:
    """Stamps come from the soak's sales, as the program's cards say: one per sale and card
    at most, at one of the card's partners, on a sale that charged at least its
    min_purchase; at most per_day a business day, and the first such sale of a day gets one
    (cards with a daily limit); a stamp taken back only by a refund of its sale."""
    check = Check("stamps")
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT st.id, st.idempotency_key AS key, st.created_at, t.id AS sale,"
                    " t.kind AS sale_kind, t.amount, t.discount, t.member_id, p.slug AS partner,"
                    " (SELECT min(b.created_at) FROM transactions b WHERE b.reverses_id = st.id)"
                    "  AS taken_back,"
                    " EXISTS (SELECT 1 FROM transactions r WHERE r.reverses_id = t.id"
                    "  AND r.kind = 'reverse') AS refunded"
                    " FROM transactions st LEFT JOIN transactions t ON t.id = st.related_id"
                    " LEFT JOIN partners p ON p.id = t.partner_id WHERE st.kind = 'stamp'"
                )
            )
        ).all()
        sales_rows = (
            await conn.execute(
                text(
                    "SELECT t.id, t.amount, t.discount, t.member_id, t.created_at,"
                    " p.slug AS partner FROM transactions t JOIN partners p"
                    " ON p.id = t.partner_id WHERE t.kind IN ('earn', 'redeem')"
                )
            )
        ).all()
        filled = await conn.scalar(
            text("SELECT count(*) FROM transactions WHERE kind = 'card_filled'")
        )
    cards = {c.slug: c for c in program.stamp_cards}
    zone = program.program.zone
    amounts = {a.amount for a in world.sales}
    per_sale: Counter[tuple[int, str]] = Counter()
    per_day: Counter[tuple[int, str, Any]] = Counter()
    # (member, card, day) -> its stamps: when given, when taken back (None: kept)
    days: dict[tuple[int, str, Any], list[tuple[datetime, datetime | None]]] = defaultdict(list)
    by_card: Counter[str] = Counter()
    taken_back = 0
    for row in rows:
        slug = row.key.rsplit(":stamp:", 1)[-1]
        card = cards.get(slug)
        at = _ts(row.created_at)
        if row.sale is None or row.sale_kind not in ("earn", "redeem") or card is None:
            check.fail(f"stamp {row.id} ({row.key}) names no sale of a card", at)
            continue
        by_card[slug] += 1
        per_sale[(row.sale, slug)] += 1
        if Decimal(row.amount) not in amounts:
            check.fail(f"stamp {row.id}: its sale {row.sale} is none the soak made", at)
        if row.partner not in card.partners:
            check.fail(f"stamp {row.id} on {slug} from a sale at {row.partner}", at)
        if charged(Decimal(row.amount), row.discount) < card.min_purchase:
            check.fail(f"stamp {row.id} on {slug}: sale {row.sale} charged too little", at)
        day = row.created_at.astimezone(zone).date()
        per_day[(row.member_id, slug, day)] += 1
        days[(row.member_id, slug, day)].append((row.created_at, row.taken_back))
        if row.taken_back:
            taken_back += 1
            if not row.refunded:
                check.fail(f"stamp {row.id} taken back, its sale {row.sale} not refunded", at)
    for (sale, slug), n in per_sale.items():
        if n > 1:
            check.fail(f"sale {sale} has {n} stamps on {slug}", time.time())
    for (member, slug, day), given in days.items():
        # Each stamp was within the limit when given: the day's stamps kept until then.
        limit = cards[slug].per_day
        for at, _back in given:
            kept = sum(1 for t, b in given if t < at and (b is None or b > at))
            if limit and kept >= limit:
                check.fail(
                    f"member {member} got a stamp on {slug} on {day} with {kept} kept before",
                    _ts(at),
                )
    for card in cards.values():
        if not card.per_day or card.distinct_partners:
            continue
        days = {
            (r.member_id, r.created_at.astimezone(zone).date())
            for r in sales_rows
            if r.partner in card.partners
            and charged(Decimal(r.amount), r.discount) >= card.min_purchase
        }
        for member, day in sorted(days):
            if not per_day[(member, card.slug, day)]:
                check.fail(
                    f"member {member}'s sales at {card.slug} on {day} got no stamp", time.time()
                )
    check.figure = (
        f"{len(rows)} stamps ("
        + ", ".join(f"{n} {slug}" for slug, n in sorted(by_card.items()))
        + f"), {taken_back} taken back by refunds, {filled} cards filled"
    )
    return check


async def vouchers(engine: AsyncEngine, world: World) -> Check:
    """A reward the member was told taken is a voucher (its code the confirmation's); one
    told "nothing was taken" is none made before; a voucher a cashier saw claimed is
    claimed, with exactly one posting (keyed by its code); nobody was told "nothing was
    changed" about a claim made before; and no voucher was claimed by a claim nobody
    made."""
    check = Check("vouchers")
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT v.code, v.member_id, v.status, v.created_at, v.resolved_at,"
                    " v.source, (SELECT count(*) FROM transactions t"
                    "  WHERE t.idempotency_key = 'voucher:' || v.code AND t.kind = 'voucher')"
                    " AS postings FROM vouchers v"
                )
            )
        ).all()
    found = {r.code: r for r in rows}
    taken = claimed = 0
    for taking in world.takings:
        row = found.get(taking.code)
        who = (taking.member,)
        if taking.taken is not None:
            taken += 1
            if row is None or row.member_id != taking.member_id:
                check.fail(
                    f"{taking.member} told voucher {taking.code} taken: none", taking.taken, *who
                )
        for told in taking.told_nothing:
            if row is not None and _ts(row.created_at) < told:
                check.fail(
                    f"{taking.member} told nothing was taken, voucher {taking.code} made before",
                    told,
                    *who,
                )
    claimed_codes = set()
    for attempt in world.claims:
        row = found.get(attempt.code)
        who = (attempt.cashier,)
        if attempt.acked is not None:
            claimed += 1
            claimed_codes.add(attempt.code)
            if row is None or row.status != "claimed" or row.postings != 1:
                check.fail(
                    f"voucher {attempt.code} seen claimed: "
                    + (f"{row.status}, {row.postings} postings" if row else "no such voucher"),
                    attempt.acked,
                    *who,
                )
        for told in attempt.told_nothing:
            # An expired or cancelled voucher is truly left as it was: only a claim counts.
            if (
                row is not None
                and row.status == "claimed"
                and row.resolved_at is not None
                and _ts(row.resolved_at) < told
            ):
                check.fail(
                    f"voucher {attempt.code}: {attempt.cashier} told nothing was changed,"
                    " claimed before",
                    told,
                    *who,
                )
    tried = {a.code for a in world.claims}
    for row in rows:
        if row.postings > 1:
            check.fail(f"voucher {row.code} posted {row.postings} times", time.time())
        if row.status == "claimed" and row.code not in tried:
            check.fail(f"voucher {row.code} claimed, by no claim made", time.time())
    statuses = Counter(r.status for r in rows)
    check.figure = (
        f"{len(world.takings)} rewards asked for, {taken} told taken; {len(world.claims)}"
        f" claims, {claimed} seen claimed; vouchers: "
        + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))
    )
    return check


async def gifts(engine: AsyncEngine, world: World) -> Check:
    """A gift the giver was told is ready exists (its code the confirmation's); one the
    friend was told accepted is theirs with exactly one posting; a friend told it was taken
    by someone else or is no longer there had not been given it before; every gift accepted
    went to the friend it was sent to."""
    check = Check("gifts")
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT g.code, g.giver_id, g.receiver_id, g.status, g.resolved_at,"
                    " (SELECT count(*) FROM transactions t WHERE t.idempotency_key = g.hold_key"
                    "  AND t.kind = 'gift') AS postings FROM gifts g"
                )
            )
        ).all()
    found = {r.code: r for r in rows}
    sent_to = {g.code: g.friend_id for g in world.gifts}
    ready = accepted = 0
    for gift in world.gifts:
        row = found.get(gift.code)
        if gift.ready is not None:
            ready += 1
            if row is None or row.giver_id != gift.giver_id:
                check.fail(
                    f"{gift.giver} told gift {gift.code} is ready: none", gift.ready, gift.giver
                )
        if gift.accepted is not None:
            accepted += 1
            if (
                row is None
                or row.status != "accepted"
                or row.receiver_id != gift.friend_id
                or row.postings != 1
            ):
                check.fail(
                    f"{gift.friend} told gift {gift.code} accepted: "
                    + (
                        f"{row.status} by {row.receiver_id}, {row.postings} postings"
                        if row
                        else "none"
                    ),
                    gift.accepted,
                    gift.friend,
                )
        for told in gift.told_closed:
            if (
                row is not None
                and row.receiver_id == gift.friend_id
                and row.resolved_at is not None
                and _ts(row.resolved_at) < told
            ):
                check.fail(
                    f"{gift.friend} told gift {gift.code} is closed, accepted by them before",
                    told,
                    gift.friend,
                )
    for row in rows:
        if row.postings > 1:
            check.fail(f"gift {row.code} posted {row.postings} times", time.time())
        if row.status == "accepted" and sent_to.get(row.code) != row.receiver_id:
            check.fail(
                f"gift {row.code} accepted by {row.receiver_id}, sent to nobody such", time.time()
            )
    statuses = Counter(r.status for r in rows)
    check.figure = (
        f"{len(world.gifts)} gifts: {ready} ready, {accepted} told accepted; "
        + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))
    )
    return check


async def club(engine: AsyncEngine, world: World) -> Check:
    """Every Stars charge Telegram took (a first payment or a renewal) is recorded exactly
    once, as a club payment of the member who paid; none is recorded that it did not take."""
    check = Check("club payments")
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT p.charge_id, p.method, p.created_at, m.telegram_id"
                    " FROM club_payments p LEFT JOIN members m ON m.id = p.member_id"
                )
            )
        ).all()
        members = await conn.scalar(
            text("SELECT count(*) FROM club_memberships WHERE ends_at > now()")
        )
    recorded = Counter(r.charge_id for r in rows)
    whose = {r.charge_id: r.telegram_id for r in rows}
    taken = {c.charge_id: c for c in world.club_charges}
    for charge in world.club_charges:
        gone = charge.chat in world.deleted
        if recorded[charge.charge_id] != 1 and not (gone and not recorded[charge.charge_id]):
            check.fail(
                f"Stars charge {charge.charge_id} of {charge.member} recorded"
                f" {recorded[charge.charge_id]} times",
                charge.at,
                charge.member,
            )
        elif recorded[charge.charge_id] and whose[charge.charge_id] not in (charge.chat, None):
            check.fail(f"Stars charge {charge.charge_id} recorded for another member", charge.at)
    for row in rows:
        if row.charge_id not in taken:
            check.fail(
                f"club payment {row.charge_id} that Telegram never took", _ts(row.created_at)
            )
    renewals = sum(1 for c in world.club_charges if c.renewal)
    check.figure = (
        f"{len(world.club_charges)} Stars charges ({renewals} renewals), {len(rows)} recorded;"
        f" {members} club members"
    )
    return check


def api_replays(world: World) -> Check:
    """The partner API's Idempotency-Key: a sale's request sent again (at once, by a till
    that missed the answer, or after the drain with its first key, faults over) answers as
    the sale was acknowledged: the same sale, and a replay of the stored answer when the
    key is the one that was answered."""
    check = Check("api replays")
    replays = settled = late = 0
    for sale in world.api_sales:
        attempt = sale.attempt
        first = sale.first
        who = (attempt.cashier,)
        after = sale.answers[sale.answers.index(first) + 1 :] if first in sale.answers else []
        for again in after:
            replays += 1
            if (again.status, again.body, again.replayed) != (first.status, first.body, True):
                check.fail(
                    f"api sale #{attempt.k}: replayed at once as {again.status}"
                    f" {again.body!r:.80}, answered {first.status} first",
                    again.at,
                    *who,
                )
        answer = sale.settled
        if answer is None:
            continue
        settled += 1
        if first is answer:
            late += 1
        if attempt.acked is None or first is answer:
            continue
        same = (
            answer.status in (200, 201)
            and isinstance(answer.body, dict)
            and isinstance(first.body, dict)
            and all(answer.body.get(f) == first.body.get(f) for f in _SALE_FIELDS)
        )
        deleted = answer.code == "unknown_member" and attempt.member_chat in world.deleted
        if not same and not deleted:
            check.fail(
                f"api sale #{attempt.k} acknowledged ({first.status}), its key replayed after"
                f" the faults as {answer.status} {answer.body!r:.80}",
                answer.at,
                *who,
            )
    check.figure = (
        f"{len(world.api_sales)} api sales: {replays} replayed at once, {settled} replayed"
        f" after the faults ({late} answered only then)"
    )
    return check


_SALE_FIELDS = ("document", "amount", "points_earned", "business_day", "created_at")


async def messages(engine: AsyncEngine, world: World, blocked: set[int]) -> tuple[Check, int]:
    """Every message owed by committed work was delivered (its notice is sent, and the
    message it names is in its chat), but to members deleted (not sent) or blocking the bot
    (403); every sale and refund owed its member a message. Returns the check and the
    duplicates seen (a notice's message in its chat more than once)."""
    check = Check("messages owed")
    async with engine.connect() as conn:
        notices = (
            await conn.execute(
                text(
                    "SELECT n.id, n.kind, n.status, n.error, n.chat_id, n.member_id,"
                    " n.message_id, n.edit_message_id, n.created_at, n.params,"
                    " m.telegram_id AS member_chat FROM notices n"
                    " LEFT JOIN members m ON m.id = n.member_id ORDER BY n.id"
                )
            )
        ).all()
        unannounced = (
            await conn.execute(
                text(
                    # A deleted member's notices are erased with their account.
                    # A refund's own reversal (not those of the sale's stamps) owes it.
                    "SELECT t.id, t.kind, t.created_at FROM transactions t"
                    " JOIN members m ON m.id = t.member_id AND m.deleted_at IS NULL"
                    " LEFT JOIN transactions o ON o.id = t.reverses_id"
                    " WHERE (t.kind IN ('earn', 'redeem')"
                    "        OR t.kind = 'reverse' AND o.kind IN ('earn', 'redeem'))"
                    " AND NOT EXISTS ("
                    "  SELECT 1 FROM notices n WHERE n.member_id = t.member_id"
                    "  AND n.kind IN ('purchase', 'reversal')"
                    "  AND (n.params->>'transaction')::bigint = t.id)"
                )
            )
        ).all()
    chats: dict[int, int] = {m.member_id: m.chat for m in world.members if m.member_id}
    sent_texts = Counter((int(m.message["chat"]["id"]), m.text) for m in world.mailroom.sends)
    by_id = {(int(m.message["chat"]["id"]), m.message_id): m for m in world.mailroom.sends}
    owed_texts: Counter[tuple[int, str]] = Counter()
    statuses = Counter(n.status for n in notices)
    for n in notices:
        at = _ts(n.created_at)
        chat: int | None = n.chat_id or chats.get(n.member_id)
        if n.status in ("pending", "sending"):
            check.fail(f"notice {n.id} ({n.kind}) to {chat} never delivered: {n.status}", at)
        elif n.status == "failed" and n.error != "deleted":
            check.fail(f"notice {n.id} ({n.kind}) to {chat} failed: {n.error}", at)
        elif n.status == "blocked" and chat not in blocked:
            check.fail(f"notice {n.id} ({n.kind}) to {chat}: blocked, who never blocked", at)
        elif n.status == "sent" and n.edit_message_id is None:
            mail = by_id.get((chat, n.message_id)) if chat is not None else None
            if chat is None or mail is None:
                check.fail(
                    f"notice {n.id} ({n.kind}) marked sent, no message {n.message_id}"
                    f" in chat {chat}",
                    at,
                )
            else:
                owed_texts[(chat, mail.text)] += 1
    for row in unannounced:
        check.fail(
            f"transaction {row.id} ({row.kind}) owed its member no message", _ts(row.created_at)
        )
    duplicates = sum(max(0, sent_texts[key] - count) for key, count in owed_texts.items())
    check.figure = (
        f"{len(notices)} owed: "
        + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))
        + f"; {duplicates} delivered twice"
    )
    return check, duplicates


async def campaigns(engine: AsyncEngine, world: World) -> tuple[Check, int]:
    """Each campaign's message reaches a member at most once (beyond duplicates of what was
    in flight at a kill, returned) and never one who had been told their account was
    deleted or their offers were off when it was handed out for sending."""
    check = Check("campaigns")
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT o.id, o.member_id, o.status, o.claimed_at, c.text FROM outbox o"
                    " JOIN campaigns c ON c.id = o.campaign_id"
                )
            )
        ).all()
    chats: dict[int, int] = {m.member_id: m.chat for m in world.members if m.member_id}
    members = set(chats.values())
    texts = {t for t, _ in world.campaigns}
    got = Counter(
        (int(m.message["chat"]["id"]), m.text)
        for m in world.mailroom.sends
        if m.text in texts and int(m.message["chat"]["id"]) in members
    )
    duplicates = sum(n - 1 for n in got.values() if n > 1)
    sent = Counter(r.status for r in rows)
    for row in rows:
        chat = chats.get(row.member_id)
        if row.status != "sent" or chat is None or row.claimed_at is None:
            continue
        claimed = _ts(row.claimed_at)
        for why, told in (("deleted", world.deleted), ("opted out", world.opted_out)):
            if chat in told and claimed > told[chat]:
                check.fail(
                    f"campaign message {row.id} ({row.text!r}) sent to {chat}, {why} before it"
                    " was handed out",
                    claimed,
                )
    for status in ("pending", "sending"):
        if sent[status]:
            check.fail(f"{sent[status]} campaign messages still {status}", time.time())
    check.figure = (
        f"{len(world.campaigns)} campaigns, {len(rows)} messages: "
        + ", ".join(f"{n} {s}" for s, n in sorted(sent.items()))
        + f"; {duplicates} delivered twice"
    )
    return check, duplicates


# A log's error blocks that are the faults the soak injected (or their direct consequence),
# not bugs: the Bot API failing or throttling, a member blocking the bot, a connection
# killed under a statement, a process killed mid-write.
INJECTED = re.compile(
    r"TelegramRetryAfter|TelegramServerError|TelegramNetworkError|TelegramForbiddenError"
    r"|Too Many Requests|Internal Server Error|Bad Gateway|Service Unavailable"
    r"|bot was blocked by the user"
    r"|ConnectionDoesNotExistError|AdminShutdownError|CannotConnectNowError"
    r"|terminating connection due to administrator command|connection was closed"
    r"|ConnectionResetError|ConnectionRefusedError|InterfaceError|connection is closed"
    r"|the database does not answer"
    # asyncpg, on a connection whose backend was terminated while it sat in the pool
    r"|another operation \(\d+\) is in progress"
    # the soak's own PostgreSQL restarting: its unix socket is gone meanwhile
    r"|FileNotFoundError: \[Errno 2\] No such file or directory"
    # a button press delivered twice: Telegram takes one answer per press
    r"|query is too old and response timeout expired"
)
LEVEL = re.compile(r"^\S+ \S+ (ERROR|CRITICAL) ")
LOGGED = re.compile(r"^\d{4}-\d\d-\d\d ")  # a record's first line (bot.__main__'s format)


def log_errors(paths: list[Path]) -> tuple[Check, int]:
    """Every ERROR in the bots' logs with its traceback; those that are not the injected
    faults are violations. Returns the check and the number of injected-fault errors."""
    check = Check("unhandled exceptions")
    injected = 0
    for path in paths:
        blocks: list[list[str]] = []
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if LEVEL.match(line):
                blocks.append([line])
            elif blocks and not LOGGED.match(line) and not line.startswith("=== chaos"):
                blocks[-1].append(line)  # the traceback and the lines of its message
        for block in blocks:
            body = "\n".join(block)
            if INJECTED.search(body):
                injected += 1
            else:
                raised = [line for line in block[1:] if line and not line[0].isspace()]
                check.fail(f"{path.name}: {block[0]} … {' / '.join(raised[-3:])}", 0.0)
    check.figure = f"{injected} errors from injected faults"
    return check, injected
