"""Settings from the environment (and an optional `.env` file)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

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
    webhook_url: str | None = Field(default=None, description="Serve a webhook instead of polling")
    webhook_secret: SecretStr | None = None
    http_host: str = Field(default="0.0.0.0", description="Where /healthz, /metrics listen")
    http_port: int = Field(default=8080, description="and the webhook, when it is on")
    delivery_rate: float = Field(
        default=25.0, gt=0, le=1000, description="Campaign messages per second, all instances"
    )
    flood_rate: float = Field(
        default=1.0, gt=0, description="Updates per second one user may send, sustained"
    )
    flood_burst: int = Field(default=20, ge=1, description="and at once, before they wait")
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
