"""The partner API's OpenAPI document, served by the app, and the app held to it:
schemathesis generates requests from the served document, valid and invalid, sends them to
the live server and checks that none is a server error, that every answer matches the
document, and that invalid data is refused. Every domain error has its problem row."""

from __future__ import annotations

import asyncio
import importlib
import pkgutil
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis import Case, GenerationMode
from schemathesis.checks import (
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
)
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

import db
from bot.api.problems import MEDIA_TYPE, PROBLEMS, from_domain
from db.ledger.models import AuditLog
from db.rules.errors import DomainError, TooManyLookups
from db.rules.program import Program
from tests.apiharness import LiveApi, live_api

Sessions = async_sessionmaker[AsyncSession]
EXAMPLES = 25  # per operation and mode: enough to find a mismatch, quick enough to run always


@pytest.fixture
async def api(engine: AsyncEngine, sessions: Sessions, program: Program) -> AsyncIterator[LiveApi]:
    async with live_api(engine, sessions, program) as live:
        yield live


def test_every_domain_error_is_a_problem() -> None:
    for module in pkgutil.walk_packages(db.__path__, "db."):
        if not module.name.startswith("db.migrations"):
            importlib.import_module(module.name)
    errors, todo = [], list(DomainError.__subclasses__())
    while todo:
        error = todo.pop()
        errors.append(error)
        todo += error.__subclasses__()
    assert len(errors) > 30
    assert sorted({e.code for e in errors} - set(PROBLEMS)) == []
    assert all(400 <= status < 600 and title for status, title in PROBLEMS.values())


def test_a_lockout_says_when_to_try_again() -> None:
    answer = from_domain(TooManyLookups(minutes=10))
    assert answer.headers["Retry-After"] == "600"
    assert b"or try again in 10 minutes." in answer.body


async def test_the_document_and_the_docs_page(api: LiveApi) -> None:
    async with api.http.get(api.url + "/api/v1/openapi.json") as response:
        assert response.status == 200
        spec = await response.json()
    assert spec["openapi"].startswith("3.1")
    assert spec["servers"] == [{"url": "/api/v1"}]
    assert spec["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    operations = {
        (method.upper(), path): op
        for path, item in spec["paths"].items()
        for method, op in item.items()
    }
    assert set(operations) >= {
        ("GET", "/members/lookup"),
        ("POST", "/sales"),
        ("GET", "/sales/{document}"),
        ("POST", "/refunds"),
        ("GET", "/settlement"),
        ("POST", "/quotes"),
        ("POST", "/sales/{document}/withdraw"),
        ("POST", "/sales/{document}/finish-without-points"),
        ("POST", "/vouchers/{code}/claim"),
    }
    for (method, path), op in operations.items():
        for status in ("401", "422", "429"):
            assert MEDIA_TYPE in op["responses"][status]["content"], (method, path, status)
        headers = [p for p in op.get("parameters", ()) if p["in"] == "header"]
        if method == "POST":
            assert [(h["name"], h["required"]) for h in headers] == [("Idempotency-Key", True)]

    def codes(method: str, path: str) -> set[str]:
        answers = operations[(method, path)]["responses"]
        return {c for a in answers.values() for c in a["description"].split(", ")}

    for (method, path), op in operations.items():
        if method == "POST":
            post = {"idempotency_key_required", "payload_too_large", "unsupported_media_type"}
            assert post <= codes(method, path), (method, path)
            assert {"400", "413", "415"} <= set(op["responses"]), (method, path)
        assert "method_not_allowed" in codes(method, path), (method, path)
    assert "own_card" in codes("POST", "/sales") & codes("POST", "/quotes")
    assert "own_voucher" in codes("POST", "/vouchers/{code}/claim")
    assert "unknown_partner" in codes("GET", "/members/lookup") & codes("GET", "/settlement")
    amount = spec["components"]["schemas"]["SaleIn"]["properties"]["amount"]
    assert amount["type"] == "string" and amount["pattern"]
    async with api.http.get(api.url + "/api/v1/docs") as response:
        assert response.status == 200
        assert "/api/v1/openapi.json" in await response.text()


