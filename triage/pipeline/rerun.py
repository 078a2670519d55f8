"""Re-run stage: triage a message again, as the console asked, with one of the owner's models.

The answer becomes a new result whose prompt version is the current one plus ``+rerun<ID>``
of the request, so "one result per (message, prompt version)" stays true for normal triage,
a redelivered task still stores at most one result, and the earlier answers stay untouched.
The message keeps its status, and no draft or write-back follows: a re-run is for comparing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy.exc import IntegrityError

from triage.adapters.db.session import SessionFactory, transaction
from triage.adapters.db.tables import (
    MailAccount,
    Message,
    ProviderSetting,
    RerunRequest,
    User,
)
from triage.adapters.secrets import SecretBox
from triage.config import Settings
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
from triage.pipeline.budget import user_over_budget_reason
from triage.pipeline.model_calls import (
    StageOutcome,
    backoff_seconds,
    invalidate_setting,
    record_usage,
    remember_capabilities,
    usable_config,
)
from triage.pipeline.ports import (
    ModelPort,
    ModelReply,
    ProviderAuthError,
    ProviderConfig,
    ProviderError,
    ProviderRateLimited,
    ProviderUnavailable,
)
from triage.pipeline.prompt_input import prompt_email
from triage.pipeline.result_rows import triage_result

log = logging.getLogger(__name__)
TASK = "classify"
DONE, FAILED = "done", "failed"


def rerun_version(request_id: int) -> str:
    return f"{PROMPT_VERSION}+rerun{request_id}"


@dataclass(frozen=True)
class _Claim:
    message_id: int
    user_id: int
    config: ProviderConfig
    messages: list[dict[str, Any]]
    categories: tuple[Category, ...]
    images: int
    email_text: str
    sent: date | None


def rerun_triage(
    *,
    request_id: int,
    attempt: int = 1,
    db: SessionFactory,
    model: ModelPort,
    secrets: SecretBox,
    settings: Settings,
) -> StageOutcome:
    claim = _claim(db, request_id, secrets, settings)
    if isinstance(claim, StageOutcome):
        return claim

    def check(answer: TriageAnswer) -> None:
        validate_category(answer, claim.categories)

    try:
        reply = model.ask(
            claim.config,
            messages=claim.messages,
            answer_type=TriageAnswer,
            schema_name="triage",
            json_schema=strict_json_schema(TriageAnswer, claim.categories),
            check=check,
        )
    except ProviderError as exc:
        return _failed_call(db, request_id, claim, exc, attempt=attempt, settings=settings)
    return _store(db, request_id, claim, reply)


def _claim(
    db: SessionFactory, request_id: int, secrets: SecretBox, settings: Settings
) -> _Claim | StageOutcome:
    with transaction(db) as session:
        request = session.get(RerunRequest, request_id, with_for_update=True)
        if request is None:
            return StageOutcome(status="missing", detail=f"no re-run request {request_id}")
        if request.status != "queued":
            return StageOutcome(status=request.status, detail="nothing to do")
        message = session.get_one(Message, request.message_id)
        user = session.get_one(User, session.get_one(MailAccount, message.account_id).user_id)
        setting = session.get(ProviderSetting, request.setting_id) if request.setting_id else None
        config = usable_config(setting, secrets) if setting is not None else None
        problem = (
            "the chosen model setting no longer exists"
            if setting is None or setting.user_id != user.id
            else "the model key does not decrypt with the configured secret keys"
            if config is None
            else user_over_budget_reason(session, user)
        )
        if problem is not None or config is None:
            _finish(request, FAILED, error=problem)
            return StageOutcome(status=FAILED, detail=problem)
        email = prompt_email(message, max_images=settings.images_per_message, session=session)
        categories = _categories(user)
    messages = triage_messages(
        email, categories=categories, max_chars=settings.prompt_max_chars, boundary=new_boundary()
    )
    return _Claim(
        message_id=message.id,
        user_id=user.id,
        config=config,
        messages=messages,
        categories=categories,
        images=len(email.images),
        email_text=email.text,
        sent=email.date.date() if email.date else None,
    )


def _categories(user: User) -> tuple[Category, ...]:
    try:
        return parse_categories(user.categories)
    except ValueError:
        return DEFAULT_CATEGORIES


def _finish(request: RerunRequest, status: str, *, error: str | None = None) -> None:
    request.status, request.error = status, error
    request.finished_at = datetime.now(UTC)


def _failed_call(
    db: SessionFactory,
    request_id: int,
    claim: _Claim,
    exc: ProviderError,
    *,
    attempt: int,
    settings: Settings,
) -> StageOutcome:
    """Bill what was used; wait on 429, back off on 5xx a bounded number of times, else fail."""
    with transaction(db) as session:
        record_usage(
            session,
            user_id=claim.user_id,
            message_id=claim.message_id,
            task=TASK,
            config=claim.config,
            usage=exc.usage,
            outcome=type(exc).__name__,
        )
        if isinstance(exc, ProviderRateLimited):
            return StageOutcome(status="queued", retry_after=exc.retry_after)
        if isinstance(exc, ProviderUnavailable) and attempt < settings.model_max_attempts:
            return StageOutcome(status="queued", retry_after=backoff_seconds(attempt))
        if isinstance(exc, ProviderAuthError):
            invalidate_setting(session, claim.config.setting_id, exc.reason)
        _finish(session.get_one(RerunRequest, request_id), FAILED, error=exc.reason)
    return StageOutcome(status=FAILED, detail=exc.reason)


def _store(
    db: SessionFactory, request_id: int, claim: _Claim, reply: ModelReply[TriageAnswer]
) -> StageOutcome:
    answer, usage, config = reply.answer, reply.usage, claim.config
    checked = check_answer(answer, sent=claim.sent, email_text=claim.email_text)
    try:
        with transaction(db) as session:
            entry = record_usage(
                session,
                user_id=claim.user_id,
                message_id=claim.message_id,
                task=TASK,
                config=config,
                usage=usage,
                outcome="ok",
            )
            result = triage_result(
                message_id=claim.message_id,
                prompt_version=rerun_version(request_id),
                config=config,
                reply=reply,
                checked=checked,
                images_sent=claim.images,
                cost_usd=entry.cost_usd if entry else None,
            )
            session.add(result)
            session.flush()
            remember_capabilities(
                session, config.setting_id, reply.capabilities, known=config.capabilities
            )
            request = session.get_one(RerunRequest, request_id)
            request.result_id = result.id
            _finish(request, DONE)
    except IntegrityError:
        log.info("re-run %s already stored its result", request_id)
        return StageOutcome(status=DONE, detail="result already stored")
    return StageOutcome(status=DONE)
