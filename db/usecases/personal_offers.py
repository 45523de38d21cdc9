"""Personal offers: each day, members who newly qualify for a `personal = true` promotion
are told once, with their consent, through the campaign outbox (at the global delivery
rate; consent, deletion and reachability are checked again as each message is sent).

Who qualifies, for a promotion that runs today or within a week (db.rules.offers.runs_soon):
members who consented to offers, have not left and have not blocked the bot, who meet the
promotion's `who` (tiers, member_years, first_ever) and have not used it up
(`max_per_member`), and
- win-back (`who.inactive_days`): no purchase for that many days (or since joining), told
  once per lapse: occasion "inactive:<the last purchase's local day>";
- birthday (`who.birthday`): in their birthday week, when the promotion runs on some day
  from today to the week's last, told once a year: occasion "birthday:<the year the week
  began>";
- cross-sell (`who.first_at_partner`): bought somewhere in the program in the last
  ACTIVE_DAYS days but never at one of the promotion's partners: occasion "once" (the
  message names the partners where it still applies to them);
- anyone else it is for: occasion "once".

Telling is a row in `promotion_notices` (promotion, member, occasion) and the message in
the outbox, inserted by one statement per batch of members: the notice's primary key lets
one of two runs (a second run, or another instance) tell a member, never both."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from db.ledger.models import Member, TxKind
from db.ledger.writer import unit_of_work
from db.rules.offers import (
    ACTIVE_DAYS,
    birthday_starts,
    business_partners,
    run_days,
    runs_soon,
    years_ago,
)
from db.rules.program import Program, Promotion
from db.rules.promotions import limit

BATCH = 5_000  # members per statement (and per transaction)

_SALES = TxKind.sql_in("t.kind", TxKind.SALES)


def _statement(promo: Promotion) -> str:
    """The INSERT that tells one batch of members (ids in (:lo, :hi]) of `promo`."""
    who = promo.who
    joins: list[str] = []
    conditions = [
        "m.id > :lo AND m.id <= :hi",
        "m.deleted_at IS NULL AND m.reachable AND m.marketing_consent",
        "m.telegram_id IS NOT NULL",
    ]
    params: list[str] = []
    if who.tiers:
        conditions.append("m.tier = ANY(CAST(:tiers AS text[]))")
    if who.member_years:
        conditions.append("CAST(m.joined_at AT TIME ZONE :zone AS date) <= :joined_by")
    bought = f"SELECT 1 FROM transactions AS t WHERE t.member_id = m.id AND {_SALES}"
    if who.first_ever:
        conditions.append(f"NOT EXISTS ({bought})")
    if who.birthday:
        joins.append(
            "JOIN jsonb_to_recordset(CAST(:weeks AS jsonb))"
            " AS w(mo int, dy int, yr int, until date)"
            " ON m.birthday IS NOT NULL AND EXTRACT(MONTH FROM m.birthday) = w.mo"
            " AND EXTRACT(DAY FROM m.birthday) = w.dy"
        )
        occasion = "'birthday:' || w.yr"
        params.append("'until', w.until")
        key = "CAST(:slug AS text) || '@' || w.yr"
    elif who.inactive_days:
        occasion = "'inactive:' || CAST(last.since AT TIME ZONE :zone AS date)"
        key = "CAST(:slug AS text)"
    else:
        occasion = "'once'"
        key = "CAST(:slug AS text)"
    if who.inactive_days:
        joins.append(
            "CROSS JOIN LATERAL (SELECT COALESCE(("
            f"SELECT max(t.created_at) FROM transactions AS t WHERE t.member_id = m.id"
            f" AND {_SALES}), m.joined_at) AS since) AS last"
        )
        conditions.append("last.since <= :inactive_since")
    if who.first_at_partner:
        # The partners it applies at that the member never bought at, by the program
        # file's order; and a purchase somewhere lately.
        joins.append(
            "CROSS JOIN LATERAL (SELECT array_agg(p.slug ORDER BY array_position("
            "CAST(:where AS text[]), CAST(p.slug AS text))) AS open FROM partners AS p"
            " WHERE p.slug = ANY(CAST(:where AS text[])) AND NOT EXISTS ("
            f"{bought} AND t.partner_id = p.id)) AS o"
        )
        conditions.append("o.open IS NOT NULL")
        conditions.append(f"EXISTS ({bought} AND t.created_at > :active_since)")
        params.append("'partners', to_jsonb(o.open)")
    elif limit(promo):
        conditions.append(
            "COALESCE((SELECT u.uses FROM promotion_uses AS u WHERE u.member_id = m.id"
            f" AND u.promotion = {key}), 0) < :most"
        )
    params.insert(0, f"'occasion', {occasion}")
    return f"""
        WITH eligible AS MATERIALIZED (
            SELECT m.id AS member_id, {occasion} AS occasion,
                   jsonb_build_object({", ".join(params)}) AS params
            FROM members AS m {" ".join(joins)}
            WHERE {" AND ".join(conditions)}
        ),
        told AS (
            INSERT INTO promotion_notices (promotion, member_id, occasion, sent_at)
            SELECT :slug, member_id, occasion, :now FROM eligible
            ON CONFLICT DO NOTHING
            RETURNING member_id, occasion
        )
        INSERT INTO outbox (promotion, params, member_id, status, attempts, next_attempt_at)
        SELECT :slug, e.params, e.member_id, 'pending', 0, :now
        FROM told JOIN eligible AS e USING (member_id, occasion)
    """


def _binds(program: Program, promo: Promotion, now: datetime) -> dict[str, object]:
    zone = program.program.zone
    today = now.astimezone(zone).date()
    who = promo.who
    binds: dict[str, object] = {"slug": promo.slug, "now": now}
    if who.tiers:
        binds["tiers"] = [str(t) for t in who.tiers]
    if who.member_years or who.inactive_days:
        binds["zone"] = program.program.timezone
    if who.member_years:
        binds["joined_by"] = years_ago(today, who.member_years)
    if who.birthday:
        # Only the birthday weeks in which it still runs on some day, from today to the
        # week's last (as /offers decides): a member is never told of one they cannot get.
        binds["weeks"] = json.dumps(
            [
                {"mo": mo, "dy": dy, "yr": yr, "until": until.isoformat()}
                for mo, dy, yr, until in birthday_starts(today)
                if run_days(promo, today, until)
            ]
        )
    if who.inactive_days:
        binds["inactive_since"] = now - timedelta(days=who.inactive_days)
    if who.first_at_partner:
        binds["where"] = list(business_partners(program, promo))
        binds["active_since"] = now - timedelta(days=ACTIVE_DAYS)
    elif limit(promo):
        binds["most"] = limit(promo)
    return binds


def personal_now(program: Program, now: datetime) -> list[Promotion]:
    """The personal promotions worth telling today: running, or starting within a week."""
    today = now.astimezone(program.program.zone).date()
    return [p for p in program.promotions if p.personal and not p.who.club and runs_soon(p, today)]


async def tell_personal_offers(
    session: AsyncSession, program: Program, now: datetime, *, batch: int = BATCH
) -> int:
    """Tell every member who newly qualifies for a personal promotion (once per occasion,
    however often this runs, on however many instances). Returns how many were told."""
    promotions = personal_now(program, now)
    if not promotions:
        return 0
    async with unit_of_work(session):  # no transaction left open across the batches
        top = int(await session.scalar(select(func.coalesce(func.max(Member.id), 0))) or 0)
    told = 0
    for promo in promotions:
        statement = text(_statement(promo))
        binds = _binds(program, promo, now)
        for lo in range(0, top, batch):
            async with unit_of_work(session):
                result = await session.execute(statement, {**binds, "lo": lo, "hi": lo + batch})
            told += int(getattr(result, "rowcount", 0) or 0)
    return told
