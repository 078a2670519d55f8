"""Triage stage: claim a message, ask the owner's model to classify it, store the checked answer."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from triage.adapters.db.session import SessionFactory, transaction
from triage.adapters.db.tables import ActionItem, MailAccount, Message, TriageResult
from triage.adapters.secrets import SecretBox
from triage.config import Settings
from triage.domain import statuses
from triage.domain.prompts import PROMPT_VERSION, new_boundary, triage_messages
from triage.domain.schemas import (
    DEFAULT_CATEGORIES,
    TriageAnswer,
    strict_json_schema,
    validate_category,
)
from triage.pipeline.model_calls import (
    StageOutcome,
    provider_configs,
    record_usage,
    remember_capabilities,
    set_status,
)
from triage.pipeline.ports import Enqueuer, ModelPort, ModelReply, ProviderConfig, ProviderError
from triage.pipeline.prompt_input import prompt_email
from triage.pipeline.provider_failures import handle_provider_error

log = logging.getLogger(__name__)
TASK = "classify"


@dataclass(frozen=True)
class _Claim:
    user_id: int
    config: ProviderConfig
    messages: list[dict[str, Any]]
    images: int


def triage_message(
    *,
    message_id: int,
    attempt: int = 1,
    db: SessionFactory,
    model: ModelPort,
    secrets: SecretBox,
    enqueue: Enqueuer,
    settings: Settings,
) -> StageOutcome:
    """Idempotent per (message, prompt version): a redelivered task finds the result and stops."""
    claim = _claim(db, message_id, secrets, settings)
    if isinstance(claim, StageOutcome):
        return claim

    def check(answer: TriageAnswer) -> None:
        validate_category(answer, DEFAULT_CATEGORIES)

    try:
        reply = model.ask(
            claim.config,
            messages=claim.messages,
            answer_type=TriageAnswer,
            schema_name="triage",
            json_schema=strict_json_schema(TriageAnswer, DEFAULT_CATEGORIES),
            check=check,
        )
    except ProviderError as exc:
        return handle_provider_error(
            db,
            exc,
            message_id=message_id,
            user_id=claim.user_id,
            config=claim.config,
            task=TASK,
            attempt=attempt,
            settings=settings,
        )
    outcome = _store(db, message_id, claim, reply)
    if outcome.status == statuses.TRIAGED and reply.answer.needs_reply:
        enqueue.draft(message_id)
    return outcome


def _claim(
    db: SessionFactory, message_id: int, secrets: SecretBox, settings: Settings
) -> _Claim | StageOutcome:
    with transaction(db) as session:
        message = session.get(Message, message_id, with_for_update=True)
        if message is None:
            return StageOutcome(status="missing", detail=f"no message {message_id}")
        if message.status not in statuses.UNFINISHED or _has_result(session, message_id):
            return StageOutcome(status=message.status, detail="nothing to do")
        user_id = session.get_one(MailAccount, message.account_id).user_id
        configs = provider_configs(session, user_id=user_id, task=TASK, secrets=secrets)
        if not configs:
            set_status(
                message,
                statuses.FAILED,
                "no valid model is configured for this user (triage providers set)",
            )
            return StageOutcome(status=statuses.FAILED, detail=message.error)
        email = prompt_email(message, max_images=settings.images_per_message)
        set_status(message, statuses.PROCESSING)
    config = configs[0]
    messages = triage_messages(
        email,
        categories=DEFAULT_CATEGORIES,
        max_chars=settings.prompt_max_chars,
        boundary=new_boundary(),
    )
    return _Claim(user_id=user_id, config=config, messages=messages, images=len(email.images))


def _has_result(session: Session, message_id: int) -> bool:
    found = session.scalar(
        select(TriageResult.id).where(
            TriageResult.message_id == message_id, TriageResult.prompt_version == PROMPT_VERSION
        )
    )
    return found is not None


def _store(
    db: SessionFactory, message_id: int, claim: _Claim, reply: ModelReply[TriageAnswer]
) -> StageOutcome:
    answer, usage, config = reply.answer, reply.usage, claim.config
    try:
        with transaction(db) as session:
            entry = record_usage(
                session,
                user_id=claim.user_id,
                message_id=message_id,
                task=TASK,
                config=config,
                usage=usage,
                outcome="ok",
            )
            result = TriageResult(
                message_id=message_id,
                prompt_version=PROMPT_VERSION,
                category=answer.category,
                priority=answer.priority.value,
                confidence=answer.confidence,
                summary=answer.summary,
                needs_reply=answer.needs_reply,
                injection_suspected=answer.contains_ai_instructions,
                images_sent=claim.images,
                provider=config.provider,
                model=config.model,
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cost_usd=entry.cost_usd if entry else None,
                latency_ms=usage.latency_ms,
                model_calls=usage.calls,
            )
            result.action_items = [
                ActionItem(
                    message_id=message_id,
                    text=item.text,
                    owner=item.owner.value,
                    due_date=item.due_date,
                    quote=item.quote,
                )
                for item in answer.action_items
            ]
            session.add(result)
            remember_capabilities(session, config.setting_id, reply.capabilities)
            set_status(session.get_one(Message, message_id), statuses.TRIAGED)
    except IntegrityError:
        log.info("message %s already has a %s result", message_id, PROMPT_VERSION)
        return StageOutcome(status=statuses.TRIAGED, detail="result already stored")
    return StageOutcome(status=statuses.TRIAGED)
