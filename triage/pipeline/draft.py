"""Draft stage: for a triaged message that needs a reply, write at most one draft. Never sent."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from triage.adapters.db.session import SessionFactory, transaction
from triage.adapters.db.tables import Draft, MailAccount, Message, TriageResult, User
from triage.adapters.secrets import SecretBox
from triage.config import Settings
from triage.domain import statuses
from triage.domain.drafts import clean_draft
from triage.domain.prompts import DRAFT_PROMPT_VERSION, draft_messages, new_boundary
from triage.domain.schemas import DraftAnswer, strict_json_schema
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
from triage.pipeline.prompt_input import prompt_email, reply_language
from triage.pipeline.write_back import write_back_on, write_back_wanted

log = logging.getLogger(__name__)
TASK = "draft"


@dataclass(frozen=True)
class _Claim:
    user_id: int
    config: ProviderConfig
    messages: list[dict[str, Any]]
    thread_text: str = ""  # links in the draft must appear here
    write_back: bool = True  # False: the account wants nothing written back, no check needed


def draft_message(
    *,
    message_id: int,
    attempt: int = 1,
    db: SessionFactory,
    model: ModelPort,
    secrets: SecretBox,
    settings: Settings,
    enqueue: Enqueuer | None = None,
) -> StageOutcome:
    """One draft per message, even when the task is delivered twice (a unique key decides)."""
    claim = _claim(db, message_id, secrets, settings)
    if isinstance(claim, StageOutcome):
        return claim
    request = ModelRequest(
        messages=claim.messages,
        answer_type=DraftAnswer,
        schema_name="draft",
        json_schema=strict_json_schema(DraftAnswer),
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
    # The draft names the setting that wrote it, which may be a fallback.
    outcome = _store(db, message_id, replace(claim, config=answered.config), answered.reply)
    # Committed: now it may be APPENDed to the user's Drafts folder, if the account wants that.
    if (
        enqueue is not None
        and outcome.status == statuses.DRAFTED
        and claim.write_back
        and write_back_wanted(db=db, message_id=message_id)
    ):
        enqueue.write_back(message_id)
    return outcome


def _claim(
    db: SessionFactory, message_id: int, secrets: SecretBox, settings: Settings
) -> _Claim | StageOutcome:
    with transaction(db) as session:
        message = session.get(Message, message_id, with_for_update=True)
        if message is None:
            return StageOutcome(status="missing")
        wants_reply = session.scalar(
            select(TriageResult.needs_reply)
            .where(TriageResult.message_id == message_id)
            .order_by(TriageResult.id.desc())
            .limit(1)
        )
        already = session.scalar(select(Draft.id).where(Draft.message_id == message_id))
        if not wants_reply or already is not None:
            return StageOutcome(status=message.status, detail="no draft needed")
        account = session.get_one(MailAccount, message.account_id)
        user = session.get_one(User, account.user_id)
        reason = user_over_budget_reason(session, user)
        if reason is not None:  # `triage retry --status over_budget` brings it back
            set_status(message, statuses.OVER_BUDGET, f"draft: {reason}")
            return StageOutcome(status=statuses.OVER_BUDGET, detail=message.error)
        configs = provider_configs(session, user_id=user.id, task=TASK, secrets=secrets)
        if not configs:
            message.error = "draft: no valid model is configured for this user"
            return StageOutcome(status=message.status, detail=message.error)
        email = prompt_email(message, max_images=0, session=session)
        style_note, style_profile = user.style_note, user.style_profile
    messages = draft_messages(
        email,
        style_note=style_note,
        style_profile=style_profile,
        language=reply_language(email.text),
        max_chars=settings.prompt_max_chars,
        boundary=new_boundary(),
    )
    thread = "\n".join([email.subject, email.text, *(m.text for m in email.earlier)])
    return _Claim(
        user_id=user.id,
        config=configs[0],
        messages=messages,
        thread_text=thread,
        write_back=write_back_on(account),
    )


def _store(
    db: SessionFactory, message_id: int, claim: _Claim, reply: ModelReply[DraftAnswer]
) -> StageOutcome:
    config, usage = claim.config, reply.usage
    draft = clean_draft(reply.answer.body, thread_text=claim.thread_text)
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
            session.add(
                Draft(
                    message_id=message_id,
                    body=draft.body or reply.answer.body.strip(),
                    flags=list(draft.flags),
                    provider=config.provider,
                    model=config.model,
                    prompt_version=DRAFT_PROMPT_VERSION,
                    input_tokens=usage.input_tokens,
                    output_tokens=usage.output_tokens,
                    cost_usd=entry.cost_usd if entry else None,
                )
            )
            remember_capabilities(
                session, config.setting_id, reply.capabilities, known=config.capabilities
            )
            session.flush()
            set_status(session.get_one(Message, message_id), statuses.DRAFTED)
    except IntegrityError:
        log.info("message %s already has a draft", message_id)
        return StageOutcome(status=statuses.DRAFTED, detail="draft already stored")
    return StageOutcome(status=statuses.DRAFTED)
