"""Errors as RFC 9457 problem details (`application/problem+json`): `type`, `title`,
`status`, `detail`, and a stable `code`, the bot's domain error code (db/rules/errors.py and
its kin) or one of the API's own. PROBLEMS is the one table from a code to its HTTP status
and title; a test checks that every domain error has a row."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, JsonValue
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from db.rules.errors import DomainError

Endpoint = Callable[[Request], Coroutine[Any, Any, Response]]
MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "urn:city-bonus:problem:"  # + code: a stable, absolute type URI per code

# code: (HTTP status, title). 4xx: the request is refused and nothing was written.
PROBLEMS: dict[str, tuple[int, str]] = {
    # The request itself.
    "invalid_request": (422, "The request is not valid"),
    "not_found": (404, "No such resource"),
    "method_not_allowed": (405, "Method not allowed"),
    "payload_too_large": (413, "The body is too large"),
    "unsupported_media_type": (415, "The body must be application/json"),
    # The key (Authorization: Bearer cb_live_…), its scopes and its rate.
    "invalid_api_key": (401, "Missing or unknown API key"),
    "api_key_revoked": (401, "This API key was revoked"),
    "not_staff": (403, "The API key's scopes do not allow this"),
    "rate_limited": (429, "Too many requests for this API key"),
    # Idempotency-Key.
    "idempotency_key_required": (400, "This request needs an Idempotency-Key header"),
    "idempotency_key_reused": (422, "This Idempotency-Key was used for another request"),
    "idempotency_in_flight": (409, "A request with this Idempotency-Key is still running"),
    # Amounts and documents.
    "invalid_amount": (422, "Not an amount"),
    "amount_too_large": (422, "Amount over the program's largest purchase"),
    "invalid_receipt": (422, "Not a document number"),
    "receipt_taken": (409, "Document number already used today for another sale"),
    "invalid_points": (422, "Not a number of points"),
    "not_enough_points": (409, "Not enough points"),
    "redeem_limit_exceeded": (422, "Points cannot pay that much of this purchase"),
    "idempotency_conflict": (409, "Already done with other details"),
    "discount_changed": (409, "The member's discount changed"),
    "repeat_sale": (409, "The same sale was posted minutes ago"),
    "invalid_lines": (422, "A line of the sale cannot be used"),
    "lines_dont_add_up": (422, "The sale's lines do not add up to its amount"),
    # Members and cards.
    "unknown_member": (404, "No such member"),
    "invalid_token": (422, "Not a valid token"),
    "invalid_card_number": (422, "Not a card number: check the digits"),
    "card_expired": (422, "The card token has expired"),
    "too_many_lookups": (429, "Too many card numbers that name nobody"),
    "own_card": (403, "Staff cannot act on their own card"),
    # Sales and refunds.
    "unknown_transaction": (404, "No such sale"),
    "unknown_sale": (404, "No sale with this document number that day"),
    "unknown_partner": (404, "No such partner"),
    "wrong_partner": (403, "This belongs to another partner"),
    "not_reversible": (409, "This cannot be refunded"),
    "already_reversed": (409, "Already refunded in full"),
    "refund_too_large": (422, "More than is left to refund"),
    "reason_required": (422, "A reason is required"),
    "charity_takes_no_sales": (403, "A charity partner takes no sales"),
    "request_closed": (409, "The request is closed"),
    # Vouchers and rewards.
    "unknown_voucher": (404, "No such voucher"),
    "voucher_wrong_partner": (403, "The voucher is honoured at another partner"),
    "voucher_expired": (409, "The voucher has expired"),
    "voucher_claimed": (409, "The voucher was already claimed"),
    "voucher_voided": (409, "The voucher was cancelled"),
    "own_voucher": (403, "Staff cannot claim their own voucher"),
    "too_many_voucher_codes": (429, "Too many voucher codes that name nothing"),
    "voucher_code_taken": (409, "The voucher code is taken"),
    "reward_unavailable": (404, "No such reward"),
    "reward_price_changed": (409, "The reward's price changed"),
    "reward_out_of_stock": (409, "The reward is out of stock"),
    "reward_limit": (409, "The member has as many of this reward as allowed"),
    # The bot's other errors, never expected from the API but mapped all the same.
    "invalid_invite": (400, "Not a valid staff invite"),
    "no_club": (404, "The program sells no club this way"),
    "club_price_changed": (409, "The club's price changed"),
    "gifting_off": (403, "The program gives no gifts"),
    "gift_limit": (409, "Over the daily gift allowance"),
    "gift_closed": (409, "The gift is closed"),
    "own_gift": (403, "Nobody gifts points to themself"),
    "not_a_charity": (422, "Not a charity partner"),
    # The server's own fault: retry later (a POST with the same Idempotency-Key).
    "internal_error": (500, "Something went wrong on our side"),
}

# Details a domain error carries that a till may be told (member ids and the like are not).
_SAFE_PARAMS = frozenset(
    {
        "max",
        "minutes",
        "receipt",
        "status",
        "amount",
        "action",
        "left",
        "document",
        "price",
        "differs",
        "discount_percent",
        "asked",
        "available",
    }
)


# A parameter named as one of RFC 9457's members is told under another name: a closed
# request's or gift's `status` is the problem's `state` (its `status` is the HTTP status).
_RENAMED = {"status": "state"}

_CODES: list[JsonValue] = [*sorted(PROBLEMS)]


class Problem(BaseModel):
    """RFC 9457 problem details, with the stable `code` a program should branch on."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(examples=[TYPE_BASE + "receipt_taken"])
    title: str
    status: int = Field(ge=400, le=599)
    detail: str
    code: str = Field(
        description="Stable; one of the codes in docs/integrator.md",
        json_schema_extra={"enum": _CODES},
    )


