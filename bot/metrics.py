"""Prometheus metrics, served at /metrics. Module-level by design: prometheus_client's
registry is process-wide, and a process runs one bot."""

from __future__ import annotations

import time
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import TelegramObject, Update
from prometheus_client import Counter, Histogram

from bot.middlewares import Handler

UPDATES = Counter("loyalty_updates_total", "Telegram updates handled", ["type"])
ERRORS = Counter("loyalty_update_errors_total", "Updates whose handling raised", ["type"])
LATENCY = Histogram(
    "loyalty_handler_seconds",
    "Time to handle one update, reply included",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
POSTINGS = Counter("loyalty_postings_total", "Ledger postings made through the bot", ["kind"])
DELIVERIES = Counter("loyalty_deliveries_total", "Messages the bot sent on its own", ["outcome"])
API_REQUESTS = Counter(
    "loyalty_api_requests_total", "Partner API calls answered", ["operation", "status"]
)
API_LATENCY = Histogram(
    "loyalty_api_seconds",
    "Time to answer one partner API call",
    ["operation"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


class MetricsMiddleware(BaseMiddleware):
    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        kind = event.event_type if isinstance(event, Update) else type(event).__name__
        started = time.perf_counter()
        try:
            return await handler(event, data)
        except Exception:
            ERRORS.labels(kind).inc()
            raise
        finally:
            UPDATES.labels(kind).inc()
            LATENCY.observe(time.perf_counter() - started)
