"""Middlewares: what runs around every handler (database session, identity, locale, flood
control, refusals at the door). Each wraps `Handler`: the next middleware or the handler."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiogram.types import TelegramObject

Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]