def problem(
    code: str,
    detail: str | None = None,
    *,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> JSONResponse:
    status, title = PROBLEMS[code]
    body = {
        **(extra or {}),  # never in place of the members below
        "type": TYPE_BASE + code,
        "title": title,
        "status": status,
        "detail": detail or title + ".",
        "code": code,
    }
    return JSONResponse(body, status_code=status, headers=headers, media_type=MEDIA_TYPE)


def from_domain(error: DomainError) -> JSONResponse:
    """A domain error as its problem; an unmapped code is a server fault (the test that
    reads every error's code keeps that from happening)."""
    code = error.code if error.code in PROBLEMS else "internal_error"
    extra: dict[str, Any] = {
        _RENAMED.get(k, k): _shown(k, v)
        for k, v in error.params.items()
        if k in _SAFE_PARAMS and v is not None
    }
    if code in ("invalid_lines", "lines_dont_add_up"):
        extra["errors"] = [_line_error(error.params)]
    headers = None
    if code in _LOCKOUTS and isinstance(extra.get("minutes"), int):
        headers = {"Retry-After": str(extra["minutes"] * 60)}
    return problem(code, _detail(code, extra), extra=extra, headers=headers)


def _line_error(params: Mapping[str, Any]) -> dict[str, str]:
    """Where a sale's lines are wrong, as a validation error lists it."""
    if "total" in params:
        return {
            "location": "body.lines",
            "message": f"the lines add up to {params['total']}, not the sale's amount "
            f"{params['amount']}",
        }
    if "field" in params:
        what = {
            "amount": "a line's money: at most two decimals, not below zero",
            "quantity": "a quantity above zero, at most 1000000, with at most three decimals",
            "category": "a category is a slug: small letters, digits and dashes (coffee-beans)",
            "sku": "an sku is 1 to 64 visible characters",
        }.get(str(params["field"]), "not usable")
        return {"location": f"body.lines.{params['line']}.{params['field']}", "message": what}
    return {"location": "body.lines", "message": f"at most {params.get('max')} lines"}


# 429s of a lockout that lasts while its window holds wrong card numbers or voucher codes:
# Retry-After says when it has surely passed (the window's length, in seconds).
_LOCKOUTS = frozenset({"too_many_lookups", "too_many_voucher_codes"})


def _shown(name: str, value: object) -> object:
    """A parameter as the problem tells it: points and minutes as integers, a state as the
    sale's status reads it, the rest (money included) as strings."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if name == "status":
        return _STATES.get(str(value), str(value))
    return str(value)


# A redemption request's status as the till reads the sale's (bot/api/sales.py SaleStatus).
_STATES = {"confirmed": "posted", "cancelled": "withdrawn"}


def transient(error: DomainError) -> bool:
    """A refusal not kept under the Idempotency-Key, so the retry runs again: one whose
    answer changes by itself (a 429 lockout that passes, a sale still pending), or a 422
    for the request's input (the retry may correct it)."""
    status = PROBLEMS.get(error.code, (500, ""))[0]
    return status in (422, 429) or (
        error.code == "request_closed" and error.params.get("status") == "pending"
    )


# What a sale posted under a taken document number differs in (ReceiptTaken's `differs`).
_DIFFERS = {
    "member": "for another member",
    "amount": "for another amount",
    "points": "with other points",
    "discount": "with another discount",
    "lines": "with other itemised lines",
}


def _detail(code: str, params: Mapping[str, str]) -> str | None:
    """The occurrence in a sentence, where a parameter makes it more precise."""
    if code == "receipt_taken" and "receipt" in params:
        what = _DIFFERS.get(params.get("differs", ""), "for another sale")
        return f"Document {params['receipt']} was already posted today at this partner {what}."
    if code == "discount_changed" and "discount_percent" in params:
        return (
            f"The member's discount is {params['discount_percent']} % now, not the one sent: "
            "charge that one (look the member up or quote again)."
        )
    if code == "amount_too_large" and "max" in params:
        return f"The largest purchase the program allows is {params['max']}."
    if code == "refund_too_large" and "max" in params:
        return f"At most {params['max']} of this sale is left to refund."
    if code == "too_many_lookups" and "minutes" in params:
        return (
            "Too many card numbers that name nobody; scan the member's card, or try again "
            f"in {params['minutes']} minutes."
        )
    if code == "request_closed" and "state" in params:
        return f"The sale is {params['state']}: read it for what it is now."
    if code == "not_staff" and "action" in params:
        return f"The API key's scopes do not allow {params['action']!r}."
    return None


# What every operation may answer besides its success, for the OpenAPI document.
_PROBLEM_SCHEMA = {"$ref": "#/components/schemas/Problem"}


# Codes any call may meet, and any POST besides (its Idempotency-Key and body).
COMMON = (
    "invalid_api_key",
    "api_key_revoked",
    "not_staff",
    "rate_limited",
    "invalid_request",
    "not_found",
    "method_not_allowed",
    "internal_error",
)
POST_CODES = (
    "idempotency_key_required",
    "idempotency_key_reused",
    "idempotency_in_flight",
    "payload_too_large",
    "unsupported_media_type",
)
CARD = ("unknown_member", "invalid_token", "card_expired", "invalid_card_number")


def responses(*statuses: int, codes: Sequence[str] = ()) -> dict[int | str, dict[str, Any]]:
    """OpenAPI responses for these problem statuses, plus those every call may get (a
    missing or revoked key, a missing scope, the rate limit, invalid input, a wrong method)
    and those of the operation's own `codes`; each status described by the operation's
    codes (and the common ones) that have it."""
    mine = {*COMMON, *codes}
    wanted = sorted({401, 403, 422, 429, 500, *statuses, *(PROBLEMS[c][0] for c in mine)})
    return {
        status: {
            "description": ", ".join(
                c for c, (s, _t) in sorted(PROBLEMS.items()) if s == status and c in mine
            )
            or "See the code",
            "content": {MEDIA_TYPE: {"schema": _PROBLEM_SCHEMA}},
        }
        for status in wanted
    }


async def run(endpoint: Endpoint, request: Request) -> tuple[Response, bool]:
    """The endpoint's answer, a domain error as its problem; and whether it is an answer to
    keep for a retry (not when the request was invalid: the retry may correct it; nor a
    transient refusal: the retry's answer may differ)."""
    try:
        return await endpoint(request), True
    except DomainError as error:
        return from_domain(error), not transient(error)
    except RequestValidationError as error:
        return invalid(error), False
    except HTTPException as error:
        return http_problem(error), False


def invalid(error: RequestValidationError) -> Response:
    """Request validation's errors: where, and what is wrong (never the value sent, which
    may be a card token). The code is the first field's own (bot/api/schemas.py) when it
    has one, else invalid_request."""
    found = error.errors()
    errors = [
        {"location": ".".join(str(part) for part in e.get("loc", ())), "message": e.get("msg")}
        for e in found
    ]
    codes = [e.get("type") for e in found if e.get("type") in PROBLEMS]
    first = errors[0] if errors else {"location": "", "message": "invalid"}
    return problem(
        codes[0] if codes else "invalid_request",
        f"{first['location']}: {first['message']}",
        extra={"errors": errors},
    )


_BY_STATUS = {
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def http_problem(error: HTTPException) -> Response:
    code = _BY_STATUS.get(error.status_code, "invalid_request")
    return problem(code, headers=error.headers)
