"""How a stage reacts when the provider fails: stop on a bad key, wait on 429, back off on 5xx."""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence

from sqlalchemy.orm import Session

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
    ProviderThrottled,
    ProviderUnavailable,
)

log = logging.getLogger(__name__)


def moves_on(exc: ProviderError, *, attempt: int, settings: Settings) -> bool:
    """Whether the user's next fallback should answer now instead of this provider.

    Yes on a rejected key, a refusal, a request shape the ladder could not fix, a model that
    would not give a valid answer, and on 5xx/timeouts once this stage's retries are used up.
    No on 429s and our own pacing: the key is fine, the answer is only a wait away.
    """
    if isinstance(exc, ProviderRateLimited):
        return False
    if isinstance(exc, ProviderUnavailable):
        return attempt >= settings.model_max_attempts
    return True


def note_failure(
    session: Session,
    exc: ProviderError,
    *,
    message_id: int,
    user_id: int,
    config: ProviderConfig,
    task: str,
) -> None:
    """Bill what the failed call used, and disable a setting whose key was refused."""
    record_usage(
        session,
        user_id=user_id,
        message_id=message_id,
        task=task,
        config=config,
        usage=exc.usage,
        outcome=type(exc).__name__,
    )
    if isinstance(exc, ProviderAuthError):
        invalidate_setting(session, config.setting_id, exc.reason)


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
    earlier: Sequence[str] = (),
) -> StageOutcome:
    """Record what was billed, then decide: retry later (through the queue) or finish as failed."""
    retry_after = _retry_delay(exc, attempt, settings)
    with transaction(db) as session:
        note_failure(session, exc, message_id=message_id, user_id=user_id, config=config, task=task)
        message = session.get_one(Message, message_id)
        if retry_after is not None:
            if task == "classify":  # a draft retry leaves the triaged message as it is
                set_status(message, statuses.QUEUED, f"will retry: {exc.reason}")
            log.info("message %s: %s; retry in %.1fs", message_id, exc.reason, retry_after)
            return StageOutcome(
                status=statuses.QUEUED,
                retry_after=retry_after,
                detail=exc.reason,
                counts_as_attempt=not isinstance(exc, ProviderThrottled),
            )
        reason = _final_reason(exc, task, earlier)
        if task == "classify":
            set_status(message, statuses.FAILED, reason)
        else:
            message.error = reason  # the triage result stands; only the draft is missing
        log.warning("message %s %s failed: %s", message_id, task, reason)
        return StageOutcome(status=statuses.FAILED, detail=reason)


def _retry_delay(exc: ProviderError, attempt: int, settings: Settings) -> float | None:
    if isinstance(exc, ProviderThrottled):
        return exc.retry_after  # our own pacing: never a failure, the wait is already spread
    if isinstance(exc, ProviderRateLimited) and attempt < settings.model_max_rate_limit_waits:
        # Never earlier than Retry-After; a little later, so waiting workers do not stampede.
        return exc.retry_after + random.uniform(0, 1 + exc.retry_after / 10)
    if isinstance(exc, ProviderUnavailable) and attempt < settings.model_max_attempts:
        return backoff_seconds(
            attempt, base=settings.model_backoff_seconds, cap=settings.model_backoff_max_seconds
        )
    return None


def _final_reason(exc: ProviderError, task: str, earlier: Sequence[str]) -> str:
    if isinstance(exc, ProviderAuthError):
        reason = f"{task}: model key rejected, setting disabled until it is fixed: {exc.reason}"
    else:
        reason = f"{task}: {exc.reason}"
    if earlier:
        reason += " (after: " + "; ".join(earlier) + ")"
    return reason
