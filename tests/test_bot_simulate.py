"""/simulate end to end through the fake Bot API: an owner attaches a proposed program file
(with /simulate as its caption) and gets the table, a chart and the CSV; a marketer sends
the command with a period, then the file; a bad file gets the validation message, a large
one is refused, a cashier gets nothing; other updates are answered while it runs."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.views.simulation import HEADER
from db.rules.program import Program
from db.usecases.members import register_member
from db.usecases.purchases import Sale, record_sale
from tests.botharness import BotHarness
from tests.conftest import TEST_PROGRAM
from tests.fakegram import UserClient, text_of
from tests.test_bot_stats import hire_marketer
from tests.test_simulate import toml
from tests.till import hire

Sessions = async_sessionmaker[AsyncSession]
PNG = b"\x89PNG\r\n\x1a\n"


async def seed(sessions: Sessions, program: Program) -> None:
    """Within the last 90 days (coffee earns 5 %, books 3 %): Ann coffee 40.00 (+200) and
    books 30.00 (+90); Bob coffee 10.00 (+50), then coffee 20.00 paying 100 points: paid
    19.00, +95."""
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


def proposed(**changes: Any) -> bytes:
    """The test program with coffee earning 10 % instead of 5 %."""
    partners = [
        {**p, "earn_percent": "10"} if p["slug"] == "coffee" else p
        for p in TEST_PROGRAM["partners"]
    ]
    return toml({**TEST_PROGRAM, "partners": partners, **changes}).encode()


async def results(harness: BotHarness, user: UserClient) -> tuple[str, list[dict[str, str]]]:
    table = text_of(await user.wait_message("🧪", timeout=30))
    photo = await user.wait_message(lambda m: "photo" in m, timeout=30)
    stored = harness.server.file(photo["photo"][-1]["file_id"])
    assert stored is not None and stored.data.startswith(PNG)
    document = await user.wait_message(lambda m: "document" in m, timeout=30)
    assert document["document"]["file_name"].startswith("simulation-")
    data = harness.server.file(document["document"]["file_id"])
    assert data is not None
    rows = list(csv.reader(io.StringIO(data.data.decode("utf-8-sig"))))
    assert rows[0] == HEADER
    return table, [dict(zip(HEADER, row, strict=True)) for row in rows[1:]]


async def test_an_owner_attaches_a_program_and_gets_table_chart_and_csv(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    await seed(sessions, program)
    owner = harness.owner()
    await owner.send_document(proposed(), "proposed.toml", caption="/simulate")
    await owner.wait_message("Replaying")
    table, rows = await results(harness, owner)
    table = table.replace("\xa0", " ")  # money's no-break space
    assert "4 sales of 2 members replayed (0 of them refunded)." in table
    # 345 points as posted (200 + 50 + 95) become 690 at 10 %; books' 90 stay.
    assert "Bean There Coffee: 3 sales · points 345 → 690 (+345) · 0 vouchers" in table
    assert "Chapter One Books: 1 sale · points 90 → 90 (0) · 0 vouchers" in table
    assert "Points issued: 435 as it was, 780 simulated (+345)." in table
    # At a redemption rate of 100 of 535: coffee's 345 points at 0.01 cost 0.64 as it was,
    # its 690 cost 1.29; books' 90 cost 0.17.
    assert (
        "expected cost PLN 0.64 → PLN 1.29 · settlement -PLN 2.45 → -PLN 5.90 (-PLN 3.45)" in table
    )
    assert (
        "Expected cost of all the points and vouchers issued (the partners' own earning "
        "included): PLN 0.81 as it was, PLN 1.46 simulated."
    ) in table
    # Coffee redeemed 100 points (1.00) and issued 345; books issued 90.
    assert "Settlement, all partners: -PLN 3.35 as it was, -PLN 6.80 simulated (-PLN 3.45)" in (
        table
    )
    assert "positive, the coalition pays the partner; negative, the partner pays" in table
    coffee = next(r for r in rows if r["Code"] == "coffee")
    assert (coffee["Points issued (actual)"], coffee["Points issued (simulated)"]) == (
        "345",
        "690",
    )
    assert coffee["Settlement change"] == "-3.45"
    # Redemption rate: 100 redeemed of 100 welcome points and 435 issued at partners.
    assert "Redemption rate 18.7%" in table


async def test_a_marketer_sends_the_period_then_the_file(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    await seed(sessions, program)
    mia = harness.user("Mia")
    await hire_marketer(harness, mia)
    today = datetime.now(UTC).date()
    first, end = today - timedelta(days=3), today  # Bob's two coffee sales only
    await mia.send(f"/simulate {first.isoformat()} {end.isoformat()}")
    await mia.wait_message("Send me the proposed program file")
    await mia.send("hello")
    await mia.wait_message("Send the program file as a .toml document")
    # A refused file does not end the wait: the corrected one is taken as it is.
    await mia.send_document(b"x = [", "proposed.toml")
    await mia.wait_message("cannot be used")
    await mia.send_document(proposed(), "proposed.toml")
    table, rows = await results(harness, mia)
    assert "2 sales of 1 member replayed" in table
    assert "points 145 → 290 (+145)" in table  # 50 + 95 at 5 %, 100 + 190 at 10 %
    assert rows[0]["First day"] == first.isoformat()
    assert rows[0]["Last day"] == (end - timedelta(days=1)).isoformat()


async def test_a_period_not_ended_is_simulated_with_a_warning(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    await seed(sessions, program)
    owner = harness.owner()
    today = datetime.now(UTC).date()
    first, end = today - timedelta(days=3), today + timedelta(days=2)
    caption = f"/simulate {first.isoformat()} {end.isoformat()}"
    await owner.send_document(proposed(), "proposed.toml", caption=caption)
    table, _rows = await results(harness, owner)
    assert "The period has not ended: sales still to come are not counted." in table
    await owner.send_document(proposed(), "proposed.toml", caption="/simulate")
    table, _rows = await results(harness, owner)
    assert "has not ended" not in table


async def test_simulate_takes_the_periods_of_stats_and_settlement(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    await seed(sessions, program)
    owner = harness.owner()
    today = datetime.now(UTC).date()
    first, last = today - timedelta(days=3), today - timedelta(days=1)  # both included
    caption = f"/simulate {first.isoformat()}..{last.isoformat()}"
    await owner.send_document(proposed(), "proposed.toml", caption=caption)
    table, rows = await results(harness, owner)
    assert "2 sales of 1 member replayed" in table  # Bob's two coffee sales
    assert (rows[0]["First day"], rows[0]["Last day"]) == (first.isoformat(), last.isoformat())
    await owner.send("/simulate 2026-11")
    asked = text_of(await owner.wait_message("Send me the proposed program file"))
    assert "Nov 2026" in asked and "1" in asked and "30" in asked
    await owner.send("/cancel")
    await owner.send("/simulate 2026-13")
    refused = text_of(await owner.wait_message("I do not understand that period"))
    assert "2026-11-01..2026-11-30" in refused


async def test_a_bad_or_large_file_is_refused_and_nothing_runs(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    await seed(sessions, program)
    owner = harness.owner()
    bad = {**TEST_PROGRAM["program"], "point_value": "-1"}
    await owner.send_document(proposed(program=bad), "proposed.toml", caption="/simulate")
    refused = text_of(await owner.wait_message("cannot be used"))
    assert "program.point_value: Input should be greater than 0" in refused
    await owner.send_document(b"x = [", "proposed.toml", caption="/simulate")
    assert "not valid TOML" in text_of(await owner.wait_message("cannot be used"))
    await owner.send_document(b"#" * 300_000, "big.toml", caption="/simulate")
    await owner.wait_message("too large for a program file (at most 256 KB)")
    await owner.send_document(proposed(), "proposed.txt", caption="/simulate")
    await owner.wait_message("Send the program file as a .toml document.")
    await owner.send("/simulate 2026-12-01 2026-09-01")
    await owner.wait_message("I do not understand that period")
    assert not [m for m in owner.messages if "🧪" in text_of(m) or "Replaying" in text_of(m)]


async def test_a_file_in_another_currency_is_refused(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    await seed(sessions, program)
    owner = harness.owner()
    euros = {**TEST_PROGRAM["program"], "currency": "EUR"}
    await owner.send_document(proposed(program=euros), "proposed.toml", caption="/simulate")
    await owner.wait_message(
        "The proposed file changes the currency from PLN to EUR: a simulation compares "
        "figures in one currency. Nothing was simulated."
    )
    assert not [m for m in owner.messages if "🧪" in text_of(m) or "Replaying" in text_of(m)]


async def test_a_cashier_may_not_simulate(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    await seed(sessions, program)
    carl = harness.user("Carl")
    await hire(harness, carl, "coffee", "cashier")
    await carl.send_document(proposed(), "proposed.toml", caption="/simulate")
    await carl.wait_message("/simulate is for: owner, marketer.")  # the caption's command
    await carl.send("/simulate")
    await carl.wait_message("/simulate is for: owner, marketer.")
    assert not [m for m in carl.messages if "did not understand" in text_of(m)]
    await carl.send("/shift")  # still answered: nothing is waiting for a file
    await carl.wait_message(lambda m: "shift" in text_of(m).lower() or "today" in text_of(m))
    assert not [m for m in carl.messages if "🧪" in text_of(m) or "Send me the" in text_of(m)]


async def test_a_program_file_without_the_command_gets_a_hint(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    owner = harness.owner()
    await owner.send_document(proposed(), "proposed.toml")
    await owner.wait_message("To test this program file, send it with /simulate as the caption.")
    assert not [m for m in owner.messages if "Replaying" in text_of(m)]
