"""Triage stage: claim a message, ask the owner's model to classify it, store the checked answer."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from triage.adapters.db.session import SessionFactory, transaction
from triage.adapters.db.tables import Draft, MailAccount, Message, TriageResult, User
from triage.adapters.secrets import SecretBox
from triage.config import Settings
from triage.domain import statuses
from triage.domain.policy import check_answer
from triage.domain.prompts import PROMPT_VERSION, new_boundary, triage_messages
from triage.domain.schemas import (
    DEFAULT_CATEGORIES,
    Category,
    TriageAnswer,
    parse_categories,
    strict_json_schema,
    validate_category,
)
from triage.domain.screening import action_for, screen
from triage.pipeline.budget import user_over_budget_reason
from triage.pipeline.fallbacks import ModelRequest, ask_with_fallbacks
from triage.pipeline.model_calls import (
    StageOutcome,
    provider_configs,
    record_usage,
    remember_capabilities,
    set_status,
)
from triage.pipeline.ports import Enqueuer, ModelPort, ModelReply, ProviderConfig
from triage.pipeline.prompt_input import prompt_email
from triage.pipeline.result_rows import triage_result
from triage.pipeline.write_back import write_back_on, write_back_wanted

log = logging.getLogger(__name__)
TASK = "classify"
CHEAP_TASK = "cheap"  # the model setting for screened bulk / no-reply mail


@dataclass(frozen=True)
class _Claim:
    user_id: int
    config: ProviderConfig
    messages: list[dict[str, Any]]
    images: int
    categories: tuple[Category, ...] = DEFAULT_CATEGORIES
    screening_rule: str | None = None
    email_text: str = ""
    sent: date | None = None
    write_back: bool = True  # False: the account wants nothing written back, no check needed


DRAFT_PENDING = "already triaged; the draft is still to be written"


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
        if claim.detail == DRAFT_PENDING:  # sent back by `retry` after the draft hit the budget
            enqueue.draft(message_id)
        return claim

    def check(answer: TriageAnswer) -> None:
        validate_category(answer, claim.categories)

    request = ModelRequest(
        messages=claim.messages,
        answer_type=TriageAnswer,
        schema_name="triage",
        json_schema=strict_json_schema(TriageAnswer, claim.categories),
        check=check,
    )
    answered = ask_with_fallbacks(
        request,
        first=claim.config,
        message_id=message_id,
        user_id=claim.user_id,
        task=TASK,
        attempt=attempt,
        db=db,
        model=model,
        secrets=secrets,
        settings=settings,
    )
    if isinstance(answered, StageOutcome):
        return answered
    reply = answered.reply
    # The result names the setting that answered, which may be a fallback.
    outcome = _store(db, message_id, replace(claim, config=answered.config), reply)
    # The result is committed: only now may it be written back to the mailbox (if wanted).
    if (
        outcome.status == statuses.TRIAGED
        and claim.write_back
        and write_back_wanted(db=db, message_id=message_id)
    ):
        enqueue.write_back(message_id)
    if outcome.status == statuses.TRIAGED and reply.answer.needs_reply:
        enqueue.draft(message_id)
    return outcome


def _claim(
    db: SessionFactory, message_id: int, secrets: SecretBox, settings: Settings
) -> _Claim | StageOutcome:
    """Decide under the row lock whether a model call goes out, and build its prompt."""
    with transaction(db) as session:
        message = session.get(Message, message_id, with_for_update=True)
        if message is None:
            return StageOutcome(status="missing", detail=f"no message {message_id}")
        if message.status not in statuses.UNFINISHED:
            return StageOutcome(status=message.status, detail="nothing to do")
        if _has_result(session, message_id):
            return _resume(session, message)
        account = session.get_one(MailAccount, message.account_id)
        user = session.get_one(User, account.user_id)
        gate = _gate(session, message, user)
        if isinstance(gate, StageOutcome):
            return gate
        configs = provider_configs(session, user_id=user.id, task=gate, secrets=secrets)
        if not configs:
            set_status(
                message,
                statuses.FAILED,
                "no valid model is configured for this user (triage providers set)",
            )
            return StageOutcome(status=statuses.FAILED, detail=message.error)
        email = prompt_email(message, max_images=settings.images_per_message, session=session)
        categories = _categories(user)
        set_status(message, statuses.PROCESSING)
    messages = triage_messages(
        email, categories=categories, max_chars=settings.prompt_max_chars, boundary=new_boundary()
    )
    return _Claim(
        user_id=user.id,
        config=configs[0],
        messages=messages,
        images=len(email.images),
        categories=categories,
        screening_rule=message.screening_rule,
        email_text=email.text,
        sent=email.date.date() if email.date else None,
        write_back=write_back_on(account),
    )


def _gate(session: Session, message: Message, user: User) -> StageOutcome | str:
    """Screening, then the budget: an outcome when no call goes out, else the settings' task."""
    screened = screen(message)
    message.screening_rule = screened.rule if screened else None
    action = action_for(screened.rule, user.screening) if screened else "model"
    if screened is not None and action == "skip":
        set_status(
            message,
            statuses.SKIPPED,
            f"screened as {screened.rule} ({screened.reason}); the model was not called",
        )
        return StageOutcome(status=statuses.SKIPPED, detail=message.error)
    reason = user_over_budget_reason(session, user)
    if reason is not None:
        set_status(message, statuses.OVER_BUDGET, reason)
        return StageOutcome(status=statuses.OVER_BUDGET, detail=reason)
    # A `cheap` setting, when the user has one; provider_configs falls back to classify.
    return CHEAP_TASK if action == "cheap" else TASK


def _categories(user: User) -> tuple[Category, ...]:
    try:
        return parse_categories(user.categories)
    except ValueError as exc:  # saved before validation existed, or edited by hand
        log.warning("user %s has unusable categories (%s); using the defaults", user.id, exc)
        return DEFAULT_CATEGORIES


def _resume(session: Session, message: Message) -> StageOutcome:
    """A message sent back to the queue after it was triaged: only its draft may be missing."""
    result = session.scalars(
        select(TriageResult).where(
            TriageResult.message_id == message.id, TriageResult.prompt_version == PROMPT_VERSION
        )
    ).one()
    has_draft = session.scalar(select(Draft.id).where(Draft.message_id == message.id))
    set_status(message, statuses.DRAFTED if has_draft else statuses.TRIAGED)
    if result.needs_reply and has_draft is None:
        return StageOutcome(status=statuses.TRIAGED, detail=DRAFT_PENDING)
    return StageOutcome(status=message.status, detail="nothing to do")


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
    checked = check_answer(answer, sent=claim.sent, email_text=claim.email_text)
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
            result = triage_result(
                message_id=message_id,
                prompt_version=PROMPT_VERSION,
                config=config,
                reply=reply,
                checked=checked,
                images_sent=claim.images,
                cost_usd=entry.cost_usd if entry else None,
                screening_rule=claim.screening_rule,
            )
            session.add(result)
            remember_capabilities(
                session, config.setting_id, reply.capabilities, known=config.capabilities
            )
            set_status(session.get_one(Message, message_id), statuses.TRIAGED)
    except IntegrityError:
        log.info("message %s already has a %s result", message_id, PROMPT_VERSION)
        return StageOutcome(status=statuses.TRIAGED, detail="result already stored")
    return StageOutcome(status=statuses.TRIAGED)
