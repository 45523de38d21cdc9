"""Each rule stated once: the daily tier recalculation reads the tier rule from the program
(no thresholds restated in SQL), and a scan keeps the sale kinds, the tier window, the
money of points and the spend rule from being restated elsewhere."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.ledger.models import Member
from db.rules.program import Program
from db.usecases.members import register_member
from db.usecases.purchases import Refund, Sale, record_refund, record_sale
from db.usecases.tiers import recalculate_tiers

D = Decimal
ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 3, 1, 9, tzinfo=UTC)


async def _tiers(session: AsyncSession) -> dict[int, str]:
    rows = await session.execute(select(Member.telegram_id, Member.tier))
    tiers = {int(tg): tier for tg, tier in rows}
    await session.rollback()
    return tiers


async def test_the_daily_recalculation_follows_the_trailing_window(
    session: AsyncSession, program: Program
) -> None:
    ids = {}
    for tg in (1, 2, 3):
        member = await register_member(session, program, telegram_id=tg, first_name="M", now=T0)
        ids[tg] = member.id
    await record_sale(
        session, program, Sale(member_id=ids[1], partner="gym", amount=D("1000"), key="a", now=T0)
    )
    sale = await record_sale(
        session, program, Sale(member_id=ids[2], partner="gym", amount=D("3500"), key="b", now=T0)
    )
    await record_refund(
        session,
        program,
        Refund(
            transaction_id=sale.transaction_id,
            amount=D("1000"),
            key="r",
            reason="returned",
            now=T0 + timedelta(days=1),
        ),
    )
    # A refund lowers no tier at once; the recalculation does (3,500 − 1,000 is Silver).
    assert await _tiers(session) == {1: "Silver", 2: "Gold", 3: "Bronze"}
    assert await recalculate_tiers(session, program, T0 + timedelta(days=2)) == 1
    assert await _tiers(session) == {1: "Silver", 2: "Silver", 3: "Bronze"}
    assert await recalculate_tiers(session, program, T0 + timedelta(days=2)) == 0
    # Past the trailing year, nothing counts any more.
    assert await recalculate_tiers(session, program, T0 + timedelta(days=366)) == 2
    assert await _tiers(session) == {1: "Bronze", 2: "Bronze", 3: "Bronze"}


def _sources() -> list[tuple[str, str]]:
    files = [*(ROOT / "bot").rglob("*.py"), *(ROOT / "db").rglob("*.py")]
    return [
        (str(path.relative_to(ROOT)), path.read_text())
        for path in files
        if "migrations" not in path.parts
    ]


def _restated(pattern: str, home: str) -> list[str]:
    found = re.compile(pattern)
    return [
        f"{name}:{number}"
        for name, text in _sources()
        if name != home
        for number, line in enumerate(text.splitlines(), 1)
        if found.search(line)
    ]


def test_the_money_of_points_is_computed_in_points_money_only() -> None:
    pattern = r"\*\s*[\w.]*\b(point_value|pv)\b|\b(point_value|pv)\s*\*"
    assert _restated(pattern, "db/rules/points.py") == []


def test_the_sale_kinds_and_the_tier_window_are_stated_once() -> None:
    kinds = r"""\(\s*(['"])earn\1\s*,\s*(['"])redeem\2|EARN,\s*TxKind\.REDEEM\b"""
    # The patterns find what they are for (else the scans below could never fail).
    assert re.search(kinds, 'kind.in_(("earn", "redeem"))')
    assert re.search(kinds, "(TxKind.EARN, TxKind.REDEEM)")
    assert re.search(r"days\s*=\s*365\b", "timedelta(days=365)")
    assert _restated(kinds, "db/ledger/models.py") == []
    assert _restated(r"days\s*=\s*365\b|'365 days'", "db/rules/program.py") == []


def test_the_spend_rule_is_stated_once() -> None:
    """Money spent (sales' paid part less refunds' money) is spend_expression, which the
    tiers, the wallet and the KPIs all use; no SQL writes the refund's minus again."""
    signed = r"(?i)\bTHEN\s+-\s*[\w.]*paid\b|-\s*[\w.]*\bpaid\b\)?\s*,\s*else_"
    assert re.search(signed, "sum(CASE WHEN t.kind = 'reverse' THEN -t.paid ELSE t.paid END)")
    assert re.search(signed, "case((tx.kind == TxKind.REVERSE, -tx.paid), else_=tx.paid)")
    assert _restated(signed, "db/usecases/purchases.py") == []


def test_being_in_the_club_is_stated_once() -> None:
    """A member is in the club while their membership's end is ahead: db/rules/club.py's
    `active`, and its one SQL statement (db/queries/club.py `active_sql`) for queries over
    many memberships. No query or view compares `ends_at` with now again."""
    pattern = r"\bends_at\s*>(?!=)|[:$]\w+\s*<\s*[\w.]*ends_at\b"
    assert re.search(pattern, "SELECT ends_at > $2 FROM club_memberships")
    assert re.search(pattern, "exists().where(ClubMembership.ends_at > now)")
    assert re.search(pattern, "WHERE :now < c.ends_at")
    found = _restated(pattern, "db/rules/club.py")
    assert [where for where in found if not where.startswith("db/queries/club.py:")] == []
