"""A fake Telegram Bot API server for end-to-end tests.

The real aiogram bot talks to this server over HTTP on 127.0.0.1 exactly as it would talk
to api.telegram.org, so the tests exercise aiogram's request building, response parsing and
error mapping rather than a mocked ``Bot``.  The server keeps everything the bot did
(requests, messages per chat with edits applied, uploaded files, callback answers) and lets
tests inject updates and faults (429 flood waits, 403 blocked users, 5xx, slow responses).

Only the behaviour a bot can observe is modelled, but that behaviour follows the real Bot API
closely, including its error texts, because aiogram maps those to exception classes and the
bot under test is expected to react to them.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import html
import inspect
import json
import math
import mimetypes
import re
import struct
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Self, TypeVar

from aiogram.client.telegram import TelegramAPIServer
from aiohttp import web

if TYPE_CHECKING:
    from .payments import Charge, PaymentOutcome

JSON = dict[str, Any]
Handler = Callable[["RecordedRequest"], Any]

MAX_TEXT_LENGTH = 4096
MAX_CAPTION_LENGTH = 1024
MAX_CALLBACK_DATA_BYTES = 64

# Update types Telegram leaves out when ``allowed_updates`` is empty or was never set.
NOT_DELIVERED_BY_DEFAULT = frozenset({"chat_member", "message_reaction", "message_reaction_count"})

# Fields that are free text or file references; everything else aiogram sends is JSON-encoded
# (numbers, booleans, nested objects), so it is decoded to give tests typed ``params``.
# fmt: off
TEXT_FIELDS = frozenset({
    "text", "caption", "parse_mode", "callback_query_id", "inline_message_id", "url",
    "secret_token", "language_code", "name", "description", "short_description", "title",
    "action", "photo", "document", "video", "audio", "voice", "animation", "sticker",
    "video_note", "thumbnail", "file_id", "business_connection_id", "message_effect_id",
    "emoji", "first_name", "last_name", "phone_number", "address", "question", "explanation",
    "payload", "currency", "provider_token", "start_parameter", "ip_address", "certificate",
    "custom_emoji_id", "game_short_name", "vcard", "pre_checkout_query_id", "error_message",
    "telegram_payment_charge_id", "provider_data", "photo_url",
})
# fmt: on

BLOCKED_DESCRIPTION = "Forbidden: bot was blocked by the user"
NOT_MODIFIED_DESCRIPTION = (
    "Bad Request: message is not modified: specified new message content and reply markup "
    "are exactly the same as a current content and reply markup of the message"
)
_DEFAULT_DESCRIPTIONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: BLOCKED_DESCRIPTION,
    404: "Not Found",
    409: "Conflict: terminated by other getUpdates request",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


# --------------------------------------------------------------------------- errors


class ApiError(Exception):
    """An error answer of the Bot API; raised by method handlers, sent as JSON."""

    def __init__(self, code: int, description: str, parameters: JSON | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.parameters = parameters

    def payload(self) -> JSON:
        """The body Telegram sends for this error (aiogram reads ``parameters``)."""
        body: JSON = {"ok": False, "error_code": self.code, "description": self.description}
        if self.parameters:
            body["parameters"] = dict(self.parameters)
        return body


def bad_request(reason: str) -> ApiError:
    """A 400 answer; aiogram turns it into ``TelegramBadRequest``."""
    return ApiError(400, f"Bad Request: {reason}")


def default_description(code: int, retry_after: int | None = None) -> str:
    """The description Telegram uses for ``code``, so injected faults look real."""
    if code == 429:
        return f"Too Many Requests: retry after {retry_after}"
    return _DEFAULT_DESCRIPTIONS.get(code, f"Error {code}")


class FormattingError(ValueError):
    """Text that Telegram would refuse with "can't parse entities"."""


# --------------------------------------------------------------------------- text formatting


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, the unit of Telegram entity offsets."""
    return len(text.encode("utf-16-le")) // 2


def render_text(
    text: str, parse_mode: str | None, entities: list[JSON] | None
) -> tuple[str, list[JSON]]:
    """Turn the text the bot sent into what Telegram stores: plain text plus entities.

    Telegram strips markup, so a test that checks ``"Balance: 10"`` must pass even when the
    bot sent ``"<b>Balance</b>: 10"``; and markup errors (an unescaped ``<`` in a user's name)
    must fail here as they would in production.
    """
    if entities is not None:
        return text, list(entities)
    mode = (parse_mode or "").lower()
    if mode == "html":
        return _HtmlParser(text).parse()
    if mode in ("markdownv2", "markdown"):
        return _MarkdownParser(text, v2=mode == "markdownv2").parse(), []
    if mode:
        raise bad_request(f"unsupported parse_mode {parse_mode!r}")
    return text, []


_HTML_TAGS = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "span": "spoiler",
    "tg-spoiler": "spoiler",
    "a": "text_link",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
}
_TAG_RE = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9-]*)([^<>]*)>")
_ATTR_RE = re.compile(r"""([a-zA-Z-]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+)))?""")
_CHAR_REF_RE = re.compile(r"&(#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[a-zA-Z][a-zA-Z0-9]{1,31});")
_HTML_SPECIAL_RE = re.compile(r"[<&]")


@dataclass
class _OpenTag:
    name: str
    entity: JSON | None  # None: a <code> inside <pre> that only sets the language
    start: int


