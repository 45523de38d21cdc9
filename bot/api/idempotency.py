"""`Idempotency-Key` on every POST (the IETF draft's semantics), the HTTP side of
db/usecases/api_idempotency.py: the key is scoped to the partner; the same key with the same
request replays the first answer (with `Idempotent-Replayed: true`); with another request
→ 422 idempotency_key_reused; while the first is still running → 409 idempotency_in_flight.

"The same request" is the same method, path and query, and body; a JSON body is compared
as JSON (key order and spacing do not count). The header is 1 to 255 visible ASCII
characters; the draft's quoted form (`"abc"`) is read as `abc`. What is kept is the answer
the endpoint gave, a refusal of the domain included (a 409 receipt_taken replays as such);
a request that was invalid or met a server error keeps nothing, and its retry runs."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response

from bot.api import audit
from bot.api.problems import Endpoint, problem, run
from db.usecases import api_idempotency as keys
from db.usecases.api.actor import ApiActor
from db.usecases.api_keys import call_details

if TYPE_CHECKING:
    from bot.api.context import ApiContext

HEADER = "Idempotency-Key"
MAX_BODY = 64 * 1024
_KEY = re.compile(r"[\x21-\x7e]{1,255}")
_KEPT_HEADERS = ("content-type", "location")
_JSON = re.compile(r"application/(?:json|[!#$&^_.+\-\w]+\+json)")


def read_key(header: str | None) -> str | None:
    if header is None:
        return None
    if len(header) >= 2 and header[0] == header[-1] == '"':
        header = header[1:-1]
    return header if _KEY.fullmatch(header) else None


def is_json(content_type: str | None) -> bool:
    """Whether a body sent as `content_type` is JSON: application/json or application/*+json,
    whatever its parameters (`; charset=utf-8`)."""
    media = (content_type or "").partition(";")[0].strip().lower()
    return _JSON.fullmatch(media) is not None


def canonical(body: bytes) -> bytes:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # not JSON, or nested past what Python reads
        return body
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


async def read_body(request: Request) -> bytes | None:
    """The request's body, None if it is over MAX_BODY (read no further). The endpoint
    reads it again from the request (Starlette keeps a body read in `_body`)."""
    length = request.headers.get("content-length", "")
    if length and (not length.isdigit() or int(length) > MAX_BODY):
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
    body = b"".join(chunks)
    request._body = body
    return body


async def once(
    request: Request,
    ctx: ApiContext,
    session: AsyncSession,
    key: ApiActor,
    endpoint: Endpoint,
    operation: str,
) -> Response:
    """The POST's answer, run at most once per Idempotency-Key, and its audit row."""
    idem = read_key(request.headers.get(HEADER))
    if idem is None:
        refused = problem(
            "idempotency_key_required",
            "Send an Idempotency-Key header of 1 to 255 visible ASCII characters, new for "
            "each operation and the same when you retry it.",
        )
        await audit.record(session, ctx, key, request, operation, refused)
        return refused
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    body = await read_body(request)
    if body is None:  # over the API's largest body: nothing to keep
        refused = problem("payload_too_large", f"A body is at most {MAX_BODY} bytes.")
        await audit.record(session, ctx, key, request, operation, refused)
        return refused
    if body and not is_json(request.headers.get("content-type")):
        refused = problem(
            "unsupported_media_type",
            "A body is JSON, sent with Content-Type: application/json.",
        )
        await audit.record(session, ctx, key, request, operation, refused)
        return refused
    fingerprint = keys.request_fingerprint("POST", target, canonical(body))
    claimed, stored = await keys.claim(
        session,
        partner_id=key.partner_id,
        key=idem,
        api_key_id=key.key_id,
        fingerprint=fingerprint,
        now=ctx.clock(),
    )
    if claimed is not keys.Claim.NEW:
        answer = _unclaimed(claimed, stored)
        replay = claimed is keys.Claim.REPLAY
        await audit.record(session, ctx, key, request, operation, answer, replayed=replay)
        return answer
    request.state.idempotency_key = idem
    try:
        response, keep = await run(endpoint, request)
    except BaseException:
        await keys.release(session, partner_id=key.partner_id, key=idem)
        raise
    await session.close()  # ends what the endpoint read: the answer is sent alone
    kept = None
    if keep and response.status_code < 500:
        headers = {h: response.headers[h] for h in _KEPT_HEADERS if h in response.headers}
        kept = keys.Stored(response.status_code, headers, bytes(response.body))
    await keys.finish(
        session,
        partner_id=key.partner_id,
        key=idem,
        stored=kept,
        api_key_id=key.key_id,
        now=ctx.clock(),
        details=call_details(**audit.details(request, operation, response)),
    )
    return response


def _unclaimed(claimed: keys.Claim, stored: keys.Stored | None) -> Response:
    if claimed is keys.Claim.REPLAY:
        assert stored is not None
        headers = {**stored.headers, "Idempotent-Replayed": "true"}
        return Response(stored.body, status_code=stored.status, headers=headers)
    if claimed is keys.Claim.OTHER_REQUEST:
        return problem("idempotency_key_reused")
    return problem("idempotency_in_flight", headers={"Retry-After": "1"})
