"""Settings read from the environment (prefix ``TRIAGE_``), with defaults for the embedded mode."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

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
    sync_interval_seconds: int = 300
    idle_renew_seconds: int = 600

    # Images
    image_max_side: int = 1024
    images_per_message: int = 4
    image_min_side: int = 100

    # Model calls
    model_timeout_seconds: float = 60.0
    model_max_attempts: int = 4
    prompt_max_chars: int = 24_000

    # Workers
    worker_concurrency: int = 8
    task_soft_time_limit: int = 240
    task_time_limit: int = 300
    sweep_interval_seconds: int = 120
    stuck_after_seconds: int = 600

    # Web
    web_host: str = "127.0.0.1"
    web_port: int = 8025

    @property
    def embedded(self) -> bool:
        """True when no broker is configured: stages run in-process."""
        return not self.broker_url

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'triage.sqlite3'}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