class _HtmlParser:
    """Telegram's HTML subset: strict about tags, lenient about bare ``&``."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.pieces: list[str] = []
        self.length = 0
        self.stack: list[_OpenTag] = []
        self.entities: list[JSON] = []

    def parse(self) -> tuple[str, list[JSON]]:
        pos = 0
        while pos < len(self.source):
            char = self.source[pos]
            if char == "<":
                pos = self._tag(pos)
            elif char == "&":
                pos = self._char_ref(pos)
            else:
                special = _HTML_SPECIAL_RE.search(self.source, pos)
                end = special.start() if special else len(self.source)
                self._emit(self.source[pos:end])
                pos = end
        if self.stack:
            raise FormattingError(
                f'Can\'t find end tag corresponding to start tag "{self.stack[-1].name}"'
            )
        self.entities.sort(key=lambda entity: (entity["offset"], -entity["length"]))
        return "".join(self.pieces), self.entities

    def _byte_offset(self, pos: int) -> int:
        return len(self.source[:pos].encode())

    def _emit(self, text: str) -> None:
        self.pieces.append(text)
        self.length += utf16_len(text)

    def _char_ref(self, pos: int) -> int:
        match = _CHAR_REF_RE.match(self.source, pos)
        if match is None:
            self._emit("&")
            return pos + 1
        self._emit(html.unescape(match.group(0)))
        return match.end()

    def _tag(self, pos: int) -> int:
        match = _TAG_RE.match(self.source, pos)
        if match is None:
            raise FormattingError(f"Unsupported start tag at byte offset {self._byte_offset(pos)}")
        closing, name, attributes = match.group(1) == "/", match.group(2).lower(), match.group(3)
        if closing:
            self._close(name, pos)
        else:
            self._open(name, dict(self._attributes(attributes)), pos)
        return match.end()

    @staticmethod
    def _attributes(text: str) -> Iterable[tuple[str, str]]:
        for match in _ATTR_RE.finditer(text):
            value = next((group for group in match.groups()[1:] if group is not None), "")
            yield match.group(1).lower(), html.unescape(value)

    def _open(self, name: str, attributes: dict[str, str], pos: int) -> None:
        entity_type = _HTML_TAGS.get(name)
        if entity_type is None or (name == "span" and attributes.get("class") != "tg-spoiler"):
            raise FormattingError(
                f'Unsupported start tag "{name}" at byte offset {self._byte_offset(pos)}'
            )
        language = attributes.get("class", "")
        if name == "code" and self.stack and self.stack[-1].name == "pre" and language:
            pre_entity = self.stack[-1].entity
            if pre_entity is not None:
                pre_entity["language"] = language.removeprefix("language-")
            self.stack.append(_OpenTag(name, None, self.length))
            return
        entity: JSON = {"type": entity_type}
        if name == "a":
            if not attributes.get("href"):
                raise FormattingError(f"Empty href in <a> at byte offset {self._byte_offset(pos)}")
            entity["url"] = attributes["href"]
        elif name == "blockquote" and "expandable" in attributes:
            entity["type"] = "expandable_blockquote"
        elif name == "tg-emoji":
            entity["custom_emoji_id"] = attributes.get("emoji-id", "")
        self.stack.append(_OpenTag(name, entity, self.length))

    def _close(self, name: str, pos: int) -> None:
        if not self.stack or self.stack[-1].name != name:
            expected = f"</{self.stack[-1].name}>" if self.stack else "no end tag"
            raise FormattingError(
                f"Unmatched end tag at byte offset {self._byte_offset(pos)}, "
                f'expected "{expected}", found "</{name}>"'
            )
        tag = self.stack.pop()
        length = self.length - tag.start
        if tag.entity is not None and length > 0:
            self.entities.append({**tag.entity, "offset": tag.start, "length": length})


class _MarkdownParser:
    """Strips Markdown/MarkdownV2 markup and enforces MarkdownV2's escaping rules.

    Entities are not produced for Markdown (HTML is what the project uses); the point is
    that tests see the plain text a user sees, and that unescaped reserved characters fail
    the way they do in production.
    """

    RESERVED_V2 = "()>#+-={}.!|"

    def __init__(self, source: str, *, v2: bool) -> None:
        self.source = source
        self.v2 = v2
        self.out: list[str] = []
        self.open_markers: dict[str, int] = {}

    def parse(self) -> str:
        pos = 0
        while pos < len(self.source):
            pos = self._step(pos)
        if self.open_markers:
            marker, start = next(iter(self.open_markers.items()))
            raise FormattingError(
                f"Can't find end of the entity {marker!r} starting at byte offset "
                f"{self._byte_offset(start)}"
            )
        return "".join(self.out)

    def _byte_offset(self, pos: int) -> int:
        return len(self.source[:pos].encode())

    def _step(self, pos: int) -> int:
        source, char = self.source, self.source[pos]
        if char == "\\" and (self.v2 or source[pos + 1 : pos + 2] in ("_", "*", "`", "[")):
            if pos + 1 >= len(source):
                raise FormattingError("Trailing backslash")
            self.out.append(source[pos + 1])
            return pos + 2
        if char == "`":
            return self._code(pos)
        if char == "[":
            self.open_markers.setdefault("[", pos)
            return pos + 1
        if char == "]" and "[" in self.open_markers:
            return self._link_end(pos)
        marker = self._marker_at(pos)
        if marker:
            if marker in self.open_markers:
                del self.open_markers[marker]
            else:
                self.open_markers[marker] = pos
            return pos + len(marker)
        if self.v2 and char == ">" and (pos == 0 or source[pos - 1] == "\n"):
            return pos + 1  # blockquote line prefix
        if self.v2 and (char in self.RESERVED_V2 or char == "]"):
            raise FormattingError(
                f"Character '{char}' is reserved and must be escaped with the preceding '\\'"
            )
        self.out.append(char)
        return pos + 1

    def _marker_at(self, pos: int) -> str:
        if not self.v2:
            return self.source[pos] if self.source[pos] in "*_" else ""
        for marker in ("||", "__", "*", "_", "~"):
            if self.source.startswith(marker, pos):
                return marker
        return ""

    def _code(self, pos: int) -> int:
        fence = "```" if self.source.startswith("```", pos) else "`"
        end = self._find_unescaped(fence, pos + len(fence))
        if end < 0:
            raise FormattingError(
                f"Can't find end of the entity starting at byte offset {self._byte_offset(pos)}"
            )
        body = self.source[pos + len(fence) : end]
        if fence == "```" and "\n" in body and " " not in body.split("\n", 1)[0]:
            body = body.split("\n", 1)[1]  # the first line names the language
        if self.v2:
            body = re.sub(r"\\([\\`])", r"\1", body)
        self.out.append(body)
        return end + len(fence)

    def _find_unescaped(self, needle: str, pos: int) -> int:
        """Index of ``needle`` at or after ``pos`` that no backslash escapes, or -1."""
        while pos < len(self.source):
            if self.v2 and self.source[pos] == "\\":
                pos += 2
            elif self.source.startswith(needle, pos):
                return pos
            else:
                pos += 1
        return -1

    def _link_end(self, pos: int) -> int:
        del self.open_markers["["]
        if not self.source.startswith("(", pos + 1):
            if self.v2:
                raise FormattingError("Character ']' is reserved and must be escaped")
            return pos + 1
        end = self._find_unescaped(")", pos + 2)
        if end < 0:
            raise FormattingError("Can't find end of a URL")
        return end + 1


# --------------------------------------------------------------------------- images


def image_size(data: bytes) -> tuple[int, int] | None:
    """Width and height of a PNG, GIF or JPEG image, or None for anything else."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return width, height
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        width, height = struct.unpack("<HH", data[6:10])
        return width, height
    if data.startswith(b"\xff\xd8"):
        return _jpeg_size(data)
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    pos = 2
    while pos + 9 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return width, height
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        pos += 2 + length
    return None


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class UploadedFile:
    """One multipart file part exactly as the bot uploaded it."""

    field: str
    filename: str
    content_type: str
    data: bytes


@dataclass
class RecordedRequest:
    """One Bot API call, kept in arrival order so tests can assert on what the bot did.

    ``status`` and ``response`` are filled in when the answer is sent (``status`` is 0 while
    the call is still in flight, e.g. a long poll).
    """

    method: str
    params: dict[str, Any]
    files: dict[str, UploadedFile]
    chat_id: int | str | None
    token: str
    status: int = 0
    response: JSON | None = None
    at: float = field(default_factory=time.time)  # when it arrived (seconds since the epoch)

    @property
    def ok(self) -> bool:
        return self.status == 200

    def is_method(self, method: str) -> bool:
        """Bot API method names are case-insensitive."""
        return self.method.lower() == method.lower()


