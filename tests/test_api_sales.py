"""The partner API over HTTP: look a member up, post a sale, read it, refund it, read the
settlement; bad input refused with problem details and nothing written. The ledger's
invariants are checked after each test (the `sessions` fixture)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from db.ledger.models import AuditLog, Transaction
from db.rules.cards import luhn_digit
from db.rules.program import Program
from db.usecases.members import get_member
from tests.apiharness import LiveApi, live_api

Sessions = async_sessionmaker[AsyncSession]
PROBLEM = "application/problem+json"


@pytest.fixture
async def api(engine: AsyncEngine, sessions: Sessions, program: Program) -> AsyncIterator[LiveApi]:
    async with live_api(engine, sessions, program) as live:
        yield live


async def _count(sessions: Sessions, model: type, *where: object) -> int:
    async with sessions() as s:
        return int(await s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def test_lookup_sale_read_refund_settlement(api: LiveApi, sessions: Sessions) -> None:
    key = await api.key("coffee")
    ann = await api.member(7001, "ann")
    found = await api.call("GET", f"/members/lookup?card_token={api.token(ann)}", key=key)
    assert found.status == 200, found.body
    assert found.body == {
        "name_initial": "A",
        "tier": "Bronze",
        "discount_percent": "0",
        "points": 50,  # the welcome gift
        "points_value": "0.50",
        "vouchers": [],
        "stamp_cards": [],
    }
    # By number too (spaces as printed), and by the whole QR link.
    number = " ".join(ann.card_number[i : i + 4] for i in range(0, 12, 4))
    by_number = await api.call("GET", f"/members/lookup?card_number={quote(number)}", key=key)
    assert by_number.status == 200 and by_number.body == found.body
    link = quote(f"https://t.me/city_bonus_bot?start={api.token(ann)}", safe="")
    by_link = await api.call("GET", f"/members/lookup?card_token={link}", key=key)
    assert by_link.status == 200 and by_link.body == found.body

    posted = await api.sale(key, ann, "40.00", "a-1043")
    assert posted.status == 201, posted.body
    sale = posted.body
    day = datetime.now(UTC).astimezone(api.program.program.zone).date().isoformat()
    assert sale["document"] == "A-1043"  # read in capitals, as the bot reads receipts
    assert sale["business_day"] == day
    assert (sale["amount"], sale["discount"], sale["to_pay"], sale["paid"]) == (
        "40.00",
        "0.00",
        "40.00",
        "40.00",
    )
    assert (sale["points_earned"], sale["points_available"]) == (200, 250)
    assert sale["status"] == "posted"
    assert sale["created_at"].endswith("Z")
    assert posted.headers["Location"] == f"/api/v1/sales/A-1043?day={day}" == sale["url"]

    read = await api.call("GET", "/sales/A-1043", key=key)
    assert read.status == 200 and read.body == sale
    assert (await api.call("GET", f"/sales/a-1043?day={day}", key=key)).body == sale

    refund = await api.call(
        "POST",
        "/refunds",
        key=key,
        idem="refund-1",
        body={"document": "A-1043", "amount": "10.00", "reason": "one cup returned"},
    )
    assert refund.status == 201, refund.body
    assert refund.body["amount"] == "10.00" and refund.body["points_clawed_back"] == 50
    assert refund.body["cash_back"] == "10.00" and refund.body["points_available"] == 200
    assert refund.headers["Location"] == sale["url"] == refund.body["sale_url"]
    rest = await api.call(
        "POST", "/refunds", key=key, idem="refund-2", body={"document": "A-1043", "reason": "x"}
    )
    assert rest.status == 201 and rest.body["amount"] == "30.00"
    assert rest.body["points_available"] == 50
    again = await api.call(
        "POST", "/refunds", key=key, idem="refund-3", body={"document": "A-1043", "reason": "x"}
    )
    assert again.status == 409 and again.code == "already_reversed"
    assert again.headers["Content-Type"] == PROBLEM

    after = await api.call("GET", "/sales/A-1043", key=key)
    assert after.body["refunded"] == "40.00"
    assert [r["amount"] for r in after.body["refunds"]] == ["10.00", "30.00"]

    today = datetime.now(UTC).astimezone(api.program.program.zone).date()
    tomorrow = today + timedelta(days=1)
    report = await api.call("GET", f"/settlement?from={today}&to={tomorrow}", key=key)
    assert report.status == 200, report.body
    assert report.body["partner"] == "coffee"
    assert (report.body["from"], report.body["to"]) == (today.isoformat(), tomorrow.isoformat())
    # 200 issued, 200 clawed back by the refunds: nothing net.
    assert (report.body["points_issued"], report.body["net_points"]) == (0, 0)
    assert report.body["net_money"] == "0.00" and report.body["currency"] == "PLN"
    # The 50 points members hold are the welcome gift: the program's, none of the café's.
    assert (report.body["amount"], report.body["liability"]) == ("0.00", "0.00")
    async with sessions() as s:
        assert (await get_member(s, ann.id)).balance == 50
        # Every call on record with the key's id; the use cases' own rows too.
        rows = (await s.execute(select(AuditLog.action, AuditLog.api_key_id))).all()
    calls = [a for a, k in rows if a == "api_call" and k is not None]
    assert len(calls) == 11
    assert {a for a, k in rows if k is not None} >= {"api_call", "lookup", "sale", "refund"}


async def test_the_same_document_is_one_sale(api: LiveApi, sessions: Sessions) -> None:
    key = await api.key("coffee")
    ann, bob = await api.member(7001), await api.member(7002, "Bob")
    assert (await api.sale(key, ann, "12.50", "B-1")).status == 201
    # The same sale again under a new Idempotency-Key: the document number keys it.
    same = await api.sale(key, ann, "12.50", "B-1")
    assert same.status == 200 and same.body["points_earned"] == 62
    others = [await api.sale(key, ann, "13.00", "B-1"), await api.sale(key, bob, "12.50", "b-1")]
    for other in others:
        assert other.status == 409 and other.code == "receipt_taken"
        assert "B-1" in other.body["detail"]
    # Another partner's till numbers its own documents.
    books = await api.key("books")
    assert (await api.sale(books, bob, "12.50", "B-1")).status == 201
    assert await _count(sessions, Transaction, Transaction.kind == "earn") == 2


@pytest.mark.parametrize(
    ("amount", "code"),
    [
        ("-5", "invalid_amount"),
        ("0", "invalid_amount"),
        ("0.00", "invalid_amount"),
        ("12.505", "invalid_amount"),
        ("1e3", "invalid_amount"),
        ("12,50", "invalid_amount"),
        ("NaN", "invalid_amount"),
        (" 12", "invalid_amount"),
        ("", "invalid_amount"),
        ("99999999999", "invalid_amount"),
        (12.5, "invalid_amount"),  # money is a string, never a JSON number
        (None, "invalid_amount"),
        ("5000.01", "amount_too_large"),  # the program's max_purchase
        ("9999999999.99", "amount_too_large"),
    ],
)
async def test_amounts_that_are_not_are_refused(
    api: LiveApi, sessions: Sessions, amount: object, code: str
) -> None:
    key = await api.key("coffee")
    ann = await api.member(7001)
    answer = await api.call(
        "POST",
        "/sales",
        key=key,
        idem="bad-amount",
        body={"member": {"card_number": ann.card_number}, "amount": amount, "document": "C-1"},
    )
    assert answer.status == 422, answer.body
    assert answer.headers["Content-Type"] == PROBLEM
    assert answer.code == code
    assert set(answer.body) >= {"type", "title", "status", "detail", "code"}
    assert answer.body["status"] == 422 and answer.body["type"].endswith(code)
    assert await _count(sessions, Transaction, Transaction.kind == "earn") == 0
    fixed = await api.call(
        "POST",
        "/sales",
        key=key,
        idem="bad-amount",
        body={"member": {"card_number": ann.card_number}, "amount": "5.00", "document": "C-1"},
    )
    # A 422 for the input keeps nothing, whoever refused it: the key is free for the
    # corrected request.
    assert fixed.status == 201, fixed.body


async def test_bad_input_of_every_kind(api: LiveApi, sessions: Sessions) -> None:
    key = await api.key("coffee")
    ann = await api.member(7001)
    good = {"member": {"card_number": ann.card_number}, "amount": "5.00", "document": "D-1"}
    cases: list[tuple[object, int, str]] = [
        ({**good, "member": {"card_number": "1234 5678 9012"}}, 422, "invalid_card_number"),
        ({**good, "member": {"card_token": "c" + "A" * 36}}, 422, "invalid_token"),
        ({**good, "member": {"card_token": "not a token"}}, 422, "invalid_token"),
        ({**good, "member": {}}, 422, "invalid_request"),
        ({**good, "document": ""}, 422, "invalid_receipt"),
        ({**good, "document": "X" * 41}, 422, "invalid_receipt"),
        ({**good, "document": "A\x00B"}, 422, "invalid_receipt"),
        ({**good, "tip": "1.00"}, 422, "invalid_request"),  # unknown fields are refused
        ({**good, "discount_percent": "100"}, 422, "invalid_request"),
        ([good], 422, "invalid_request"),
    ]
    for n, (body, status, code) in enumerate(cases):
        answer = await api.call("POST", "/sales", key=key, idem=f"bad-{n}", body=body)
        assert (answer.status, answer.code) == (status, code), (body, answer.body)
        assert answer.headers["Content-Type"] == PROBLEM
    not_json = await api.call(
        "POST",
        "/sales",
        key=key,
        idem="bad-json",
        raw=b"{amount: 5",
        headers={"Content-Type": "application/json"},
    )
    assert not_json.status == 422 and not_json.code == "invalid_request"
    expired = await api.call(
        "GET", f"/members/lookup?card_token={api.token(ann, seconds=-1)}", key=key
    )
    assert expired.status == 422 and expired.code == "card_expired"
    both = await api.call(
        "GET",
        f"/members/lookup?card_token={api.token(ann)}&card_number={ann.card_number}",
        key=key,
    )
    assert both.status == 422 and both.code == "invalid_request"
    unused = "40000000000" + luhn_digit("40000000000")
    assert unused != ann.card_number
    nobody = await api.call("GET", f"/members/lookup?card_number={unused}", key=key)
    assert nobody.status == 404 and nobody.code == "unknown_member"
    unknown = await api.call("GET", "/sales/NO-SUCH", key=key)
    assert unknown.status == 404 and unknown.code == "unknown_transaction"
    nowhere = await api.call("GET", "/no/such/thing", key=key)
    assert nowhere.status == 404 and nowhere.code == "not_found"
    assert nowhere.headers["Content-Type"] == PROBLEM
    period = await api.call("GET", "/settlement?from=2026-12-10&to=2026-12-10", key=key)
    assert period.status == 422 and period.code == "invalid_request"
    assert await _count(sessions, Transaction) == 1  # the welcome gift alone


async def test_a_document_number_with_slashes_and_spaces(api: LiveApi) -> None:
    """Invoice-like numbers ("FV/2026/12 7") are documents too: their sale's URL encodes
    them, and reading it finds the sale."""
    key = await api.key("coffee")
    ann = await api.member(7001)
    posted = await api.sale(key, ann, "8.00", "fv/2026/12 7")
    assert posted.status == 201, posted.body
    assert posted.body["document"] == "FV/2026/12 7"
    assert posted.body["url"].startswith("/api/v1/sales/FV%2F2026%2F12%207?day=")
    read = await api.call("GET", posted.body["url"].removeprefix("/api/v1"), key=key)
    assert read.status == 200 and read.body == posted.body
    plain = await api.call("GET", "/sales/FV/2026/12%207", key=key)
    assert plain.status == 200 and plain.body == posted.body


async def test_a_body_too_large_is_refused(api: LiveApi, sessions: Sessions) -> None:
    key = await api.key("coffee")
    ann = await api.member(7001)
    body = {"member": {"card_number": ann.card_number}, "amount": "5.00", "document": "Z-1"}
    large = await api.call("POST", "/sales", key=key, idem="big", body={**body, "x": "y" * 70_000})
    assert (large.status, large.code) == (413, "payload_too_large"), large.body
    # Nothing was kept for the key: the request as it should be runs.
    assert (await api.call("POST", "/sales", key=key, idem="big", body=body)).status == 201


async def test_a_body_that_is_not_json_is_refused_415(api: LiveApi, sessions: Sessions) -> None:
    key = await api.key("coffee")
    ann = await api.member(7001)
    body = {"member": {"card_number": ann.card_number}, "amount": "5.00", "document": "M-1"}
    raw = json.dumps(body).encode()
    for media in ("text/plain", "application/x-www-form-urlencoded", None):
        sent = await api.call(
            "POST",
            "/sales",
            key=key,
            idem="media",
            raw=raw,
            headers={"Content-Type": media} if media else {},
        )
        assert (sent.status, sent.code) == (415, "unsupported_media_type"), (media, sent.body)
    # Nothing was kept for the key; JSON by another name (application/*+json) is JSON.
    plus = await api.call(
        "POST",
        "/sales",
        key=key,
        idem="media",
        raw=raw,
        headers={"Content-Type": "application/vnd.till+json; charset=utf-8"},
    )
    assert plus.status == 201, plus.body
    # A POST without a body (withdraw, claim) needs no Content-Type.
    bare = await api.call("POST", "/vouchers/AAAA-AAAA/claim", key=key, idem="bare")
    assert (bare.status, bare.code) == (404, "unknown_voucher"), bare.body


async def test_json_nested_past_reading_is_refused(api: LiveApi, sessions: Sessions) -> None:
    key = await api.key("coffee")
    deep = await api.call(
        "POST",
        "/sales",
        key=key,
        idem="deep",
        raw=b"[" * 30_000 + b"]" * 30_000,
        headers={"Content-Type": "application/json"},
    )
    assert (deep.status, deep.code) == (422, "invalid_request"), deep.body


async def test_a_sale_that_crosses_a_tier_says_the_tier_it_earned_at(
    api: LiveApi, sessions: Sessions
) -> None:
    key = await api.key("coffee")
    ann = await api.member(7001)
    crossing = await api.sale(key, ann, "3500.00", "T-1")
    assert crossing.status == 201, crossing.body
    # Earned at Bronze (1.0: 3500 × 5 % = 17500 points), which moved her up to Gold.
    sale = crossing.body
    assert (sale["points_earned"], sale["tier"], sale["tier_after"]) == (17500, "Bronze", "Gold")
    # Read back from the ledger, it says the same.
    read = await api.call("GET", "/sales/T-1", key=key)
    assert (read.body["tier"], read.body["tier_after"]) == ("Bronze", "Gold"), read.body
    # The next sale earns at Gold (2.0).
    next_sale = await api.sale(key, ann, "40.00", "T-2")
    assert (next_sale.body["points_earned"], next_sale.body["tier"]) == (400, "Gold")
    assert next_sale.body["tier_after"] == "Gold"
