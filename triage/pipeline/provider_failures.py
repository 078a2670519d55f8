"""How a stage reacts when the provider fails: stop on a bad key, wait on 429, back off on 5xx."""

from __future__ import annotations

import logging
import random

from triage.adapters.db.session import SessionFactory, transaction
from triage.adapters.db.tables import Message
from triage.config import Settings
from triage.domain import statuses
from triage.pipeline.model_calls import (
    StageOutcome,
    backoff_seconds,
    invalidate_setting,
    record_usage,
    set_status,
)
from triage.pipeline.ports import (
    ProviderAuthError,
    ProviderConfig,
    ProviderError,
    ProviderRateLimited,
    ProviderUnavailable,
)

log = logging.getLogger(__name__)
MAX_RATE_LIMIT_WAITS = 30


def handle_provider_error(
    db: SessionFactory,
    exc: ProviderError,
    *,
    message_id: int,
    user_id: int,
    config: ProviderConfig,
    task: str,
    attempt: int,
    settings: Settings,
) -> StageOutcome:
    """Record what was billed, then decide: retry later (through the queue) or finish as failed."""
    retry_after = _retry_delay(exc, attempt, settings)
    with transaction(db) as session:
        record_usage(
            session,
            user_id=user_id,
            message_id=message_id,
            task=task,
            config=config,
            usage=exc.usage,
            outcome=type(exc).__name__,
        )
        message = session.get_one(Message, message_id)
        if isinstance(exc, ProviderAuthError):
            invalidate_setting(session, config.setting_id, exc.reason)
        if retry_after is not None:
            if task == "classify":  # a draft retry leaves the triaged message as it is
                set_status(message, statuses.QUEUED, f"will retry: {exc.reason}")
            log.info("message %s: %s; retry in %.0fs", message_id, exc.reason, retry_after)
            return StageOutcome(status=statuses.QUEUED, retry_after=retry_after, detail=exc.reason)
        reason = _final_reason(exc, task)
        if task == "classify":
            set_status(message, statuses.FAILED, reason)
        else:
            message.error = reason  # the triage result stands; only the draft is missing
        log.warning("message %s %s failed: %s", message_id, task, reason)
        return StageOutcome(status=statuses.FAILED, detail=reason)


def _retry_delay(exc: ProviderError, attempt: int, settings: Settings) -> float | None:
    if isinstance(exc, ProviderRateLimited) and attempt < MAX_RATE_LIMIT_WAITS:
        return exc.retry_after + random.uniform(0, 1 + exc.retry_after / 10)
    if isinstance(exc, ProviderUnavailable) and attempt < settings.model_max_attempts:
        return backoff_seconds(attempt)
    return None


def _final_reason(exc: ProviderError, task: str) -> str:
    if isinstance(exc, ProviderAuthError):
        return f"{task}: model key rejected, setting disabled until it is fixed: {exc.reason}"
    return f"{task}: {exc.reason}"