@dataclass
class StoredFile:
    """A file the server can hand out through getFile and the file download route."""

    file_id: str
    file_unique_id: str
    file_path: str
    data: bytes
    file_name: str | None = None
    mime_type: str | None = None

    def as_file(self) -> JSON:
        """The Bot API ``File`` object."""
        return {
            "file_id": self.file_id,
            "file_unique_id": self.file_unique_id,
            "file_size": len(self.data),
            "file_path": self.file_path,
        }


@dataclass
class _Rule:
    method: str  # lower-case method name or "*"
    remaining: int | None  # None: until cleared
    chat_id: int | None = None  # None: any chat

    def matches(self, method: str, chat_id: Any = None) -> bool:
        return self.method in ("*", method) and self.chat_id in (None, chat_id)


@dataclass
class _FaultRule(_Rule):
    error: ApiError = field(default_factory=lambda: ApiError(500, "Internal Server Error"))


@dataclass
class _DelayRule(_Rule):
    seconds: float = 0.0


_R = TypeVar("_R", bound=_Rule)
_T = TypeVar("_T")


class TokenBucket:
    """Classic token bucket: ``capacity`` sends at once, refilled at ``rate`` per second."""

    def __init__(self, rate: float, capacity: float, clock: Callable[[], float]) -> None:
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity
        self.clock = clock
        self.updated = clock()

    def acquire(self) -> float:
        """Take a token; return 0 on success, else the seconds until one is available."""
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


def _decode_field(key: str, raw: str) -> Any:
    """aiogram JSON-encodes every non-text value; decode it so params are typed."""
    if key in TEXT_FIELDS:
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _bot_id_from_token(token: str) -> int | None:
    prefix = token.split(":", 1)[0]
    return int(prefix) if prefix.isdigit() else None


def update_type(update: JSON) -> str:
    """The payload key of an update (``message``, ``callback_query``, ...)."""
    return next((key for key in update if key != "update_id"), "")


def _sends_message(method: str) -> bool:
    """Methods a blocked user makes fail with 403 (lower-case names)."""
    return method.startswith(("send", "edit", "copymessage", "forwardmessage"))


def _counts_against_rate_limit(method: str) -> bool:
    return method.startswith(("send", "copymessage", "forwardmessage")) and (
        method != "sendchataction"
    )


# --------------------------------------------------------------------------- the server


