"""What the triage and draft stages share around a model call: settings, usage, retry timing."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from triage.adapters.db.tables import Message, ProviderSetting, UsageEntry
from triage.adapters.models.prices import call_cost, parse_override
from triage.adapters.secrets import SecretBox, SecretDecryptError
from triage.pipeline.ports import ProviderConfig, Usage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StageOutcome:
    """How a stage ended; `retry_after` asks the runner to run it again after that many seconds."""

    status: str
    retry_after: float | None = None
    detail: str | None = None
    # False for our own pacing: the wait is not a failed try and must not use up the retries.
    counts_as_attempt: bool = True


def provider_configs(
    session: Session, *, user_id: int, task: str, secrets: SecretBox
) -> list[ProviderConfig]:
    """The user's own valid settings for a task, primary first; other tasks fall back to classify.

    Only this user's rows are ever read: never another user's key, never a house key.
    """
    for wanted in (task, "classify") if task != "classify" else (task,):
        rows = session.scalars(
            select(ProviderSetting)
            .where(ProviderSetting.user_id == user_id, ProviderSetting.task == wanted)
            .order_by(ProviderSetting.position)
        ).all()
        if rows:
            return [config for row in rows if row.valid and (config := usable_config(row, secrets))]
    return []


def fallback_after(
    session: Session, *, setting_id: int, secrets: SecretBox
) -> ProviderConfig | None:
    """The same user's next valid setting for the same task, after the given one; else None."""
    current = session.get_one(ProviderSetting, setting_id)
    rows = session.scalars(
        select(ProviderSetting)
        .where(
            ProviderSetting.user_id == current.user_id,
            ProviderSetting.task == current.task,
            ProviderSetting.position > current.position,
            ProviderSetting.valid.is_(True),
        )
        .order_by(ProviderSetting.position)
    ).all()
    return next((config for row in rows if (config := usable_config(row, secrets))), None)


def usable_config(row: ProviderSetting, secrets: SecretBox) -> ProviderConfig | None:
    """The setting with its key decrypted; None when the key does not decrypt here."""
    api_key = ""
    if row.api_key_enc:
        try:
            api_key = secrets.decrypt(row.api_key_enc, owner=f"provider_settings:{row.id}")
        except SecretDecryptError as exc:
            # Sending no key would earn a 401 and disable a setting that is fine: skip it.
            log.warning("provider setting %s skipped: %s", row.id, exc)
            return None
    return ProviderConfig(
        setting_id=row.id,
        provider=row.provider,
        base_url=row.base_url,
        model=row.model,
        api_key=api_key,
        capabilities=dict(row.capabilities or {}),
        requests_per_minute=row.requests_per_minute,
        price_override=row.price_override,
    )


def invalidate_setting(session: Session, setting_id: int, reason: str) -> None:
    row = session.get_one(ProviderSetting, setting_id)
    row.valid = False
    row.invalid_reason = reason


def remember_capabilities(
    session: Session,
    setting_id: int,
    learned: dict[str, object],
    *,
    known: dict[str, Any] | None = None,
) -> None:
    """Store what the call learned about the setting (a step down the ladder) when it differs.

    `known` is what the setting held when the call was built (ProviderConfig.capabilities): a
    call that learned nothing new, nearly every call, then costs no load of the row.
    """
    if not learned or (known is not None and learned == known):
        return
    row = session.get_one(ProviderSetting, setting_id)
    if dict(row.capabilities or {}) != learned:
        row.capabilities = dict(learned)


def record_usage(
    session: Session,
    *,
    user_id: int,
    message_id: int | None,
    task: str,
    config: ProviderConfig,
    usage: Usage,
    outcome: str,
) -> UsageEntry | None:
    """One ledger row per stage run that reached the provider (failed calls are billed too).

    The setting's own price (self-hosted or negotiated) beats the public table; it comes with
    the config, read with the setting when the call was built.
    """
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
            override=parse_override(config.price_override),
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
    """Exponential backoff with jitter, so retries from many workers spread out.

    Attempt n waits between base * 2**(n-1) / 2 and base * 2**(n-1), never more than `cap`.
    """
    ceiling = min(cap, base * 2 ** max(0, attempt - 1))
    return random.uniform(ceiling / 2, ceiling)
