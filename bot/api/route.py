"""ApiRoute: what every operation of the API goes through, in this order, so that no
endpoint can forget a step:

1. the key (`Authorization: Bearer cb_live_…`): unknown or wrong → 401 invalid_api_key,
   revoked → 401 api_key_revoked;
2. the key's rate limit (bot/api/ratelimit.py) → 429 with Retry-After;
3. for a POST, its Idempotency-Key (bot/api/idempotency.py): a replay, a conflict, or a claim;
4. the endpoint, in one database session, its domain errors turned into problem details
   (bot/api/problems.py);
5. the audit row of the call, with the key's id (and its last use).

The endpoint gets the session and the key's actor as dependencies (bot/api/context.py)."""

from __future__ import annotations

import json
import logging
import time

from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response

from bot.api import idempotency
from bot.api.context import ApiContext, context
from bot.api.problems import MEDIA_TYPE, Endpoint, problem, run
from bot.api.ratelimit import retry_after
from bot.metrics import API_LATENCY, API_REQUESTS
from db.usecases.api_keys import ApiActor, KeyRefused, authenticate, record_call

log = logging.getLogger(__name__)
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="City Bonus partner API"'}


def bearer(header: str | None) -> str | None:
    scheme, _, token = (header or "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


class ApiRoute(APIRoute):
    def get_route_handler(self) -> Endpoint:
        endpoint = super().get_route_handler()
        operation = f"{min(self.methods or {'GET'})} {self.path_format}"

        async def handle(request: Request) -> Response:
            started = time.perf_counter()
            ctx = context(request)
            async with ctx.sessions() as session:
                request.state.session = session
                try:
                    response = await _serve(request, ctx, session, endpoint, operation)
                except Exception:
                    log.exception("API %s failed", operation)
                    response = problem("internal_error")
            API_REQUESTS.labels(operation, str(response.status_code)).inc()
            API_LATENCY.labels(operation).observe(time.perf_counter() - started)
            return response

        return handle


async def _serve(
    request: Request, ctx: ApiContext, session: AsyncSession, endpoint: Endpoint, operation: str
) -> Response:
    presented = bearer(request.headers.get("authorization"))
    if presented is None:
        return problem("invalid_api_key", headers=_CHALLENGE)
    try:
        key = await authenticate(session, presented)
    except KeyRefused as refused:
        code = "api_key_revoked" if refused.revoked else "invalid_api_key"
        # Someone holds (or guesses at) a key of ours: on the record, within the key's rate.
        if refused.key_id is not None and not await ctx.limiter.take(refused.key_id):
            await record_call(
                session,
                key_id=refused.key_id,
                partner_id=None,
                action="api_key_refused",
                touch=False,
                now=ctx.clock(),
                operation=operation,
                code=code,
            )
        return problem(code, headers=_CHALLENGE)
    request.state.actor = key
    wait = await ctx.limiter.take(key.key_id)
    if wait:
        # Not audited: a flood would become as many writes; /metrics counts them.
        return problem("rate_limited", headers={"Retry-After": retry_after(wait)})
    replayed = False
    if request.method == "POST":
        response, replayed = await idempotency.once(request, ctx, session, key, endpoint)
    else:
        response, _answered = await run(endpoint, request)
    await _audit(session, ctx, key, request, operation, response, replayed)
    return response


async def _audit(
    session: AsyncSession,
    ctx: ApiContext,
    key: ApiActor,
    request: Request,
    operation: str,
    response: Response,
    replayed: bool,
) -> None:
    code = None
    if response.headers.get("content-type", "").startswith(MEDIA_TYPE):
        code = json.loads(bytes(response.body)).get("code")
    await record_call(
        session,
        key_id=key.key_id,
        partner_id=key.partner_id,
        action="api_call",
        now=ctx.clock(),
        operation=operation,
        status=response.status_code,
        code=code,
        idempotency_key=request.headers.get("idempotency-key"),
        replayed=replayed or None,
    )
