"""Settings read from the environment (prefix ``TRIAGE_``), with defaults for the embedded mode."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_data_dir() -> Path:
    """Where the embedded default keeps its SQLite file and generated secret key."""
    return Path.home() / ".local" / "share" / "mail-triage"


class Settings(BaseSettings):
    """Every tunable of the service. The README's settings reference mirrors this class."""

    model_config = SettingsConfigDict(env_prefix="TRIAGE_", extra="ignore")

    data_dir: Path = Field(default_factory=default_data_dir)
    database_url: str | None = None
    broker_url: str | None = None
    secret_keys: str | None = None

    # Ingestion
    fetch_batch_size: int = 200
    max_message_bytes: int = 25 * 1024 * 1024
    imap_connect_timeout: float = 15.0
    imap_read_timeout: float = 60.0
    imap_ca_file: Path | None = None
    fetch_batch_bytes: int = 50 * 1024 * 1024  # bodies held in memory at once, at most
    parse_processes: int | None = None  # reader processes for big batches; 0: none; None: cores - 1
    sync_interval_seconds: int = 300
    sync_lease_seconds: int = 300  # a fetcher's claim on an account; renewed every batch
    idle_renew_seconds: int = 600
    idle_silence_seconds: float = 150.0  # longer than Dovecot's 2-minute "OK Still here"
    reconnect_max_seconds: float = 300.0

    # Images
    image_max_side: int = 1024
    images_per_message: int = 4
    image_min_side: int = 100

    # Model calls
    model_timeout_seconds: float = 60.0
    model_max_attempts: int = 4
    model_backoff_seconds: float = 5.0  # first 5xx/timeout retry waits about this long
    model_backoff_max_seconds: float = 300.0
    model_max_rate_limit_waits: int = 30  # 429s honoured before a message is failed
    prompt_max_chars: int = 24_000

    # Workers
    worker_concurrency: int = 8
    db_pool_size: int = 32  # database connections kept per process; >= threads per worker
    task_soft_time_limit: int = 240
    task_time_limit: int = 300
    sweep_interval_seconds: int = 120
    stuck_after_seconds: int = 600

    # Operations
    log_format: Literal["json", "text"] = "json"
    log_level: str = "INFO"
    metrics_port: int = 0  # a worker or listener serves /metrics here; 0: off (compose: 9100)
    metrics_host: str = "127.0.0.1"  # compose: 0.0.0.0, inside the container network
    account_silence_factor: float = 3.0  # expected intervals without a sync = silent

    # Web
    web_host: str = "127.0.0.1"
    web_port: int = 8025

    @property
    def embedded(self) -> bool:
        """True when no broker is configured: stages run in-process."""
        return not self.broker_url

    @property
    def model_call_timeout(self) -> float:
        """The HTTP timeout of one call, kept to a quarter of the task's soft time limit so a
        re-ask and a fallback still finish inside one task."""
        return max(1.0, min(self.model_timeout_seconds, self.task_soft_time_limit / 4))

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'triage.sqlite3'}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
