"""What the triage and draft stages share around a model call: settings, usage, retry timing."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from triage.adapters.db.tables import Message, ProviderSetting, UsageEntry
from triage.adapters.models.prices import call_cost
from triage.adapters.secrets import SecretBox, SecretDecryptError
from triage.pipeline.ports import ProviderConfig, Usage


@dataclass(frozen=True)
class StageOutcome:
    """How a stage ended; `retry_after` asks the runner to run it again after that many seconds."""

    status: str
    retry_after: float | None = None
    detail: str | None = None


def provider_configs(
    session: Session, *, user_id: int, task: str, secrets: SecretBox
) -> list[ProviderConfig]:
    """The user's own valid settings for a task, primary first; draft falls back to classify."""
    for wanted in (task, "classify") if task != "classify" else (task,):
        rows = session.scalars(
            select(ProviderSetting)
            .where(ProviderSetting.user_id == user_id, ProviderSetting.task == wanted)
            .order_by(ProviderSetting.position)
        ).all()
        if rows:
            return [_decrypted(row, secrets) for row in rows if row.valid]
    return []


def _decrypted(row: ProviderSetting, secrets: SecretBox) -> ProviderConfig:
    api_key = ""
    if row.api_key_enc:
        try:
            api_key = secrets.decrypt(row.api_key_enc, owner=f"provider_settings:{row.id}")
        except SecretDecryptError:
            api_key = ""
    return ProviderConfig(
        setting_id=row.id,
        provider=row.provider,
        base_url=row.base_url,
        model=row.model,
        api_key=api_key,
        capabilities=dict(row.capabilities or {}),
    )


def invalidate_setting(session: Session, setting_id: int, reason: str) -> None:
    row = session.get_one(ProviderSetting, setting_id)
    row.valid = False
    row.invalid_reason = reason


def remember_capabilities(session: Session, setting_id: int, learned: dict[str, object]) -> None:
    row = session.get_one(ProviderSetting, setting_id)
    if learned and dict(row.capabilities or {}) != learned:
        row.capabilities = dict(learned)


def record_usage(
    session: Session,
    *,
    user_id: int,
    message_id: int,
    task: str,
    config: ProviderConfig,
    usage: Usage,
    outcome: str,
) -> UsageEntry | None:
    """One ledger row per stage run that reached the provider (failed calls are billed too)."""
    if usage.calls == 0:
        return None
    entry = UsageEntry(
        user_id=user_id,
        message_id=message_id,
        task=task,
        provider=config.provider,
        model=config.model,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cost_usd=call_cost(
            provider=config.provider,
            model=config.model,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
        ),
        outcome=outcome,
    )
    session.add(entry)
    return entry


def set_status(message: Message, status: str, error: str | None = None) -> None:
    message.status = status
    message.error = error
    message.status_changed_at = datetime.now(UTC)


def backoff_seconds(attempt: int, *, base: float = 5.0, cap: float = 300.0) -> float:
    """Exponential backoff with full jitter, so retries from many workers spread out."""
    return random.uniform(base, min(cap, base * 2 ** max(0, attempt - 1)) + base)
