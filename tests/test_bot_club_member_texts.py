"""What members and cashiers read about the club outside /club, end to end through the fake
Bot API: /balance says a club member's whole discount and where it comes from, and the
club's multiplier next to the tier's; the rules at joining mention the club; the cashier's
help says months of the club are sold from the member's panel. The ledger's invariants are
checked after each test (the `sessions` fixture)."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.rules.program import Program
from tests.botharness import BotHarness
from tests.fakegram import text_of
from tests.test_bot_club_till import A_MONTH, pay_stars, set_tier
from tests.test_club_till import till_club_program
from tests.till import hire, join, open_panel

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
def program() -> Program:
    return till_club_program()


async def test_balance_says_a_club_members_whole_discount_and_both_multipliers(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    ann, bob, cat = harness.user("Ann"), harness.user("Bob"), harness.user("Cat")
    for user, tier in ((ann, "Gold"), (bob, "Bronze"), (cat, "Gold")):
        await join(user)
        await set_tier(sessions, user, tier)
    for user in (ann, bob):
        await pay_stars(sessions, program, user)
        await user.wait_message("City Club")  # the club's news of the payment
        user.mark_all_seen()

    await ann.send("/balance")
    gold = text_of(await ann.wait_message("Tier"))
    assert "🏅 Tier: Gold (points × 2), × 1.5 more in City Club" in gold
    assert "🏷 10% off at every partner: 5% Gold + 5% City Club." in gold
    assert "🏷 Gold: 5% off" not in gold
    # Bronze gives no discount of its own: the club's 5 % is all of it.
    await bob.send("/balance")
    bronze = text_of(await bob.wait_message("Tier"))
    assert "🏅 Tier: Bronze (points × 1), × 1.5 more in City Club" in bronze
    assert "🏷 City Club: 5% off at every partner." in bronze
    # Not in the club: the tier's alone.
    await cat.send("/balance")
    alone = text_of(await cat.wait_message("Tier"))
    assert "🏅 Tier: Gold (points × 2)\n" in alone and "more in" not in alone
    assert "🏷 Gold: 5% off at every partner." in alone


@pytest.mark.parametrize(
    ("program", "line"),
    [
        (
            till_club_program(),
            "• City Club, a paid membership (250 ⭐ or PLN\u00a029.00 a month): points × 1.5 "
            "and 5% more off at every partner, on top of your tier; more in /club.",
        ),
        (
            till_club_program(price="0", discount_percent="0"),
            "• City Club, a paid membership (250 ⭐ a month): points × 1.5 on top of your "
            "tier; more in /club.",
        ),
    ],
    ids=["stars, money, discount", "stars only, no discount"],
)
async def test_the_rules_at_joining_mention_the_club(
    harness: BotHarness, program: Program, line: str
) -> None:
    ann = harness.user("Ann")
    await ann.send("/start")
    rules = text_of(await ann.wait_message("one card for"))
    earning = "• Earn points on every purchase: 2%–5% of what you pay, up to 10% at higher tiers."
    assert f"{earning}\n{line}\n" in rules


SELL = (
    "To sell a month of City Club: on the member's panel press ⭐, take the money, then press "
    "Taken."
)


async def test_staff_are_told_months_of_the_club_are_sold_from_the_panel(
    harness: BotHarness, program: Program
) -> None:
    carl, ann = harness.user("Carl"), harness.user("Ann")
    await hire(harness, carl, "coffee", "cashier")
    welcome = text_of(next(m for m in carl.messages if "You are now" in text_of(m)))
    assert SELL in welcome
    await carl.send("/help")
    assert SELL in text_of(await carl.wait_message("What I can do"))
    # What the line says is there: the panel's ⭐ button.
    await join(ann)
    await open_panel(carl, ann)
    await carl.click(A_MONTH)
    await carl.wait_message("then press Taken")


@pytest.mark.parametrize("program", [till_club_program(price="0")])
async def test_no_till_sale_line_when_the_club_is_sold_for_stars_only(
    harness: BotHarness, program: Program
) -> None:
    carl = harness.user("Carl")
    await hire(harness, carl, "coffee", "cashier")
    await carl.send("/help")
    assert "To sell a month" not in text_of(await carl.wait_message("What I can do"))
