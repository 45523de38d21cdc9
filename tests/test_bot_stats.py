"""/stats and /settlement end to end through the fake Bot API server: who sees which figures,
the chart is a real PNG, the CSV is the settlement's."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from babel.dates import format_interval
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.__main__ import main
from bot.views.settlement_csv import write_settlement
from db.ledger.models import AuditLog, Partner, Transaction
from db.queries.settlement import settlement
from db.rules.program import Program
from db.usecases.api.sales import post_sale
from db.usecases.members import register_member
from db.usecases.purchases import Sale, record_sale
from db.usecases.staff import active_staff
from tests.apiharness import key_actor
from tests.botharness import BotHarness
from tests.conftest import TEST_PROGRAM, make_program
from tests.fakegram import UserClient, text_of
from tests.till import hire, join

Sessions = async_sessionmaker[AsyncSession]
PNG = b"\x89PNG\r\n\x1a\n"


async def seed(sessions: Sessions, program: Program) -> None:
    """Within the last 30 days (welcome 50 each; coffee earns 5 %, books 3 %):
    Ann: coffee 40.00 (+200), books 30.00 (+90); Bob: coffee 10.00 (+50), then coffee 20.00
    paying 100 points (1.00): paid 19.00, +95."""
    now = datetime.now(UTC)
    async with sessions() as s:
        ann = await register_member(s, program, telegram_id=9001, now=now - timedelta(days=10))
        bob = await register_member(s, program, telegram_id=9002, now=now - timedelta(days=3))
        for member, partner, amount, points, days in [
            (ann.id, "coffee", "40.00", 0, 5),
            (ann.id, "books", "30.00", 0, 4),
            (bob.id, "coffee", "10.00", 0, 2),
            (bob.id, "coffee", "20.00", 100, 1),
        ]:
            await record_sale(
                s,
                program,
                Sale(
                    member_id=member,
                    partner=partner,
                    amount=Decimal(amount),
                    redeem_points=points,
                    key=f"seed:{member}:{days}",
                    now=now - timedelta(days=days),
                ),
            )


async def hire_marketer(harness: BotHarness, person: UserClient) -> None:
    owner = harness.owner()
    await owner.send("/staff_invite marketer")
    link = text_of(await owner.wait_message("one-time invite")).split()[-1]
    await person.send("/start " + link.split("start=")[1])
    await person.wait_message("You are now")


async def chart_and_figures(harness: BotHarness, user: UserClient) -> str:
    photo = await user.wait_message(lambda m: "photo" in m, timeout=15)
    stored = harness.server.file(photo["photo"][-1]["file_id"])
    assert stored is not None and stored.data.startswith(PNG)
    return text_of(await user.wait_message("📊"))


async def test_marketer_sees_the_coalition(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    await seed(sessions, program)
    mia = harness.user("Mia")
    await hire_marketer(harness, mia)
    await mia.send("/stats month")
    figures = await chart_and_figures(harness, mia)
    assert "Test Bonus" in figures
    assert "Members: 2 (+2 joined)" in figures
    # Ann 2 sales, Bob 2: both repeat; 40 + 30 + 10 + 20 = 100.00 over 4 sales.
    assert "Active members: 2; bought twice or more: 100%" in figures
    assert (
        "Sales: 4 for PLN\u00a0100.00; average check PLN\u00a025.00; refunds PLN\u00a00.00"
        in figures
    )
    # Money spent: Ann 70.00, Bob 29.00 → 99.00 / 2 buyers.
    assert "Customer lifetime value: PLN\u00a049.50" in figures
    # Issued 200 + 90 + 50 + 95 = 435; redeemed 100; 100 / 435 = 23.0 %.
    assert "Points issued: 435; redeemed: 100; redemption rate 23%" in figures
    assert "Referral conversion: — (0 of 0 invited friends)" in figures
    assert "Bought at 2+ partners: 1 (50% of the active members)" in figures
    # Every partner's line follows.
    for name in ("Bean There Coffee", "Chapter One Books", "Iron Temple Gym"):
        assert name in figures
    # Coffee: 2 active (Ann, Bob), 3 sales; Bob repeats; Ann also bought at books.
    coffee = (
        "active 2 · sales 3, PLN\u00a070.00, average PLN\u00a023.33 · repeat 50% · 2+ partners 50%"
    )
    assert coffee in figures

    await mia.send("/stats lastweek")
    assert "I do not understand that period" in text_of(await mia.wait_message("period"))
    async with sessions() as s:
        actions = (await s.execute(select(AuditLog.action, AuditLog.partner_id))).all()
    assert ("stats", None) in [tuple(a) for a in actions]


async def test_stats_never_count_days_still_to_come(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    await seed(sessions, program)
    mia = harness.user("Mia")
    await hire_marketer(harness, mia)
    today = datetime.now(UTC).date()
    first = today - timedelta(days=6)
    await mia.send(f"/stats {first}..{today + timedelta(days=30)}")
    figures = await chart_and_figures(harness, mia)
    days = format_interval(first, today, "yMMMd", locale="en_GB")
    assert days in figures  # the period ends today: the month ahead is not counted
    await mia.send(f"/stats {today + timedelta(days=1)}..{today + timedelta(days=9)}")
    assert "I do not understand that period" in text_of(await mia.wait_message("period"))


async def test_manager_sees_only_their_partner(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    await seed(sessions, program)
    max_ = harness.user("Max")
    await hire(harness, max_, "coffee", "manager")
    # A partner slug in the command is not a period; it never picks the partner.
    await max_.send("/stats books")
    assert "I do not understand that period" in text_of(await max_.wait_message("period"))
    await max_.send("/stats")
    figures = await chart_and_figures(harness, max_)
    assert "Bean There Coffee" in figures
    assert "Chapter One Books" not in figures and "Test Bonus" not in figures
    # Coffee: Ann 40.00; Bob 10.00 and 20.00; both bought here first in the period.
    assert "Customers: 2 (+2 bought here for the first time)" in figures
    assert "Active members: 2; bought twice or more: 50%" in figures
    assert "Sales: 3 for PLN\u00a070.00; average check PLN\u00a023.33" in figures
    # Issued here 200 + 50 + 95 = 345, redeemed here 100: 29.0 %.
    assert "Points issued: 345; redeemed: 100; redemption rate 29%" in figures
    assert "Also bought at other partners: 1 (50% of the active members)" in figures
    assert "Without a member card" not in figures  # no till recorded such a sale
    photos = [m for m in max_.messages if "photo" in m]
    assert len(photos) == 1 and "Bean There Coffee" in text_of(photos[0])


async def test_a_manager_compares_members_and_sales_without_a_member_card(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    await seed(sessions, program)
    async with sessions() as s:
        coffee = await s.scalar(select(Partner.id).where(Partner.slug == "coffee"))
        assert coffee is not None
        till = await key_actor(s, "coffee")
        for document, amount in (("W-1", "9.00"), ("W-2", "12.00")):
            await post_sale(
                s, program, till, document=document, member_id=None, amount=Decimal(amount)
            )
    max_ = harness.user("Max")
    await hire(harness, max_, "coffee", "manager")
    await max_.send("/stats")
    figures = await chart_and_figures(harness, max_)
    assert "Sales: 3 for PLN\u00a070.00; average check PLN\u00a023.33" in figures
    assert (
        "Without a member card: 2 sales for PLN\u00a021.00; average check PLN\u00a010.50 "
        "(members: PLN\u00a023.33)"
    ) in figures


async def test_cashier_and_member_get_no_figures(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    await seed(sessions, program)
    carl, ann = harness.user("Carl"), harness.user("Ann")
    await hire(harness, carl, "coffee", "cashier")
    await join(ann)
    # Told who may, and what to do: a cashier is not told to join.
    await carl.send("/stats")
    told = text_of(await carl.wait_message("/stats is for"))
    assert "manager" in told and "Ask your manager." in told
    await ann.send("/stats month")
    await ann.wait_message("/stats is for: owner, manager, marketer.")
    await ann.send("/settlement")
    await ann.wait_message("/settlement is for: owner, marketer.")
    assert not [m for m in carl.messages if "not a member yet" in text_of(m)]
    for user in (carl, ann):
        assert not [m for m in user.messages if "photo" in m or "document" in m]
        assert not [m for m in user.messages if "📊" in text_of(m)]


async def test_settlement_document_matches_the_ledger(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    await seed(sessions, program)
    today = datetime.now(UTC).date() - timedelta(days=1)  # the last day that has ended
    first = today - timedelta(days=29)
    owner = harness.owner()
    await owner.send("/settlement month")  # rolling: for /stats, not for settling
    assert "calendar periods" in text_of(await owner.wait_message("calendar periods"))
    await owner.send(f"/settlement {first}..{today + timedelta(days=30)}")
    assert "has not ended yet" in text_of(await owner.wait_message("has not ended yet"))
    await owner.send(f"/settlement {first}..{today}")
    message = await owner.wait_message(lambda m: "document" in m, timeout=15)
    document = message["document"]
    # The file's name, its first and last days and the caption name the same days.
    assert document["file_name"] == f"settlement-{first}-{today}.csv"
    days = format_interval(first, today, "yMMMd", locale="en_GB")
    caption = text_of(message)
    assert f"Settlement for {days}, in PLN" in caption
    stored = harness.server.file(document["file_id"])
    assert stored is not None
    rows = list(csv.DictReader(io.StringIO(stored.data.decode("utf-8-sig"))))

    start = datetime.combine(first, datetime.min.time(), tzinfo=UTC)
    async with sessions() as s:
        report = await settlement(s, program, start=start, end=start + timedelta(days=30))
    expected = io.StringIO()
    write_settlement(report, program.program.currency, expected)
    assert rows == list(csv.DictReader(io.StringIO(expected.getvalue())))
    assert {(r["First day"], r["Last day"]) for r in rows} == {(str(first), str(today))}
    coffee = next(r for r in rows if r["Partner code"] == "coffee")
    assert (coffee["Points issued"], coffee["Points redeemed"], coffee["Amount"]) == (
        "345",
        "100",
        "-2.45",
    )
    # Held now: Ann 50 + 200 + 90, Bob 50 + 50 − 100 + 95 = 435: PLN 4.35 owed to members.
    assert rows[-1]["Line"] == "total"
    assert (rows[-1]["Points outstanding at end"], rows[-1]["Liability at end"]) == (
        "435",
        "4.35",
    )
    assert f"Points members held at the end of {today:%-d %b %Y}: 435" in caption
    assert "a liability of PLN\u00a04.35" in caption
    # A bad period gets the usage; a marketer may ask too.
    await owner.send("/settlement november")
    usage = text_of(await owner.wait_message("period"))
    assert "last whole month" in usage
    assert "today" not in usage and "2026-11-01..2026-11-30" in usage  # only what it takes
    mia = harness.user("Mia")
    await hire_marketer(harness, mia)
    await mia.send("/settlement")
    last_month = await mia.wait_message(lambda m: "document" in m, timeout=15)
    last_day = datetime.now(UTC).date().replace(day=1) - timedelta(days=1)
    assert last_month["document"]["file_name"].endswith(f"-{last_day}.csv")


WARSAW = make_program(program={"timezone": "Europe/Warsaw"})


@pytest.mark.parametrize("program", [WARSAW])
async def test_shift_shows_the_programs_local_times(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    carl = harness.user("Carl")
    await hire(harness, carl, "coffee", "cashier")
    async with sessions() as s:
        staff = await active_staff(s, carl.user_id)
        assert staff is not None
        ann = await register_member(s, program, telegram_id=9001)
        sale = await record_sale(
            s,
            program,
            Sale(
                member_id=ann.id,
                partner="coffee",
                amount=Decimal("12.00"),
                key="shift-1",
                staff_id=staff.id,
            ),
        )
    async with sessions() as s:
        posted = await s.scalar(
            select(Transaction.created_at).where(Transaction.id == sale.transaction_id)
        )
    assert posted is not None
    await carl.send("/shift")
    shift = text_of(await carl.wait_message("Your shift today"))
    warsaw = ZoneInfo("Europe/Warsaw")
    local = posted.astimezone(warsaw).strftime("%H:%M")
    in_utc = posted.astimezone(UTC).strftime("%H:%M")
    assert f"{local} · No. {sale.transaction_id} · " in shift, shift
    assert in_utc not in shift


def _toml(data: dict[str, Any]) -> str:
    """The test program as a file (flat tables and arrays of tables are all it has)."""
    lines: list[str] = []
    for name, section in data.items():
        for table in section if isinstance(section, list) else [section]:
            lines.append(f"[[{name}]]" if isinstance(section, list) else f"[{name}]")
            lines += [f"{key} = {json.dumps(value)}" for key, value in table.items()]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("program", [WARSAW])
async def test_cli_settlement_counts_the_same_local_days_as_the_bot(
    harness: BotHarness,
    sessions: Sessions,
    program: Program,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with sessions() as s:
        ann = await register_member(
            s, program, telegram_id=9001, now=datetime(2026, 11, 1, tzinfo=UTC)
        )
        # 23:30 UTC on Nov 5 is 00:30 on Nov 6 in Warsaw: a sale of Nov 6 there.
        await record_sale(
            s,
            program,
            Sale(
                member_id=ann.id,
                partner="coffee",
                amount=Decimal("40.00"),
                key="late",
                now=datetime(2026, 11, 5, 23, 30, tzinfo=UTC),
            ),
        )
    owner = harness.owner()
    await owner.send("/settlement 2026-11-06..2026-11-06")
    message = await owner.wait_message(lambda m: "document" in m, timeout=15)
    stored = harness.server.file(message["document"]["file_id"])
    assert stored is not None
    from_bot = stored.data.decode("utf-8-sig")

    data = {**TEST_PROGRAM, "program": {**TEST_PROGRAM["program"], "timezone": "Europe/Warsaw"}}
    (tmp_path / "program.toml").write_text(_toml(data), encoding="utf-8")
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("PROGRAM_FILE", str(tmp_path / "program.toml"))
    out = tmp_path / "settlement.csv"
    args = ["settlement", "--from", "2026-11-06", "--to", "2026-11-07", "--out", str(out)]
    assert await asyncio.to_thread(main, args) == 0
    from_cli = out.read_text(encoding="utf-8")
    assert from_cli.splitlines() == from_bot.splitlines()
    rows = list(csv.DictReader(io.StringIO(from_cli)))
    coffee = next(r for r in rows if r["Partner code"] == "coffee")
    # --to is exclusive: the report's one day is Nov 6.
    assert (coffee["First day"], coffee["Last day"], coffee["Points issued"]) == (
        "2026-11-06",
        "2026-11-06",
        "200",
    )


@pytest.mark.parametrize(("start", "end"), [("2026-11-02", "2026-11-01"), ("2026-11-01",) * 2])
def test_cli_settlement_refuses_a_period_that_ends_before_it_starts(
    start: str, end: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["settlement", "--from", start, "--to", end]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip().splitlines() == [
        f"error: --to ({end}) must come after --from ({start}); --to is exclusive"
    ]
