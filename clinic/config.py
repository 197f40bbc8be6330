"""Settings: environment variables (``TELEMED_*``) over an optional TOML file over defaults.

The defaults serve a single machine with nothing else installed: SQLite under ``./var``
and a generated secret key stored beside it with mode 0600.
"""

from __future__ import annotations

import os
import secrets
import stat
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

ENV_PREFIX = "TELEMED_"
SECRET_KEY_FILE = "secret_key"  # noqa: S105 - a file name, not a secret


class SettingsError(Exception):
    """A bad setting; the message is one line naming the setting."""


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    data_dir: Path = Path("./var")
    database_url: str = ""
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    base_url: str = ""
    secret_key: str = ""
    #: "auto" sets the Secure cookie flag when base_url is https (i.e. behind TLS).
    secure_cookies: Literal["auto", "always", "never"] = "auto"
    trusted_proxies: list[str] = Field(default_factory=list)
    default_locale: Literal["ko", "en"] = "ko"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    #: libuv's event loop roughly halves the per-request cost of networking and database round trips.
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"
    #: Server processes sharing the port (see clinic.serve); more than one needs ``redis_url``.
    workers: int = Field(1, ge=1, le=64)

    max_body_bytes: int = Field(1_048_576, ge=1024, le=64 * 1_048_576)
    max_upload_bytes: int = Field(10 * 1_048_576, ge=1024, le=256 * 1_048_576)
    session_hours: int = Field(12, ge=1, le=24 * 30)
    #: How long a resolved sign-in is reused without asking the database. Changes made through this process
    #: apply at once; other server processes see them within this many seconds. 0 turns the cache off.
    session_cache_seconds: float = Field(5.0, ge=0, le=60)
    login_max_attempts: int = Field(5, ge=1, le=1000)
    login_window_seconds: int = Field(900, ge=10, le=86400)
    magic_link_minutes: int = Field(60 * 24, ge=1, le=60 * 24 * 30)
    step_up_minutes: int = Field(5, ge=1, le=60)

    smtp_host: str = ""
    smtp_port: int = Field(25, ge=1, le=65535)
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_starttls: bool = False
    #: The name this server gives in EHLO; empty: its fully qualified domain name, looked up once per process.
    smtp_helo_name: str = Field("", max_length=253, pattern=r"^[A-Za-z0-9.\-\[\]:]*$")
    mail_from: str = "telemed@localhost"
    sms_provider: Literal["outbox"] = "outbox"

    payment_provider: Literal["none", "stripe"] = "none"
    stripe_api_key: str = ""
    stripe_publishable_key: str = ""
    stripe_webhook_secret: str = ""
    stripe_api_base: str = ""

    stun_urls: list[str] = Field(default_factory=list)
    turn_urls: list[str] = Field(default_factory=list)
    turn_secret: str = ""
    turn_ttl_seconds: int = Field(3600, ge=60, le=86400)

    redis_url: str = ""
    #: Starts every key and channel this deployment uses in Redis, so deployments can share one Redis.
    redis_prefix: str = Field("telemed", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:\-]+$")
    policy_fallback_default: bool = False
    recording_retention_days: int = Field(30, ge=1, le=3650)
    reminder_minutes_before: int = Field(60, ge=1, le=10080)
    #: Periodic background jobs (reminders, retries, expiry, retention); off only for tests and one-off CLIs.
    run_jobs: bool = True

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, v: str) -> str:
        if v and not (v.startswith("sqlite+aiosqlite://") or v.startswith("postgresql+asyncpg://")):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        return v

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, v: str) -> str:
        if v and not (v.startswith("http://") or v.startswith("https://")):
            raise ValueError("must be an http:// or https:// URL")
        return v.rstrip("/")

    @model_validator(mode="after")
    def _stripe_needs_keys(self) -> Settings:
        if self.payment_provider == "stripe" and not self.stripe_api_key:
            raise ValueError("stripe_api_key is required when payment_provider is 'stripe'")
        return self

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{(self.data_dir / 'telemed.db').as_posix()}"

    @property
    def effective_base_url(self) -> str:
        return self.base_url or f"http://{self.host}:{self.port}"

    @property
    def cookies_secure(self) -> bool:
        if self.secure_cookies == "auto":
            return self.effective_base_url.startswith("https://")
        return self.secure_cookies == "always"

    @property
    def is_postgres(self) -> bool:
        return self.effective_database_url.startswith("postgresql")


_LIST_FIELDS = {name for name, f in Settings.model_fields.items() if f.annotation == list[str]}


def _from_env(environ: dict[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX) or key == ENV_PREFIX + "CONFIG":
            continue
        name = key[len(ENV_PREFIX) :].lower()
        if name not in Settings.model_fields:
            raise SettingsError(f"{key}: unknown setting")
        values[name] = [p.strip() for p in raw.split(",") if p.strip()] if name in _LIST_FIELDS else raw
    return values


def _from_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError as exc:
        raise SettingsError(f"TELEMED_CONFIG: file not found: {path}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"TELEMED_CONFIG: {path}: {exc}") from exc
    return dict(data.get("telemed", data))


def _ensure_secret_key(data_dir: Path) -> str:
    """Generate once and keep it private: the key signs CSRF tokens and encrypts keys at rest."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / SECRET_KEY_FILE
    if path.exists():
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            os.chmod(path, 0o600)
        return path.read_text().strip()
    key = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    return key


def load_settings(environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
    """Build and validate settings; raise SettingsError with one line naming the bad setting."""
    env = dict(os.environ if environ is None else environ)
    values: dict[str, Any] = {}
    config_path = env.get(ENV_PREFIX + "CONFIG")
    if config_path:
        values.update(_from_toml(Path(config_path)))
    values.update(_from_env(env))
    values.update(overrides)
    try:
        settings = Settings.model_validate(values)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "settings"
        raise SettingsError(f"{ENV_PREFIX}{loc.upper()}: {err['msg']}") from None
    if not settings.secret_key:
        settings = settings.model_copy(update={"secret_key": _ensure_secret_key(settings.data_dir)})
    elif len(settings.secret_key) < 32:
        raise SettingsError(f"{ENV_PREFIX}SECRET_KEY: must be at least 32 characters")
    return settings
