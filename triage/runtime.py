"""The composition root: build the database, secrets and model client from settings, once."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from triage.adapters.db.session import SessionFactory, make_engine, make_session_factory
from triage.adapters.models.client import OpenAICompatibleClient
from triage.adapters.secrets import SecretBox, SecretKeyError, generate_key
from triage.config import Settings


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    engine: Engine
    db: SessionFactory
    secrets: SecretBox
    model: OpenAICompatibleClient


def build_runtime(settings: Settings) -> Runtime:
    engine = make_engine(settings.resolved_database_url(), pool_size=settings.db_pool_size)
    return Runtime(
        settings=settings,
        engine=engine,
        db=make_session_factory(engine),
        secrets=load_secret_box(settings),
        model=OpenAICompatibleClient.from_settings(settings),
    )


def load_secret_box(settings: Settings) -> SecretBox:
    """Keys from TRIAGE_SECRET_KEYS; only the embedded default may keep its own key file."""
    if settings.secret_keys:
        return SecretBox.from_setting(settings.secret_keys)
    if settings.database_url or settings.broker_url:
        raise SecretKeyError(
            "TRIAGE_SECRET_KEYS is required when TRIAGE_DATABASE_URL or TRIAGE_BROKER_URL is "
            "set; create one with `triage keys generate`"
        )
    return SecretBox([_embedded_key(settings.data_dir / "secret.key")])


def _embedded_key(path: Path) -> str:
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = generate_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key
