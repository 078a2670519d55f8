"""Ask the user's model for a task, moving down their own ordered list of fallbacks on failure."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic

from triage.adapters.db.session import SessionFactory, transaction
from triage.adapters.secrets import SecretBox
from triage.config import Settings
from triage.pipeline.model_calls import StageOutcome, fallback_after
from triage.pipeline.ports import AnswerT, ModelPort, ModelReply, ProviderConfig, ProviderError
from triage.pipeline.provider_failures import handle_provider_error, moves_on, note_failure

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelRequest(Generic[AnswerT]):
    """What a stage asks for, whichever provider ends up answering."""

    messages: list[dict[str, Any]]
    answer_type: type[AnswerT]
    schema_name: str
    json_schema: dict[str, Any]
    check: Callable[[AnswerT], None] | None = None


@dataclass(frozen=True)
class Answered(Generic[AnswerT]):
    """A validated answer and the setting (provider, model) that gave it."""

    config: ProviderConfig
    reply: ModelReply[AnswerT]


@dataclass(frozen=True)
class _Run:
    """What one stage run is about, for the bookkeeping of its failures."""

    message_id: int
    user_id: int
    task: str
    attempt: int
    db: SessionFactory
    secrets: SecretBox
    settings: Settings


def ask_with_fallbacks(
    request: ModelRequest[AnswerT],
    *,
    first: ProviderConfig,
    message_id: int,
    user_id: int,
    task: str,
    attempt: int,
    db: SessionFactory,
    model: ModelPort,
    secrets: SecretBox,
    settings: Settings,
) -> Answered[AnswerT] | StageOutcome:
    """The first answer down the chain; else the outcome of the last failure (retry or failed).

    A failure that `moves_on` (refusal, unfixable capability error, rejected key, invalid
    output, 5xx once the retries are spent) hands the same request to the next setting of the
    same user and task, in this run. Anything else ends the run through the queue's retry.
    """
    run = _Run(message_id, user_id, task, attempt, db, secrets, settings)
    config, earlier = first, list[str]()
    while True:
        try:
            reply = model.ask(
                config,
                messages=request.messages,
                answer_type=request.answer_type,
                schema_name=request.schema_name,
                json_schema=request.json_schema,
                check=request.check,
            )
            return Answered(config=config, reply=reply)
        except ProviderError as exc:
            following = _hand_over(exc, config, run)
            if following is None:
                return handle_provider_error(
                    db,
                    exc,
                    message_id=message_id,
                    user_id=user_id,
                    config=config,
                    task=task,
                    attempt=attempt,
                    settings=settings,
                    earlier=earlier,
                )
            earlier.append(f"{config.provider}/{config.model}: {exc.reason}")
            config = following


def _hand_over(exc: ProviderError, config: ProviderConfig, run: _Run) -> ProviderConfig | None:
    """The next setting to ask, with this failure billed (and a refused key disabled); or None."""
    if not moves_on(exc, attempt=run.attempt, settings=run.settings):
        return None
    with transaction(run.db) as session:
        following = fallback_after(session, setting_id=config.setting_id, secrets=run.secrets)
        if following is None:
            return None  # the caller records the failure as the final one
        note_failure(
            session,
            exc,
            message_id=run.message_id,
            user_id=run.user_id,
            config=config,
            task=run.task,
        )
    log.info(
        "message %s %s: %s/%s failed (%s); trying fallback %s/%s",
        run.message_id,
        run.task,
        config.provider,
        config.model,
        exc.reason,
        following.provider,
        following.model,
    )
    return following
