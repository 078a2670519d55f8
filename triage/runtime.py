"""The composition root: build the database, secrets and model client from settings, once."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from triage.adapters.db.session import SessionFactory, make_engine, make_session_factory
from triage.adapters.secrets import SecretBox, SecretKeyError, generate_key
from triage.config import Settings

if TYPE_CHECKING:
    from triage.adapters.imap import ImapLogin, ImapMailbox
    from triage.adapters.models.client import OpenAICompatibleClient


class _LazyModel:
    """Builds the model client on first use: the SDK behind it costs a third of a second to
    import, which commands that never call a model (`users add`, `export`) should not pay."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._client: OpenAICompatibleClient | None = None

    def get(self) -> OpenAICompatibleClient:
        if self._client is not None:
            return self._client
        with self._lock:  # worker threads meet it at once; they must share one client
            if self._client is None:
                from triage.adapters.models.client import OpenAICompatibleClient

                self._client = OpenAICompatibleClient.from_settings(self._settings)
            return self._client


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    engine: Engine
    db: SessionFactory
    secrets: SecretBox
    _model: _LazyModel = field(repr=False, compare=False)

    @property
    def model(self) -> OpenAICompatibleClient:
        return self._model.get()


def build_runtime(settings: Settings) -> Runtime:
    engine = make_engine(settings.resolved_database_url(), pool_size=settings.db_pool_size)
    return Runtime(
        settings=settings,
        engine=engine,
        db=make_session_factory(engine),
        secrets=load_secret_box(settings),
        _model=_LazyModel(settings),
    )


def mailbox_opener(rt: Runtime) -> Callable[[ImapLogin], ImapMailbox]:
    """Opens a real IMAP connection with the configured timeouts and CA file; fits every
    stage's mailbox port (sync, write-back), in the commands and in the workers."""
    from triage.adapters.imap import ImapMailbox, Timeouts

    timeouts = Timeouts(
        connect=rt.settings.imap_connect_timeout, read=rt.settings.imap_read_timeout
    )
    return lambda login: ImapMailbox(login, timeouts=timeouts, ca_file=rt.settings.imap_ca_file)


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
