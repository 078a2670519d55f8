"""Rows for in-process stage tests: a user, their provider setting, stored messages."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage

from triage.adapters.db.session import transaction
from triage.adapters.db.tables import MailAccount, Message, ProviderSetting, User
from triage.adapters.secrets import generate_key
from triage.config import Settings
from triage.domain import statuses
from triage.runtime import Runtime, build_runtime


@dataclass
class RecordingEnqueuer:
    triaged: list[int] = field(default_factory=list)
    drafted: list[int] = field(default_factory=list)
    written_back: list[int] = field(default_factory=list)
    reruns: list[int] = field(default_factory=list)

    def triage(self, message_id: int) -> None:
        self.triaged.append(message_id)

    def triage_many(self, message_ids: Sequence[int]) -> None:
        self.triaged.extend(message_ids)

    def draft(self, message_id: int) -> None:
        self.drafted.append(message_id)

    def write_back(self, message_id: int) -> None:
        self.written_back.append(message_id)

    def rerun(self, request_id: int) -> None:
        self.reruns.append(request_id)


def runtime_for(database_url: str, **overrides: object) -> Runtime:
    settings = Settings(database_url=database_url, secret_keys=generate_key(), **overrides)  # type: ignore[arg-type]
    return build_runtime(settings)


def seed_user(
    rt: Runtime, *, base_url: str, api_key: str, provider: str = "openai", model: str = "fake-model"
) -> tuple[int, int, int]:
    """Returns (user_id, account_id, provider_setting_id)."""
    with transaction(rt.db) as session:
        user = User(email=f"u{id(rt)}@example.test")
        session.add(user)
        session.flush()
        account = MailAccount(
            user_id=user.id,
            host="127.0.0.1",
            port=1,
            security="plain",
            username="u",
            folders=["INBOX"],
        )
        setting = ProviderSetting(
            user_id=user.id,
            task="classify",
            position=0,
            provider=provider,
            base_url=base_url,
            model=model,
            capabilities={"structured": "json_schema", "images": True},
        )
        session.add_all([account, setting])
        session.flush()
        setting.api_key_enc = rt.secrets.encrypt(api_key, owner=f"provider_settings:{setting.id}")
        return user.id, account.id, setting.id


def seed_message(
    rt: Runtime,
    account_id: int,
    *,
    uid: int,
    body: str = "Hello, can we meet?",
    subject: str = "Hello",
) -> int:
    mail = EmailMessage()
    mail["From"] = "Alice <alice@example.test>"
    mail["To"] = "owner@example.test"
    mail["Subject"] = subject
    mail.set_content(body)
    raw = mail.as_bytes()
    with transaction(rt.db) as session:
        message = Message(
            account_id=account_id,
            folder="INBOX",
            uidvalidity=1,
            uid=uid,
            subject=subject,
            from_addr="Alice <alice@example.test>",
            to_addrs=["owner@example.test"],
            text_body=body,
            raw=raw,
            raw_sha256=hashlib.sha256(raw).hexdigest(),
            size=len(raw),
            status=statuses.QUEUED,
        )
        session.add(message)
        session.flush()
        return message.id
