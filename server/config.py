"""The one settings object. Every knob is an environment variable prefixed ``PAL_``."""

from __future__ import annotations

import ipaddress
import secrets
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from server.webhook_guard import Network


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PAL_", env_file=".env", extra="ignore")

    database_url: str = Field(
        default="sqlite:///./var/pal.sqlite3",
        description="SQLAlchemy URL. SQLite (embedded default) or postgresql+psycopg://user@host/db.",
    )
    secret_key: str = Field(
        default_factory=lambda: secrets.token_urlsafe(32),
        description="Signs invite links and webhook payloads. Set it in production so restarts keep links valid.",
    )
    data_dir: Path = Field(default=Path("./var"), description="Checkpoints, exports and uploads live here.")
    import_root: Path | None = Field(
        default=None,
        description="Server-side folders that admins may import from over the API. None: uploads only.",
    )
    lease_seconds: int = Field(default=300, ge=10, description="How long a claimed task stays reserved.")
    undo_window_seconds: int = Field(default=120, ge=0, description="How long an annotator may undo an answer.")
    session_hours: int = Field(default=12, ge=1, description="Browser session lifetime.")
    cookie_secure: bool = Field(default=False, description="Mark cookies Secure (set true behind HTTPS).")
    db_pool_size: int = Field(default=10, ge=1, description="PostgreSQL connection pool size per process.")
    db_pool_overflow: int = Field(default=5, ge=0, description="Extra connections beyond the pool size.")
    db_pool_timeout: float = Field(default=2.0, gt=0, description="Seconds to wait for a connection before 503.")
    statement_timeout_ms: int = Field(default=10_000, ge=0, description="PostgreSQL statement_timeout.")
    max_upload_mb: int = Field(default=512, ge=1, description="Largest accepted upload (imports, embeddings).")
    max_import_file_mb: int = Field(
        default=64, ge=1,
        description="Largest decompressed size of one file inside an uploaded .zip (checked while reading it).",
    )
    max_import_total_mb: int = Field(
        default=1024, ge=1,
        description="Largest decompressed size of one import: all files of a .zip together, or all arrays of an "
        ".npz as their headers declare them (checked before decoding).",
    )
    max_image_pixels: int = Field(default=40_000_000, ge=1, description="Decompression-bomb guard for images.")
    graph_refresh_seconds: float = Field(
        default=2.0, ge=0,
        description="How often a process re-reads a project's item list, current embedding version and "
        "annotator weights. New edges are read before every grid whatever this is."
    )
    oracle_seed: int | None = Field(
        default=None,
        description="Seeds each project's oracle (with the project id) so that the same answers in the same order "
        "give the same grids: for reproducible benchmarks with one server process (and graph_refresh_seconds 0). "
        "Unset: fresh entropy.",
    )
    login_attempts_per_minute: int = Field(
        default=10, ge=1,
        description="Failed sign-ins allowed per client address and e-mail in a sliding minute, counted in the "
        "database (the same for every server process).",
    )
    login_attempts_per_ip_per_minute: int = Field(
        default=30, ge=1,
        description="Failed sign-ins allowed per client address across all e-mails in a sliding minute (one "
        "client trying many accounts). Raise it when many people sign in through one NAT.",
    )
    trusted_proxies: str = Field(
        default="",
        description="Reverse proxies whose X-Forwarded-For and X-Forwarded-Proto are believed, comma-separated "
        "addresses or networks (e.g. '10.0.0.5' or '172.16.0.0/12'). Only a request whose TCP peer is listed "
        "takes its client address (sign-in throttling, logs) and scheme (invite links) from those headers; "
        "empty: nobody is, and the client is the TCP peer.",
    )
    log_json: bool = Field(default=False, description="Structured JSON logs (one object per line).")
    metrics_token: str | None = Field(
        default=None,
        description="When set, /metrics answers only requests carrying 'Authorization: Bearer <this token>'.",
    )
    webhook_worker: bool = Field(
        default=True, description="Run the webhook delivery worker in each server process (safe with several)."
    )
    webhook_allow_networks: str = Field(
        default="",
        description="Internal networks that webhooks may reach, comma-separated (e.g. '10.0.0.0/8,127.0.0.1'). "
        "Empty: webhook URLs on loopback, private, link-local and other internal addresses are refused when "
        "saved and when delivered (a webhook could otherwise probe the server's own network).",
    )
    webhook_poll_seconds: float = Field(default=2.0, gt=0, description="How often the worker looks for due events.")
    webhook_timeout_seconds: float = Field(default=5.0, gt=0, description="Timeout of one webhook POST.")
    webhook_backoff_seconds: float = Field(
        default=5.0, gt=0, description="Delay before the first retry of a failed delivery; doubles on each retry."
    )
    webhook_backoff_max_seconds: float = Field(default=3600.0, gt=0, description="Longest delay between retries.")
    webhook_max_attempts: int = Field(
        default=20, ge=1, description="Deliveries tried before an event is marked failed (kept, not retried)."
    )
    trainer_lag_alert_edges: int = Field(
        default=10_000, ge=0,
        description="Send a trainer.lag webhook when this many edges wait unconsumed by the trainer (0: never).",
    )

    @field_validator("webhook_allow_networks")
    @classmethod
    def _networks(cls, value: str) -> str:
        from server.webhook_guard import parse_networks

        parse_networks(value)  # a typo fails at start-up, not at the first delivery
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: str) -> str:
        for item in filter(None, (part.strip() for part in value.split(","))):
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or network") from None
        return value

    @property
    def trusted_proxy_list(self) -> list[str]:
        return [part.strip() for part in self.trusted_proxies.split(",") if part.strip()]

    @property
    def webhook_networks(self) -> tuple[Network, ...]:
        from server.webhook_guard import parse_networks

        return parse_networks(self.webhook_allow_networks)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


@lru_cache
def get_settings() -> Settings:
    return Settings()
