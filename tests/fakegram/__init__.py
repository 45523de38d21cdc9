"""Fake Telegram Bot API for running the real aiogram bot in end-to-end tests.

Typical use::

    async with FakeTelegramServer() as server:
        bot = Bot("42:TEST", session=AiohttpSession(
            api=TelegramAPIServer.from_base(server.base_url)))
        user = UserClient(server, 1001, first_name="Ann")
        await user.send("/start")
        reply = await user.wait_message()
"""

from .client import UserClient, command_entities, inline_buttons, make_png, text_of
from .payments import Charge, Invoice, PaymentOutcome, Subscription
from .server import (
    BLOCKED_DESCRIPTION,
    ApiError,
    FakeTelegramServer,
    FormattingError,
    RecordedRequest,
    StoredFile,
    TokenBucket,
    UploadedFile,
    image_size,
    render_text,
    update_type,
    utf16_len,
)

__all__ = [
    "BLOCKED_DESCRIPTION",
    "ApiError",
    "Charge",
    "FakeTelegramServer",
    "FormattingError",
    "Invoice",
    "PaymentOutcome",
    "RecordedRequest",
    "StoredFile",
    "Subscription",
    "TokenBucket",
    "UploadedFile",
    "UserClient",
    "command_entities",
    "image_size",
    "inline_buttons",
    "make_png",
    "render_text",
    "text_of",
    "update_type",
    "utf16_len",
]
