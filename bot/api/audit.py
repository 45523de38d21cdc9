"""Every API call on the audit log, with the key's id: the operation, the answer's status,
its problem code, the Idempotency-Key and whether the answer was a replay."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response

from bot.api.context import ApiContext
from bot.api.problems import MEDIA_TYPE
from db.usecases.api.actor import ApiActor
from db.usecases.api_keys import record_call


def details(
    request: Request, operation: str, response: Response, *, replayed: bool = False
) -> dict[str, Any]:
    code = None
    if response.headers.get("content-type", "").startswith(MEDIA_TYPE):
        code = json.loads(bytes(response.body)).get("code")
    return {
        "operation": operation,
        "status": response.status_code,
        "code": code,
        "idempotency_key": request.headers.get("idempotency-key"),
        "replayed": replayed or None,
    }


async def record(
    session: AsyncSession,
    ctx: ApiContext,
    key: ApiActor,
    request: Request,
    operation: str,
    response: Response,
    *,
    replayed: bool = False,
) -> None:
    await record_call(
        session,
        key_id=key.key_id,
        partner_id=key.partner_id,
        action="api_call",
        now=ctx.clock(),
        **details(request, operation, response, replayed=replayed),
    )