class FakeTelegramServer:
    """A Bot API server on 127.0.0.1 that records and answers what an aiogram bot sends.

    Use ``async with FakeTelegramServer() as server`` (or ``await server.start()`` /
    ``await server.stop()``) and point aiogram at it with
    ``TelegramAPIServer.from_base(server.base_url)``.  All state lives on the instance, so
    several servers can run side by side.
    """

    def __init__(
        self,
        *,
        bot_username: str = "fake_test_bot",
        bot_first_name: str = "Fake Bot",
        bot_id: int = 42,
        token: str | None = None,
        strict_chats: bool = False,
        validate_images: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Create a stopped server.

        :param bot_id: the bot's user id until a request arrives; from then on the id in
            the latest request's token is used, as aiogram derives ``Bot.id`` from it.
        :param token: if set, requests with any other token get 401 Unauthorized.
        :param strict_chats: answer 400 "chat not found" for chats no client registered,
            instead of inventing a private chat for them.
        :param validate_images: refuse sendPhoto bytes that are not PNG/JPEG/GIF with
            IMAGE_PROCESS_FAILED, as Telegram does.
        :param clock: source of message dates (seconds since the epoch).
        """
        self.bot_username = bot_username
        self.bot_first_name = bot_first_name
        self.bot_id = bot_id
        self.token = token
        self.strict_chats = strict_chats
        self.validate_images = validate_images
        self.clock = clock
        self.base_url = ""

        self.requests: list[RecordedRequest] = []
        self.unknown_requests: list[RecordedRequest] = []
        self.pushed_updates: list[JSON] = []
        self.dropped_updates: list[JSON] = []
        self.callback_answers: dict[str, JSON] = {}
        self.downloads: list[str] = []
        self.webhook: JSON = {}
        self.rate_limited_count = 0
        self.internal_errors: list[Exception] = []
        # Seeded fault injection and observation for soaks (benchmarks/chaos): `fault` is
        # asked before each call is handled and may wait (a slow answer) or return an error
        # to answer with; each of `observers` is called with every call once answered. None
        # and empty: the server behaves as without them.
        self.fault: Callable[[RecordedRequest], Awaitable[ApiError | None]] | None = None
        self.observers: list[Callable[[RecordedRequest], None]] = []

        self._pending_updates: list[JSON] = []
        self._next_update_id = 1
        self._allowed_updates: list[str] = []
        self._poll_generation = 0
        self._chats: dict[int | str, JSON] = {}
        self._messages: dict[tuple[int, int], JSON] = {}
        self._order: dict[int, list[int]] = {}
        self._next_message_id: dict[int, int] = {}
        self._deleted: set[tuple[int, int]] = set()
        self._next_media_group = 1
        self._files: dict[str, StoredFile] = {}
        self._files_by_path: dict[str, StoredFile] = {}
        self._blocked: set[int | str] = set()
        self._commands: dict[tuple[str, str], list[JSON]] = {}
        self._bot_texts: dict[tuple[str, str], str] = {}
        self._menu_buttons: dict[int | None, JSON] = {}
        self._reply_keyboards: dict[int, JSON] = {}
        self._open_callback_queries: set[str] = set()
        self._next_callback_id = 1
        self._faults: list[_FaultRule] = []
        self._delays: list[_DelayRule] = []
        self._bucket: TokenBucket | None = None
        self._changed = asyncio.Event()
        self._closing = False
        self._runner: web.AppRunner | None = None
        # Invoices, pre-checkout queries, charges and Stars subscriptions (payments.py,
        # which builds on this module: imported here, once both are loaded).
        from .payments import FakePayments

        self.payments = FakePayments(self)
        self._methods = self._method_table()

    # ----------------------------------------------------------------- lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Listen (by default on an ephemeral port of 127.0.0.1) and set ``base_url``."""
        if self._runner is not None:
            raise RuntimeError("server already started")
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/file/bot{token}/{path:.+}", self._handle_file)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_api)
        # handler_cancellation: a long poll whose client went away must not linger.
        runner = web.AppRunner(
            app,
            handle_signals=False,
            access_log=None,
            handler_cancellation=True,
            shutdown_timeout=1.0,
        )
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        host, port = runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}"
        self._closing = False
        self._runner = runner

    async def stop(self) -> None:
        """Release pending long polls at once, then close the listener."""
        if self._runner is None:
            return
        self._closing = True
        self._notify()
        runner, self._runner = self._runner, None
        await runner.cleanup()

    @property
    def api(self) -> TelegramAPIServer:
        """aiogram's URL patterns for this server, for ``AiohttpSession(api=server.api)``."""
        if not self.base_url:
            raise RuntimeError("start the server first")
        return TelegramAPIServer.from_base(self.base_url)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # ----------------------------------------------------------------- waiting

    def _notify(self) -> None:
        """Wake every waiter; each re-checks its own condition."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for(
        self,
        predicate: Callable[[], _T | None],
        timeout: float = 5.0,  # noqa: ASYNC109 - a per-call deadline is the point here
        what: str = "",
    ) -> _T:
        """Wait until ``predicate()`` is truthy (re-checked after every server event).

        Returns the predicate's value; raises ``TimeoutError`` listing the latest requests,
        which is usually what one needs to see why a bot did not do what was expected.
        """
        try:
            async with asyncio.timeout(timeout):
                while True:
                    result = predicate()
                    if result:
                        return result
                    await self._changed.wait()
        except TimeoutError:
            raise TimeoutError(
                f"timed out after {timeout}s waiting for {what or predicate!r}; "
                f"latest requests: {self.describe_requests()}"
            ) from None

    async def wait_request(
        self,
        method: str,
        predicate: Callable[[RecordedRequest], bool] | None = None,
        *,
        after: int = 0,
        timeout: float = 5.0,  # noqa: ASYNC109 - a per-call deadline is the point here
    ) -> RecordedRequest:
        """The first answered request to ``method`` at index >= ``after`` matching predicate."""

        def find() -> RecordedRequest | None:
            for record in self.requests[after:]:
                if (
                    record.is_method(method)
                    and record.status
                    and (predicate is None or predicate(record))
                ):
                    return record
            return None

        return await self.wait_for(find, timeout, what=f"a {method} request")

    def describe_requests(self, last: int = 10) -> str:
        """A short human-readable log tail for assertion messages."""
        lines = [
            f"{record.method}({record.chat_id}) -> {record.status}"
            for record in self.requests[-last:]
        ]
        return "; ".join(lines) or "none"

    def calls(self, method: str) -> list[RecordedRequest]:
        """Recorded requests to ``method`` (case-insensitive), in order."""
        return [record for record in self.requests if record.is_method(method)]

    # ----------------------------------------------------------------- faults

    def fail_next(
        self,
        method: str,
        code: int = 429,
        retry_after: int | None = None,
        count: int | None = 1,
        description: str | None = None,
        chat_id: int | None = None,
    ) -> None:
        """Answer the next ``count`` calls of ``method`` ("*" = any) with an error; with
        ``chat_id``, only calls addressed to that chat.

        429 always carries ``parameters.retry_after`` (default 1), which is what makes aiogram
        raise ``TelegramRetryAfter``; ``count=None`` keeps failing until ``clear_faults()``.
        """
        if code == 429 and retry_after is None:
            retry_after = 1
        parameters = {"retry_after": retry_after} if retry_after is not None else None
        error = ApiError(code, description or default_description(code, retry_after), parameters)
        self._faults.append(_FaultRule(method.lower(), count, chat_id, error))

    def delay(
        self, method: str, seconds: float, *, count: int | None = None, chat_id: int | None = None
    ) -> None:
        """Hold answers to ``method`` ("*" = any; with ``chat_id``, only to that chat) for
        ``seconds`` before handling them."""
        self._delays.append(_DelayRule(method.lower(), count, chat_id, seconds))

    def clear_faults(self) -> None:
        """Drop injected failures, delays and the rate limit."""
        self._faults.clear()
        self._delays.clear()
        self._bucket = None

    def rate_limit(self, per_second: float | None, *, burst: int | None = None) -> None:
        """Answer sends over ``per_second`` (token bucket of ``burst``) with 429.

        ``None`` switches the limit off.  Refusals are counted in ``rate_limited_count``.
        """
        if per_second is None:
            self._bucket = None
            return
        capacity = burst if burst is not None else max(1, int(per_second))
        self._bucket = TokenBucket(per_second, capacity, time.monotonic)

    def block(self, chat_id: int) -> None:
        """Every send to ``chat_id`` now fails with 403 "bot was blocked by the user"."""
        self._blocked.add(chat_id)
        self._notify()

    def unblock(self, chat_id: int) -> None:
        self._blocked.discard(chat_id)
        self._notify()

    def is_blocked(self, chat_id: int) -> bool:
        return chat_id in self._blocked

    @staticmethod
    def _take_rule(rules: list[_R], method: str, chat_id: Any = None) -> _R | None:
        """The first rule for ``method`` (and chat), used up once (removed when exhausted)."""
        for rule in rules:
            if rule.matches(method, chat_id):
                if rule.remaining is not None:
                    rule.remaining -= 1
                    if rule.remaining <= 0:
                        rules.remove(rule)
                return rule
        return None

    # ----------------------------------------------------------------- state for tests

    def bot_user(self, token: str | None = None) -> JSON:
        """The bot as a ``User``; its id follows the token, like aiogram's ``Bot.id``."""
        bot_id = (_bot_id_from_token(token) if token else None) or self.bot_id
        return {
            "id": bot_id,
            "is_bot": True,
            "first_name": self.bot_first_name,
            "username": self.bot_username,
        }

    def register_chat(self, chat: JSON) -> None:
        """Make a chat known (clients register their private chat)."""
        self._chats[chat["id"]] = dict(chat)

    def chat(self, chat_id: int, *, include_deleted: bool = False) -> list[JSON]:
        """Messages the bot sent to ``chat_id``, oldest first, as they look now (edited)."""
        return [
            message
            for message in self.history(chat_id, include_deleted=include_deleted)
            if message.get("from", {}).get("is_bot")
        ]

    def history(self, chat_id: int, *, include_deleted: bool = False) -> list[JSON]:
        """Every message in the chat, the user's and the bot's, oldest first."""
        return [
            copy.deepcopy(self._messages[(chat_id, message_id)])
            for message_id in self._order.get(chat_id, [])
            if include_deleted or (chat_id, message_id) not in self._deleted
        ]

    def message(self, chat_id: int, message_id: int) -> JSON | None:
        """The current version of one message, or None."""
        stored = self._messages.get((chat_id, message_id))
        return copy.deepcopy(stored) if stored is not None else None

    def is_deleted(self, chat_id: int, message_id: int) -> bool:
        return (chat_id, message_id) in self._deleted

    def reply_keyboard(self, chat_id: int) -> JSON | None:
        """The reply keyboard the user currently sees (reply keyboards are not in Message)."""
        keyboard = self._reply_keyboards.get(chat_id)
        return copy.deepcopy(keyboard) if keyboard is not None else None

    def commands(self, language_code: str = "", scope: JSON | None = None) -> list[JSON]:
        """Commands stored by setMyCommands for this scope and language."""
        return copy.deepcopy(self._commands.get(self._commands_key(scope, language_code), []))

    def menu_button(self, chat_id: int | None = None) -> JSON:
        return dict(self._menu_buttons.get(chat_id, {"type": "default"}))

    def file(self, file_id: str) -> StoredFile | None:
        return self._files.get(file_id)

    # ----------------------------------------------------------------- updates

    def push_update(self, update: JSON) -> JSON:
        """Queue an update for getUpdates, assigning the next ``update_id``."""
        stored = copy.deepcopy(update)
        stored["update_id"] = self._next_update_id
        self._next_update_id += 1
        self._pending_updates.append(stored)
        self.pushed_updates.append(stored)
        self._notify()
        return copy.deepcopy(stored)

    def redeliver(self, update: JSON) -> JSON:
        """Deliver an update again, as Telegram does when the bot did not confirm it (it
        crashed, or its webhook answered with an error): the same content under a new
        ``update_id``, so the bot must recognise what it already handled."""
        again = {key: value for key, value in update.items() if key != "update_id"}
        return self.push_update(again)

    def update_with(self, message: JSON) -> JSON:
        """The pushed update that carried ``message`` (to redeliver it)."""
        key = (message["chat"]["id"], message["message_id"])
        for update in self.pushed_updates:
            carried = update.get("message")
            if carried and (carried["chat"]["id"], carried["message_id"]) == key:
                return copy.deepcopy(update)
        raise LookupError(f"no update carried message {key}")

    async def pay(self, user: JSON, invoice: str | JSON) -> PaymentOutcome:
        """The user pays an invoice link or invoice message (payments.FakePayments.pay):
        returns its PaymentOutcome."""
        return await self.payments.pay(user, invoice)

    def renew_subscription(self, charge_id: str) -> Charge | None:
        """Telegram charges the Stars subscription that ``charge_id`` paid again (a new
        recurring successful_payment); None if it was cancelled."""
        return self.payments.renew(charge_id)

    def add_user_message(self, chat: JSON, sender: JSON, content: JSON) -> JSON:
        """Store a message written by a user and push it as a ``message`` update."""
        if chat["id"] not in self._chats:
            self.register_chat(chat)
        message = self._store_message(chat, sender, content)
        self.push_update({"message": message})
        return message

    def open_callback_query(self, sender: JSON, message: JSON, data: str) -> JSON:
        """Push a ``callback_query`` pressed on ``message`` and expect an answer to it."""
        query_id = str(self._next_callback_id)
        self._next_callback_id += 1
        self._open_callback_queries.add(query_id)
        chat = message["chat"]
        if self.is_deleted(chat["id"], message["message_id"]):
            message = {"chat": chat, "message_id": message["message_id"], "date": 0}
        query = {
            "id": query_id,
            "from": sender,
            "message": message,
            "chat_instance": f"ci{chat['id']}",
            "data": data,
        }
        self.push_update({"callback_query": query})
        return query

    # ----------------------------------------------------------------- files

    def store_file(
        self,
        data: bytes,
        *,
        folder: str,
        file_name: str | None = None,
        mime_type: str | None = None,
    ) -> StoredFile:
        """Keep bytes under a fresh file_id; the same bytes keep the same file_unique_id."""
        number = len(self._files) + 1
        suffix = mimetypes.guess_extension(mime_type or "") or ""
        if file_name and "." in file_name:
            suffix = "." + file_name.rsplit(".", 1)[1]
        stored = StoredFile(
            file_id=f"{folder}-{number}-{hashlib.sha1(data).hexdigest()[:10]}",
            file_unique_id=f"u{hashlib.sha256(data).hexdigest()[:15]}",
            file_path=f"{folder}/file_{number}{suffix}",
            data=bytes(data),
            file_name=file_name,
            mime_type=mime_type,
        )
        self._files[stored.file_id] = stored
        self._files_by_path[stored.file_path] = stored
        return stored

    def upload_photo(self, data: bytes) -> list[JSON]:
        """Store an image and return its ``PhotoSize`` array (one size, the original)."""
        stored = self.store_file(data, folder="photos", mime_type="image/jpeg")
        return self._photo_sizes(stored)

    def upload_document(self, data: bytes, file_name: str, mime_type: str | None = None) -> JSON:
        """Store a document and return its ``Document`` object."""
        mime_type = mime_type or mimetypes.guess_type(file_name)[0] or "application/octet-stream"
        stored = self.store_file(
            data, folder="documents", file_name=file_name, mime_type=mime_type
        )
        return self._document(stored)

    def _photo_sizes(self, stored: StoredFile) -> list[JSON]:
        width, height = image_size(stored.data) or (1, 1)
        return [
            {
                "file_id": stored.file_id,
                "file_unique_id": stored.file_unique_id,
                "width": width,
                "height": height,
                "file_size": len(stored.data),
            }
        ]

    @staticmethod
    def _document(stored: StoredFile) -> JSON:
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_name": stored.file_name or "file",
            "mime_type": stored.mime_type or "application/octet-stream",
            "file_size": len(stored.data),
        }

    # ----------------------------------------------------------------- HTTP

    async def _handle_api(self, request: web.Request) -> web.Response:
        params, files = await self._read_params(request)
        chat_id = params.get("chat_id")
        record = RecordedRequest(
            method=request.match_info["method"],
            params=params,
            files=files,
            chat_id=chat_id if isinstance(chat_id, int | str) else None,
            token=request.match_info["token"],
        )
        self.requests.append(record)
        self._notify()
        try:
            payload: JSON = {"ok": True, "result": await self._execute(record)}
            status = 200
        except ApiError as error:
            payload, status = error.payload(), error.code
        except FormattingError as error:
            payload, status = bad_request(f"can't parse entities: {error}").payload(), 400
        except Exception as error:  # a bug in the fake must surface, not hang the bot
            self.internal_errors.append(error)
            payload = ApiError(500, f"Internal Server Error: fake server bug: {error!r}").payload()
            status = 500
        record.status, record.response = status, payload
        for observe in self.observers:
            observe(record)
        self._notify()
        return web.json_response(payload, status=status)

    async def _handle_file(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        stored = self._files_by_path.get(path)
        if stored is None or not self._token_allowed(request.match_info["token"]):
            return web.json_response(ApiError(404, "Not Found").payload(), status=404)
        self.downloads.append(path)
        self._notify()
        return web.Response(body=stored.data, content_type="application/octet-stream")

    @staticmethod
    async def _read_params(
        request: web.Request,
    ) -> tuple[dict[str, Any], dict[str, UploadedFile]]:
        """Accept the Bot API's four request styles: query, urlencoded, multipart, JSON."""
        params: dict[str, Any] = {k: _decode_field(k, v) for k, v in request.query.items()}
        files: dict[str, UploadedFile] = {}
        if request.content_type == "application/json":
            body = await request.json()
            params.update(body if isinstance(body, dict) else {})
        elif request.can_read_body:
            for key, value in (await request.post()).items():
                if isinstance(value, web.FileField):
                    data = value.file.read()
                    files[key] = UploadedFile(key, value.filename, value.content_type, data)
                else:
                    text = value.decode() if isinstance(value, bytes | bytearray) else value
                    params[key] = _decode_field(key, text)
        return params, files

    def _token_allowed(self, token: str) -> bool:
        return self.token is None or token == self.token

    async def _execute(self, record: RecordedRequest) -> Any:
        """Run the checks Telegram would run, in its order, then the method itself."""
        method = record.method.lower()
        if not self._token_allowed(record.token):
            raise ApiError(401, "Unauthorized")
        self.bot_id = _bot_id_from_token(record.token) or self.bot_id
        handler = self._methods.get(method)
        if handler is None:
            self.unknown_requests.append(record)
            raise ApiError(404, "Not Found")
        if self.fault is not None and (injected := await self.fault(record)) is not None:
            raise injected
        delay = self._take_rule(self._delays, method, record.chat_id)
        if delay is not None:
            await asyncio.sleep(delay.seconds)
        fault = self._take_rule(self._faults, method, record.chat_id)
        if fault is not None:
            raise fault.error
        if _sends_message(method) and record.chat_id in self._blocked:
            raise ApiError(403, BLOCKED_DESCRIPTION)
        self._check_rate_limit(method)
        result = handler(record)
        return await result if inspect.isawaitable(result) else result

    def _check_rate_limit(self, method: str) -> None:
        if self._bucket is None or not _counts_against_rate_limit(method):
            return
        wait = self._bucket.acquire()
        if wait > 0:
            self.rate_limited_count += 1
            retry_after = max(1, math.ceil(wait))
            raise ApiError(
                429, default_description(429, retry_after), {"retry_after": retry_after}
            )

    def _method_table(self) -> dict[str, Handler]:
        table: dict[str, Handler] = {
            "getme": self._get_me,
            "getupdates": self._get_updates,
            "setwebhook": self._set_webhook,
            "deletewebhook": self._delete_webhook,
            "getwebhookinfo": self._get_webhook_info,
            "setmycommands": self._set_my_commands,
            "getmycommands": self._get_my_commands,
            "deletemycommands": self._delete_my_commands,
            "sendmessage": self._send_message,
            "sendphoto": self._send_photo,
            "senddocument": self._send_document,
            "sendmediagroup": self._send_media_group,
            "editmessagetext": self._edit_message_text,
            "editmessagecaption": self._edit_message_caption,
            "editmessagereplymarkup": self._edit_message_reply_markup,
            "deletemessage": self._delete_message,
            "answercallbackquery": self._answer_callback_query,
            "sendchataction": self._send_chat_action,
            "getfile": self._get_file,
            "setchatmenubutton": self._set_chat_menu_button,
            "getchatmenubutton": self._get_chat_menu_button,
            "getchat": self._get_chat,
        }
        for kind in ("name", "description", "short_description"):
            api_name = kind.replace("_", "")
            table[f"setmy{api_name}"] = self._bot_text_setter(kind)
            table[f"getmy{api_name}"] = self._bot_text_getter(kind)
        table.update(self.payments.method_table())
        return table

    # ----------------------------------------------------------------- chats & messages

    def _resolve_chat(self, chat_id: Any) -> JSON:
        """The chat object for ``chat_id``; unknown private chats are invented unless strict."""
        if chat_id is None or chat_id == "":
            raise bad_request("chat_id is empty")
        if isinstance(chat_id, str):
            chat = next(
                (c for c in self._chats.values() if f"@{c.get('username')}" == chat_id), None
            )
            if chat is None:
                raise bad_request("chat not found")
            return chat
        if chat_id not in self._chats:
            if self.strict_chats or not isinstance(chat_id, int):
                raise bad_request("chat not found")
            self._chats[chat_id] = self._invented_chat(chat_id)
        return self._chats[chat_id]

    @staticmethod
    def _invented_chat(chat_id: int) -> JSON:
        if chat_id > 0:
            return {"id": chat_id, "type": "private", "first_name": f"User {chat_id}"}
        kind = "supergroup" if str(chat_id).startswith("-100") else "group"
        return {"id": chat_id, "type": kind, "title": f"Chat {chat_id}"}

    def _store_message(self, chat: JSON, sender: JSON, content: JSON) -> JSON:
        """Assign the chat's next message_id (shared by user and bot, as in private chats)."""
        chat_id = chat["id"]
        message_id = self._next_message_id.get(chat_id, 1)
        self._next_message_id[chat_id] = message_id + 1
        message = {
            "message_id": message_id,
            "from": dict(sender),
            "chat": dict(chat),
            "date": int(self.clock()),
            **copy.deepcopy(content),
        }
        self._messages[(chat_id, message_id)] = message
        self._order.setdefault(chat_id, []).append(message_id)
        self._notify()
        return copy.deepcopy(message)

    def _send(self, record: RecordedRequest, content: JSON) -> JSON:
        """Store a bot message built from ``content`` plus the common send parameters."""
        chat = self._resolve_chat(record.params.get("chat_id"))
        content = dict(content)
        reply_to = self._reply_target(chat["id"], record.params)
        if reply_to is not None:
            content["reply_to_message"] = reply_to
        markup = self._inline_markup(chat["id"], record.params.get("reply_markup"))
        if markup is not None:
            content["reply_markup"] = markup
        if record.params.get("protect_content"):
            content["has_protected_content"] = True
        return self._store_message(chat, self.bot_user(record.token), content)

    def _reply_target(self, chat_id: int, params: JSON) -> JSON | None:
        reply = params.get("reply_parameters") or {}
        message_id = reply.get("message_id") or params.get("reply_to_message_id")
        if not message_id:
            return None
        target = self._messages.get((reply.get("chat_id", chat_id), message_id))
        if target is None:
            if reply.get("allow_sending_without_reply"):
                return None
            raise bad_request("message to be replied not found")
        target = copy.deepcopy(target)
        target.pop("reply_to_message", None)
        return target

    def _inline_markup(self, chat_id: int, markup: Any) -> JSON | None:
        """Keep inline keyboards on the message; reply keyboards live on the chat.

        Telegram's ``Message.reply_markup`` can only be an inline keyboard (aiogram would
        fail to parse anything else), so reply keyboards are tracked per chat instead.
        """
        if not markup:
            return None
        if not isinstance(markup, dict):
            raise bad_request("can't parse reply keyboard markup JSON object")
        if "inline_keyboard" in markup:
            self._validate_inline_keyboard(markup["inline_keyboard"])
            return copy.deepcopy(markup)
        if "keyboard" in markup:
            self._reply_keyboards[chat_id] = copy.deepcopy(markup)
        elif markup.get("remove_keyboard"):
            self._reply_keyboards.pop(chat_id, None)
        return None

    @staticmethod
    def _validate_inline_keyboard(rows: Any) -> None:
        if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
            raise bad_request("can't parse inline keyboard button: field must be an array")
        for button in (button for row in rows for button in row):
            if not button.get("text"):
                raise bad_request("can't parse inline keyboard button: button text is empty")
            data = button.get("callback_data")
            if data is not None and not 1 <= len(data.encode()) <= MAX_CALLBACK_DATA_BYTES:
                raise bad_request("BUTTON_DATA_INVALID")

    @staticmethod
    def _text_content(params: JSON, key: str, limit: int, *, required: bool) -> JSON:
        """``{text, entities}`` or ``{caption, caption_entities}`` as Telegram stores them."""
        raw = params.get(key)
        if raw is None or raw == "":
            if required:
                raise bad_request("message text is empty")
            return {}
        entities_key = "entities" if key == "text" else "caption_entities"
        text, entities = render_text(str(raw), params.get("parse_mode"), params.get(entities_key))
        if required and not text.strip():
            raise bad_request("message text is empty")
        if utf16_len(text) > limit:
            raise bad_request(
                "message is too long" if key == "text" else "message caption is too long"
            )
        content: JSON = {key: text}
        if entities:
            content[entities_key] = entities
        return content

    def _input_file(self, record: RecordedRequest, value: Any, field_name: str) -> StoredFile:
        """Resolve a file given as a direct upload, ``attach://name``, file_id or URL."""
        upload = record.files.get(field_name) if value is None else None
        if isinstance(value, str) and value.startswith("attach://"):
            upload = record.files.get(value.removeprefix("attach://"))
            if upload is None:
                raise bad_request(f"file {value} not found in the request")
        if upload is not None:
            return self._store_upload(upload, field_name)
        if isinstance(value, str) and value.startswith(("http://", "https://")):
            return self.store_file(b"", folder=f"{field_name}s", file_name=value.rsplit("/")[-1])
        stored = self._files.get(value) if isinstance(value, str) else None
        if stored is None:
            raise bad_request("wrong file identifier/HTTP URL specified")
        return stored

    def _store_upload(self, upload: UploadedFile, kind: str) -> StoredFile:
        if not upload.data:
            raise bad_request("file must be non-empty")
        if kind == "photo":
            if self.validate_images and image_size(upload.data) is None:
                raise bad_request("IMAGE_PROCESS_FAILED")
            return self.store_file(upload.data, folder="photos", mime_type="image/jpeg")
        mime_type = mimetypes.guess_type(upload.filename)[0]
        if mime_type is None and upload.content_type != "application/octet-stream":
            mime_type = upload.content_type
        return self.store_file(
            upload.data,
            folder=f"{kind}s",
            file_name=upload.filename,
            mime_type=mime_type or "application/octet-stream",
        )

    def _media_content(self, record: RecordedRequest, kind: str, value: Any) -> JSON:
        stored = self._input_file(record, value, kind)
        if kind == "photo":
            return {"photo": self._photo_sizes(stored)}
        return {"document": self._document(stored)}

    def _message_key(self, record: RecordedRequest) -> tuple[int, int]:
        """(chat id, message id) a call refers to."""
        chat = self._resolve_chat(record.params.get("chat_id"))
        message_id = record.params.get("message_id")
        if not isinstance(message_id, int):
            raise bad_request("message identifier is not specified")
        return chat["id"], message_id

    def _editable_message(self, record: RecordedRequest) -> JSON:
        """The stored bot message an edit* call targets (mutated in place by the caller)."""
        if record.params.get("inline_message_id"):
            raise bad_request("inline messages are not supported by the fake server")
        key = self._message_key(record)
        message = self._messages.get(key)
        if message is None or key in self._deleted:
            raise bad_request("message to edit not found")
        if not message.get("from", {}).get("is_bot"):
            raise bad_request("message can't be edited")
        return message

    def _apply_edit(self, message: JSON, changes: JSON, markup: JSON | None) -> JSON:
        """Apply an edit, refusing no-op edits exactly like Telegram does."""
        before = {key: message.get(key) for key in (*changes, "reply_markup")}
        after = {**{key: value or None for key, value in changes.items()}, "reply_markup": markup}
        if before == after:
            raise bad_request(NOT_MODIFIED_DESCRIPTION.removeprefix("Bad Request: "))
        for key, value in after.items():
            if value is None:
                message.pop(key, None)
            else:
                message[key] = copy.deepcopy(value)
        message["edit_date"] = int(self.clock())
        self._notify()
        return copy.deepcopy(message)

    # ----------------------------------------------------------------- method handlers

    def _get_me(self, record: RecordedRequest) -> JSON:
        return {
            **self.bot_user(record.token),
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }

    async def _get_updates(self, record: RecordedRequest) -> list[JSON]:
        """Long polling: answer at once if updates are queued, else wait up to ``timeout``."""
        if self.webhook.get("url"):
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        params = record.params
        if params.get("allowed_updates") is not None:
            self._allowed_updates = list(params["allowed_updates"])
        self._confirm_updates(int(params.get("offset") or 0))
        limit = min(max(int(params.get("limit") or 100), 1), 100)
        self._poll_generation += 1
        generation = self._poll_generation
        self._notify()  # an older waiting poll is now superseded
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(float(params.get("timeout") or 0), 0.0)
        while True:
            if generation != self._poll_generation:
                raise ApiError(409, default_description(409))
            batch = [] if self._closing else self._deliverable(limit)
            remaining = deadline - loop.time()
            if batch or remaining <= 0 or self._closing:
                return batch
            changed = self._changed
            try:
                async with asyncio.timeout(remaining):
                    await changed.wait()
            except TimeoutError:
                pass

    def _confirm_updates(self, offset: int) -> None:
        if offset > 0:
            self._pending_updates = [u for u in self._pending_updates if u["update_id"] >= offset]
        elif offset < 0:
            self._pending_updates = self._pending_updates[offset:]

    def _deliverable(self, limit: int) -> list[JSON]:
        """Queued updates the bot asked for; others are dropped, as Telegram never sends them."""
        wanted: list[JSON] = []
        for update in list(self._pending_updates):
            if self._is_allowed(update_type(update)):
                wanted.append(update)
            else:
                self._pending_updates.remove(update)
                self.dropped_updates.append(update)
        return copy.deepcopy(wanted[:limit])

    def _is_allowed(self, kind: str) -> bool:
        if self._allowed_updates:
            return kind in self._allowed_updates
        return kind not in NOT_DELIVERED_BY_DEFAULT

    def _set_webhook(self, record: RecordedRequest) -> bool:
        if not record.params.get("url"):
            return self._delete_webhook(record)
        self.webhook = dict(record.params)
        if record.params.get("drop_pending_updates"):
            self._pending_updates.clear()
        return True

    def _delete_webhook(self, record: RecordedRequest) -> bool:
        self.webhook = {}
        if record.params.get("drop_pending_updates"):
            self._pending_updates.clear()
        return True

    def _get_webhook_info(self, record: RecordedRequest) -> JSON:
        info: JSON = {
            "url": self.webhook.get("url", ""),
            "has_custom_certificate": False,
            "pending_update_count": len(self._pending_updates),
        }
        for key in ("max_connections", "ip_address", "allowed_updates"):
            if key in self.webhook:
                info[key] = self.webhook[key]
        return info

    @staticmethod
    def _commands_key(scope: Any, language_code: Any) -> tuple[str, str]:
        return json.dumps(scope or {"type": "default"}, sort_keys=True), str(language_code or "")

    def _command_scope(self, record: RecordedRequest) -> Any:
        """The scope of a *MyCommands call; a chat scope names a chat Telegram must know."""
        scope = record.params.get("scope")
        if isinstance(scope, dict) and scope.get("type") in (
            "chat",
            "chat_administrators",
            "chat_member",
        ):
            self._resolve_chat(scope.get("chat_id"))
        return scope

    def _set_my_commands(self, record: RecordedRequest) -> bool:
        scope = self._command_scope(record)
        commands = record.params.get("commands")
        if not isinstance(commands, list):
            raise bad_request("commands must be an array")
        for command in commands:
            if not re.fullmatch(r"[a-z0-9_]{1,32}", str(command.get("command", ""))):
                raise bad_request("BOT_COMMAND_INVALID")
            if not 1 <= len(str(command.get("description", ""))) <= 256:
                raise bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
        key = self._commands_key(scope, record.params.get("language_code"))
        self._commands[key] = copy.deepcopy(commands)
        return True

    def _get_my_commands(self, record: RecordedRequest) -> list[JSON]:
        return self.commands(record.params.get("language_code", ""), self._command_scope(record))

    def _delete_my_commands(self, record: RecordedRequest) -> bool:
        key = self._commands_key(self._command_scope(record), record.params.get("language_code"))
        self._commands.pop(key, None)
        return True

    def _bot_text_setter(self, kind: str) -> Handler:
        def handler(record: RecordedRequest) -> bool:
            language = str(record.params.get("language_code") or "")
            self._bot_texts[(kind, language)] = str(record.params.get(kind) or "")
            return True

        return handler

    def _bot_text_getter(self, kind: str) -> Handler:
        def handler(record: RecordedRequest) -> JSON:
            language = str(record.params.get("language_code") or "")
            text = self._bot_texts.get((kind, language)) or self._bot_texts.get((kind, ""), "")
            if kind == "name":
                text = text or self.bot_first_name
            return {kind: text}

        return handler

    def _send_message(self, record: RecordedRequest) -> JSON:
        return self._send(
            record, self._text_content(record.params, "text", MAX_TEXT_LENGTH, required=True)
        )

    def _send_photo(self, record: RecordedRequest) -> JSON:
        content = self._media_content(record, "photo", record.params.get("photo"))
        content.update(
            self._text_content(record.params, "caption", MAX_CAPTION_LENGTH, required=False)
        )
        return self._send(record, content)

    def _send_document(self, record: RecordedRequest) -> JSON:
        content = self._media_content(record, "document", record.params.get("document"))
        content.update(
            self._text_content(record.params, "caption", MAX_CAPTION_LENGTH, required=False)
        )
        return self._send(record, content)

    def _send_media_group(self, record: RecordedRequest) -> list[JSON]:
        """Albums of photos and/or documents; every message shares one media_group_id."""
        media = record.params.get("media")
        if not isinstance(media, list) or not 2 <= len(media) <= 10:
            raise bad_request("wrong number of messages in the media group (need 2-10)")
        group_id = str(self._next_media_group)
        self._next_media_group += 1
        contents = []
        for item in media:
            kind = item.get("type")
            if kind not in ("photo", "document"):
                raise bad_request(f"media type {kind!r} is not supported by the fake server")
            content = self._media_content(record, kind, item.get("media"))
            content.update(self._text_content(item, "caption", MAX_CAPTION_LENGTH, required=False))
            contents.append({**content, "media_group_id": group_id})
        return [self._send(record, content) for content in contents]

    def _edit_message_text(self, record: RecordedRequest) -> JSON:
        message = self._editable_message(record)
        if "text" not in message:
            raise bad_request("there is no text in the message to edit")
        changes = self._text_content(record.params, "text", MAX_TEXT_LENGTH, required=True)
        changes.setdefault("entities", None)
        markup = self._inline_markup(message["chat"]["id"], record.params.get("reply_markup"))
        return self._apply_edit(message, changes, markup)

    def _edit_message_caption(self, record: RecordedRequest) -> JSON:
        message = self._editable_message(record)
        if not any(key in message for key in ("photo", "document")):
            raise bad_request("there is no caption in the message to edit")
        changes = self._text_content(record.params, "caption", MAX_CAPTION_LENGTH, required=False)
        changes.setdefault("caption", None)
        changes.setdefault("caption_entities", None)
        markup = self._inline_markup(message["chat"]["id"], record.params.get("reply_markup"))
        return self._apply_edit(message, changes, markup)

    def _edit_message_reply_markup(self, record: RecordedRequest) -> JSON:
        message = self._editable_message(record)
        markup = self._inline_markup(message["chat"]["id"], record.params.get("reply_markup"))
        return self._apply_edit(message, {}, markup)

    def _delete_message(self, record: RecordedRequest) -> bool:
        key = self._message_key(record)
        if key not in self._messages or key in self._deleted:
            raise bad_request("message to delete not found")
        self._deleted.add(key)
        self._notify()
        return True

    def _answer_callback_query(self, record: RecordedRequest) -> bool:
        query_id = str(record.params.get("callback_query_id", ""))
        if query_id not in self._open_callback_queries:
            raise bad_request(
                "query is too old and response timeout expired or query ID is invalid"
            )
        self._open_callback_queries.discard(query_id)
        self.callback_answers[query_id] = dict(record.params)
        return True

    def _get_file(self, record: RecordedRequest) -> JSON:
        stored = self._files.get(str(record.params.get("file_id", "")))
        if stored is None:
            raise bad_request("invalid file_id")
        return stored.as_file()

    def _send_chat_action(self, record: RecordedRequest) -> bool:
        self._resolve_chat(record.chat_id)
        return True

    def _get_chat_menu_button(self, record: RecordedRequest) -> JSON:
        return self.menu_button(record.params.get("chat_id"))

    def _set_chat_menu_button(self, record: RecordedRequest) -> bool:
        chat_id = record.params.get("chat_id")
        self._menu_buttons[chat_id] = record.params.get("menu_button") or {"type": "default"}
        return True

    def _get_chat(self, record: RecordedRequest) -> JSON:
        chat = self._resolve_chat(record.params.get("chat_id"))
        no_gifts = dict.fromkeys(
            (
                "unlimited_gifts",
                "limited_gifts",
                "unique_gifts",
                "premium_subscription",
                "gifts_from_channels",
            ),
            False,
        )
        return {
            **chat,
            "accent_color_id": 0,
            "max_reaction_count": 11,
            "accepted_gift_types": no_gifts,
        }
