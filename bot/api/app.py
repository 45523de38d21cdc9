"""build_api: the partner API as an ASGI app (FastAPI), which bot/workers/web.py mounts at
/api/v1 on the bot's own HTTP server. One module per resource, each with its APIRouter
whose route_class is ApiRoute (bot/api/route.py: key, rate limit, Idempotency-Key, problem
details and audit for every operation); ROUTERS lists them."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from bot.api import members, quotes, refunds, sales, settlement, vouchers
from bot.api.context import ApiContext
from bot.api.problems import Problem, http_problem, invalid

ROOT = "/api/v1"
ROUTERS = (
    members.router,
    quotes.router,
    sales.router,
    refunds.router,
    vouchers.router,
    settlement.router,
)

DESCRIPTION = """\
The City Bonus partner API, for tills and shop software: look a member up by their card,
quote a sale, post a sale (earning points; paying with points the member confirms in
Telegram, answered 202 and read at its URL, long-polled with `?wait=`; or without a member
card, for your figures), withdraw or finish a pending one, claim a voucher, refund a sale
by its document number, read a sale, read your settlement.

* **Keys.** Send `Authorization: Bearer cb_live_…`. Your manager makes a key in the bot
  (`/api_key`), with the scopes `sales` (quote, post, withdraw and refund sales, claim
  vouchers) and/or `read` (members, sales, settlement); it is shown once. Each key has a
  rate limit (429 with `Retry-After`).
* **Idempotency.** Every POST needs an `Idempotency-Key` header, new for each operation
  and the same when you retry it: the same key and request answer as the first time did;
  the same key with another request is refused (422); while the first is still running,
  409. Keys are kept at least 7 days. A sale's document number is unique at your partner
  per business day, too.
* **Errors** are RFC 9457 problem details (`application/problem+json`) with a stable `code`.
* Money is a decimal string (`"12.50"`), points an integer, times RFC 3339 in UTC.
"""


def build_api(context: ApiContext) -> FastAPI:
    api = FastAPI(
        title="City Bonus partner API",
        version="1.0.0",
        description=DESCRIPTION,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    api.state.context = context
    for router in ROUTERS:
        api.include_router(router)

    # Requests that reach no operation (an unknown path, a wrong method) answer in kind.
    async def not_handled(_request: Request, error: Exception) -> Response:
        assert isinstance(error, HTTPException)
        return http_problem(error)

    async def not_valid(_request: Request, error: Exception) -> Response:
        assert isinstance(error, RequestValidationError)
        return invalid(error)

    api.add_exception_handler(HTTPException, not_handled)
    api.add_exception_handler(RequestValidationError, not_valid)
    api.openapi = lambda: _openapi(api)  # type: ignore[method-assign]
    return api


def _openapi(api: FastAPI) -> dict[str, Any]:
    """FastAPI's document, with the key as a bearer scheme on every operation, the
    Idempotency-Key header on every POST, and the Problem schema."""
    if api.openapi_schema:
        return api.openapi_schema
    from fastapi.openapi.utils import get_openapi

    schema = get_openapi(
        title=api.title,
        version=api.version,
        description=api.description,
        routes=api.routes,
        servers=[{"url": ROOT}],
    )
    components = schema.setdefault("components", {})
    components.setdefault("schemas", {})["Problem"] = Problem.model_json_schema(
        ref_template="#/components/schemas/{model}"
    )
    components["securitySchemes"] = {
        "apiKey": {
            "type": "http",
            "scheme": "bearer",
            "description": "A partner's API key: cb_live_ and 48 letters and digits",
        }
    }
    schema["security"] = [{"apiKey": []}]
    for path in schema["paths"].values():
        post = path.get("post")
        if post is not None:
            post.setdefault("parameters", []).append(
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": True,
                    "description": "New for each operation, the same when it is retried: "
                    "1 to 255 visible ASCII characters",
                    "schema": {"type": "string", "pattern": r"^[\x21-\x7e]{1,255}$"},
                }
            )
    api.openapi_schema = schema
    return schema
