"""The partner API for tills and shop software: HTTPS JSON under /api/v1, served by the
bot's own HTTP server (bot/workers/web.py mounts it), OpenAPI 3.1 at /api/v1/openapi.json
and a docs page at /api/v1/docs. docs/integrator.md is the integrator's guide.

- app.py: build_api, the FastAPI app, and ROUTERS, one per resource;
- route.py: ApiRoute, what every operation goes through (key, rate limit,
  Idempotency-Key, problem details, audit);
- problems.py: RFC 9457 problem details, the one table from a domain error's code to its
  HTTP status;
- idempotency.py, ratelimit.py: the Idempotency-Key and the per-key rate;
- context.py: what an endpoint is given (ApiContext, the session, the key's actor);
- schemas.py: shapes several resources share (money, documents, cards);
- members.py, quotes.py, sales.py, refunds.py, vouchers.py, settlement.py: the resources
  (sales.py also serves a sale's reading, long-polled, its withdrawal and its finishing
  without points).

A new resource is a module here with `router = APIRouter(prefix=…, route_class=ApiRoute)`,
added to ROUTERS; its endpoints call use cases in db/usecases with the key's ApiActor
(db/usecases/api/actor.py), which db/rules/access.py's table authorises by its scopes."""
