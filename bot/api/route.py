"""ApiRoute: what every operation of the API goes through, in this order, so that no
endpoint can forget a step:

1. the key (`Authorization: Bearer cb_live_…`): unknown or wrong → 401 invalid_api_key,
   revoked → 401 api_key_revoked;
2. the key's rate limit (bot/api/ratelimit.py) → 429 with Retry-After;
3. for a POST, its Idempotency-Key (bot/api/idempotency.py): a replay, a conflict, or a claim;
4. the endpoint, in one database session, its domain errors turned into problem details
   (bot/api/problems.py);
5. the audit row of the call, with the key's id (and its last use); for a POST, written with
   its kept answer in one statement.

The bookkeeping around the endpoint (the key, the claim, the answer and the audit row) is
three statements each sent alone (db/engine.py fetch_row_alone): no transaction to begin
or end, and little Python per request.

The endpoint gets the session and the key's actor as dependencies (bot/api/context.py)."""

from __future__ import annotations

import logging
import time

from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response

from bot.api import audit, idempotency
from bot.api.context import ApiContext
from bot.api.problems import Endpoint, problem, run
from bot.api.ratelimit import retry_after
from bot.metrics import API_LATENCY, API_REQUESTS
from db.usecases.api_keys import KeyRefused, authenticate, record_call

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
            ctx: ApiContext = request.app.state.context
            async with ctx.sessions() as session:
                session.info["after_commit"] = ctx.after_commit
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
        # (A bucket apart from the key's own: refusals never use up the key holder's rate.)
        if refused.key_id is not None and not await ctx.limiter.take(-refused.key_id):
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
    if request.method == "POST":
        return await idempotency.once(request, ctx, session, key, endpoint, operation)
    response, _kept = await run(endpoint, request)
    await session.close()  # ends what the endpoint read: the call's row is sent alone
    await audit.record(session, ctx, key, request, operation, response)
    return response
