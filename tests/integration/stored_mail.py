"""Helpers for in-process stage tests: store real mail through the ingest code, run stages."""

from __future__ import annotations

from decimal import Decimal
from email.message import EmailMessage

from sqlalchemy import func, select

from tests.integration.seed import RecordingEnqueuer
from triage.adapters.db.session import transaction
from triage.adapters.db.tables import Message, ProviderSetting, UsageEntry, User
from triage.domain import statuses
from triage.pipeline.draft import draft_message
from triage.pipeline.message_store import NewMessage, store_message
from triage.pipeline.model_calls import StageOutcome
from triage.pipeline.triage import triage_message
from triage.runtime import Runtime


def store_raw(rt: Runtime, account_id: int, uid: int, raw: bytes) -> int:
    """Parse and store like `triage sync` does, then mark the message queued."""
    with transaction(rt.db) as session:
        outcome = store_message(
            session,
            NewMessage(account_id, "INBOX", 1, uid, len(raw), raw),
            settings=rt.settings,
        )
        assert outcome.message_id is not None, outcome
        message = session.get_one(Message, outcome.message_id)
        message.status = statuses.QUEUED
        return message.id


def mail(
    body: str,
    *,
    subject: str = "Hello",
    sender: str = "Alice <alice@example.test>",
    headers: dict[str, str] | None = None,
    date: str = "Tue, 03 Nov 2026 09:30:00 +0000",
    message_id: str | None = None,
    in_reply_to: str | None = None,
) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = "owner@example.test"
    message["Subject"] = subject
    message["Date"] = date
    if message_id:
        message["Message-ID"] = message_id
    if in_reply_to:
        message["In-Reply-To"] = in_reply_to
        message["References"] = in_reply_to
    for name, value in (headers or {}).items():
        message[name] = value
    message.set_content(body)
    return message.as_bytes()


def triage(rt: Runtime, message_id: int, enqueue: RecordingEnqueuer) -> StageOutcome:
    return triage_message(
        message_id=message_id,
        db=rt.db,
        model=rt.model,
        secrets=rt.secrets,
        enqueue=enqueue,
        settings=rt.settings,
    )


def draft(rt: Runtime, message_id: int) -> StageOutcome:
    return draft_message(
        message_id=message_id, db=rt.db, model=rt.model, secrets=rt.secrets, settings=rt.settings
    )


def set_user(rt: Runtime, user_id: int, **values: object) -> None:
    with transaction(rt.db) as session:
        user = session.get_one(User, user_id)
        for name, value in values.items():
            setattr(user, name, value)


def set_price(rt: Runtime, setting_id: int, price: str) -> None:
    with transaction(rt.db) as session:
        session.get_one(ProviderSetting, setting_id).price_override = price


def ledger_total(rt: Runtime, user_id: int) -> Decimal:
    with rt.db() as session:
        total = session.scalar(
            select(func.sum(UsageEntry.cost_usd)).where(UsageEntry.user_id == user_id)
        )
    return Decimal(total or 0)


def status_of(rt: Runtime, message_id: int) -> tuple[str, str | None]:
    with rt.db() as session:
        message = session.get_one(Message, message_id)
        return message.status, message.error