def _with_real_references(references: dict[str, str]) -> Callable[[Case], Case]:
    """Valid requests name a real member, sale and period (random ones name nothing, and
    are refused before any answer worth checking): amounts, document numbers and refund
    reasons stay generated."""

    def fix(case: Case) -> Case:
        label = case.operation.label
        if label == "GET /members/lookup":
            case.query = {"card_number": references["card"]}
        elif label == "GET /settlement":
            case.query = {"from": references["from"], "to": references["to"]}
        elif label == "GET /sales/{document}":
            case.path_parameters = {"document": references["document"]}
            case.query = {"wait": 1}
        elif label in ("POST /sales", "POST /quotes") and isinstance(case.body, dict):
            case.body = {**case.body, "member": {"card_number": references["card"]}}
            case.body.pop("discount_percent", None)
        elif label.startswith("POST /sales/{document}/"):
            case.path_parameters = {"document": references["pending"]}
            case.query = {}
        elif label == "POST /refunds" and isinstance(case.body, dict):
            case.body = {**case.body, "document": references["document"]}
            case.body.pop("day", None)
        return case

    return fix


def _short_waits(case: Case) -> Case:
    """A generated read of a sale that happens to be pending waits a second at most: the
    long poll is tested apart (tests/test_api_flow.py)."""
    query = case.query if isinstance(case.query, dict) else None
    wait = query.get("wait") if query else None
    if query and isinstance(wait, int) and wait > 1:
        query["wait"] = 1
    return case


def _fuzz(url: str, key: str, references: dict[str, str]) -> list[str]:
    """Every operation, valid and invalid requests, against the live server (run in a
    thread: schemathesis calls it synchronously, and the server runs on the test's loop).
    Valid requests go twice: as generated, and naming real references."""
    schema = schemathesis.openapi.from_url(url + "/api/v1/openapi.json")
    checks = [not_a_server_error, response_schema_conformance, negative_data_rejection]
    failures: list[str] = []
    settings = hypothesis.settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 9
    real = _with_real_references(references)
    for operation in operations:
        positive = operation.as_strategy(generation_mode=GenerationMode.POSITIVE)
        strategies = {
            "positive": positive.map(_short_waits),
            "positive, real references": positive.map(real),
            "negative": operation.as_strategy(generation_mode=GenerationMode.NEGATIVE).map(
                _short_waits
            ),
        }
        for name, strategy in strategies.items():

            @settings
            @hypothesis.given(case=strategy)
            def run(case: Case) -> None:
                case.call_and_validate(
                    base_url=url + "/api/v1",
                    headers={"Authorization": f"Bearer {key}"},
                    checks=checks,
                    timeout=30,
                )

            try:
                run()
            except Exception as failure:
                failures.append(f"{operation.label} ({name}): {failure}"[:3000])
    return failures


async def test_schemathesis_against_the_live_server(api: LiveApi, sessions: Sessions) -> None:
    key = await api.key("coffee")
    ann = await api.member(7001)
    assert (await api.sale(key, ann, "4000.00", "FUZZ-1")).status == 201
    pending = await api.call(
        "POST",
        "/sales",
        key=key,
        idem="fuzz-2",
        body={
            "member": {"card_number": ann.card_number},
            "amount": "10.00",
            "document": "FUZZ-2",
            "points": 100,
        },
    )
    assert pending.status == 202, pending.body
    today = datetime.now(UTC).astimezone(api.program.program.zone).date()
    references = {
        "card": ann.card_number,
        "document": "FUZZ-1",
        "pending": "FUZZ-2",
        "from": today.isoformat(),
        "to": (today + timedelta(days=1)).isoformat(),
    }
    failures = await asyncio.to_thread(_fuzz, api.url, key, references)
    assert failures == []
    async with sessions() as s:
        answered = (
            await s.execute(
                select(AuditLog.details["status"].astext).where(AuditLog.action == "api_call")
            )
        ).scalars()
    statuses = set(answered)
    # Real answers were checked, not only refusals: lookups, quotes, sales, withdrawals,
    # refunds, reads.
    assert {"200", "201", "202", "404", "409", "422"} <= statuses
