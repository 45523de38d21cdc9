"""Who may do what is one table (db/rules/access.py), read by the router filters and the use
cases."""

from __future__ import annotations

import ast
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.filters import IsStaff
from db.ledger.models import Transaction
from db.rules.access import ACTIONS, API_ROLES, STAFF_ROLES, may
from db.rules.errors import NotStaff
from db.rules.program import Program
from db.usecases.members import find_by_telegram
from db.usecases.staff import active_staff
from db.usecases.till import till_refund
from tests.botharness import BotHarness
from tests.till import hire, join, start_sale

ROOT = Path(__file__).resolve().parent.parent
Sessions = async_sessionmaker[AsyncSession]


def _actions_named_in_code() -> list[tuple[str, int, str | None, int]]:
    """(file, line, action, number of arguments) of every `IsStaff(…)`, `.require(…)` and
    `may(…)` call in bot/ and db/ (action None when it is not a string literal)."""
    found = []
    for folder in ("bot", "db"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if not isinstance(node, ast.Call):
                    continue
                func_ = node.func
                name = func_.attr if isinstance(func_, ast.Attribute) else getattr(func_, "id", "")
                if name not in ("IsStaff", "require", "may") or not node.args:
                    continue
                action = node.args[-1]
                literal = action.value if isinstance(action, ast.Constant) else None
                assert literal is None or isinstance(literal, str)
                where = path.relative_to(ROOT).as_posix()
                found.append((where, node.lineno, literal, len(node.args)))
    return found


def test_every_action_the_code_names_is_in_the_table() -> None:
    # Where the checks are defined and pass their action on.
    defining = (
        "db/rules/access.py",
        "db/usecases/staff.py",
        "db/usecases/api/actor.py",
        "bot/filters.py",
    )
    calls = [c for c in _actions_named_in_code() if c[0] not in defining]
    assert len(calls) > 10  # the scan sees the filters and the use cases
    assert [c for c in calls if c[2] not in ACTIONS] == []
    # One action per check, never a list of roles restated at the call.
    assert [c for c in calls if c[3] != 1] == []


def test_the_table_names_staff_and_api_key_roles_only() -> None:
    assert all(roles <= {*STAFF_ROLES, *API_ROLES.values()} for roles in ACTIONS.values())
    # An action no role may do is the owners' alone.
    assert [a for a, roles in ACTIONS.items() if not roles] == ["club_refund"]
    assert may("manager", "refund") and not may("cashier", "refund")
    with pytest.raises(KeyError):
        IsStaff("no_such_action")


async def test_a_forged_refund_by_a_cashier_is_refused_by_the_use_case(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    """A cashier who reaches the refund use case (a forged button, a future route that
    forgets the filter) is refused by the same table, and nothing is posted."""
    cashier, ann = harness.user("C"), harness.user("Ann")
    await hire(harness, cashier, "coffee", "cashier")
    await join(ann)
    await start_sale(cashier, ann)
    await cashier.send("40")
    await cashier.wait_message("✅")
    async with sessions() as s:
        sale = await s.scalar(select(Transaction.id).where(Transaction.kind == "earn"))
        staff = await active_staff(s, cashier.user_id)
        assert sale is not None and staff is not None and staff.role == "cashier"
        with pytest.raises(NotStaff):
            await till_refund(
                s,
                program,
                staff,
                transaction_id=sale,
                amount=Decimal("40"),
                reason="forged",
                key="forged-refund",
            )
    async with sessions() as s:
        refunds = await s.scalar(select(func.count()).where(Transaction.kind == "reverse"))
        member = await find_by_telegram(s, ann.user_id)
    assert refunds == 0
    assert member is not None and member.balance == 250
