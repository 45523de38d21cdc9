"""A use case commits once, through db.ledger.writer.unit_of_work; queries, handlers,
middlewares, jobs and workers never commit or roll back themselves (db/ledger/writer.py explains
the pattern)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENDINGS = {"commit", "rollback"}
# (file, enclosing function or None for anywhere in the file) allowed to end a transaction.
ALLOWED = {
    ("db/ledger/writer.py", "unit_of_work"),
    ("db/migrations/env.py", None),
    ("db/embedded.py", None),
}


def _endings(path: Path) -> list[tuple[str | None, int, str]]:
    """(enclosing function, line, method) of every `.commit()` / `.rollback()` call."""
    found: list[tuple[str | None, int, str]] = []

    def visit(node: ast.AST, function: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            inner = function
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                inner = child.name
            if (
                isinstance(child, ast.Call)
                and isinstance(child.func, ast.Attribute)
                and child.func.attr in ENDINGS
            ):
                found.append((function, child.lineno, child.func.attr))
            visit(child, inner)

    visit(ast.parse(path.read_text(), str(path)), None)
    return found


def _offenders() -> list[str]:
    offenders = []
    for folder in ("bot", "db"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            name = path.relative_to(ROOT).as_posix()
            if name.startswith("db/migrations/versions/"):
                continue  # Alembic runs each revision inside env.py's transaction
            for function, line, method in _endings(path):
                if (name, None) in ALLOWED or (name, function) in ALLOWED:
                    continue
                offenders.append(f"{name}:{line} {function or '<module>'} calls .{method}()")
    return offenders


def test_only_the_unit_of_work_commits_or_rolls_back() -> None:
    assert _offenders() == []


def test_the_scan_sees_a_commit(tmp_path: Path) -> None:
    """The scan itself works: a handler-style commit and a query's rollback are found."""
    source = tmp_path / "handler.py"
    source.write_text(
        "async def handler(session):\n"
        "    await session.commit()\n"
        "async def query(session):\n"
        "    rows = 1\n"
        "    await session.rollback()\n"
        "    return rows\n"
    )
    assert _endings(source) == [("handler", 2, "commit"), ("query", 5, "rollback")]
