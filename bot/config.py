"""Settings from the environment (and an optional `.env` file)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    bot_token: SecretStr | None = Field(default=None, description="The token @BotFather gave")
    database_url: str | None = Field(
        default=None, description="postgresql://user:pass@host:port/db; unset: embedded"
    )
    data_dir: Path = Field(default=Path("data"), description="Embedded database and caches")
    telegram_api_base: str = Field(
        default="https://api.telegram.org", description="Bot API server (a local one, a fake)"
    )
    admin_ids: Annotated[list[int], NoDecode] = Field(
        default_factory=list, description="Telegram ids of the program's owners, comma-separated"
    )
    program_file: Path = Field(default=Path("program.toml"), description="The rules")
    signing_secret: SecretStr | None = Field(
        default=None, description="HMAC key for card tokens; unset: derived from the token"
    )
    redis_url: str | None = Field(default=None, description="FSM storage for several instances")
    webhook_url: str | None = Field(
        default=None, description="Serve a webhook (https://) instead of polling"
    )
    webhook_secret: SecretStr | None = Field(
        default=None, description="1-256 of A-Z a-z 0-9 _ -; unset: derived from the token"
    )
    http_host: str = Field(default="127.0.0.1", description="Where /healthz, /metrics listen")
    http_port: int = Field(default=8080, description="and the webhook, when it is on")
    metrics_token: SecretStr | None = Field(
        default=None, description="Bearer token /metrics requires; unset: open"
    )
    delivery_rate: float = Field(
        default=25.0, gt=0, le=1000, description="Campaign messages per second, all instances"
    )
    flood_rate: float = Field(
        default=1.0, gt=0, description="Updates per second one user may send, sustained"
    )
    flood_burst: int = Field(default=20, ge=1, description="and at once, before they wait")
    api_rate: float = Field(
        default=10.0, gt=0, description="Partner API requests per second one key may make"
    )
    api_burst: int = Field(default=40, ge=1, description="and at once, before it gets 429")
    payment_provider_token: SecretStr | None = Field(
        default=None,
        description="A payment provider's token from @BotFather: the club sold by card too",
    )
    log_level: str = "INFO"

    @field_validator("admin_ids", mode="before")
    @classmethod
    def _split_ids(cls, value: object) -> object:
        if isinstance(value, str):
            return [int(part) for part in value.replace(";", ",").split(",") if part.strip()]
        if isinstance(value, int):
            return [value]
        return value

    @field_validator("bot_token")
    @classmethod
    def _token_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        bot_id, _, secret = value.get_secret_value().partition(":")
        if not bot_id.isdigit() or not secret or any(c.isspace() for c in secret):
            raise ValueError("does not look like a bot token (123456:ABC-DEF…) from @BotFather")
        return value

    @field_validator(
        "webhook_url", "webhook_secret", "metrics_token", "payment_provider_token", mode="before"
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # docker compose passes `${WEBHOOK_URL:-}` as an empty string when it is not set.
        return None if value == "" else value

    @field_validator("webhook_url")
    @classmethod
    def _https(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError(
                "must be an https:// URL (Telegram delivers webhooks over HTTPS only); "
                "unset it to poll instead"
            )
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _telegram_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not _WEBHOOK_SECRET.fullmatch(value.get_secret_value()):
            raise ValueError(
                "must be 1 to 256 characters of A-Z, a-z, 0-9, _ and - (Telegram's rule)"
            )
        return value


_WEBHOOK_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")
