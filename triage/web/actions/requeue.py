"""Retry a failed message and re-run triage: both only enqueue; a worker does the model call."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from triage.adapters.db.session import SessionFactory, transaction
from triage.adapters.db.tables import MailAccount, ProviderSetting, RerunRequest
from triage.domain import statuses
from triage.pipeline.model_calls import set_status
from triage.pipeline.ports import Enqueuer
from triage.web.actions import ActionError, NotVisible
from triage.web.queries.scope import visible_message
from triage.web.sessions import Viewer


def retry_message(db: SessionFactory, enqueue: Enqueuer, viewer: Viewer, message_id: int) -> None:
    """Send one message back to the queue, as `triage retry` does for a whole status."""
    with transaction(db) as session:
        message = visible_message(session, viewer, message_id)
        if message is None:
            raise NotVisible(f"message {message_id}")
        if message.status not in statuses.RETRYABLE:
            raise ActionError(
                f"a {message.status} message cannot be retried; "
                f"retry works on: {', '.join(sorted(statuses.RETRYABLE))}"
            )
        set_status(message, statuses.QUEUED, message.error)
    enqueue.triage(message_id)  # after the commit, so the worker finds the message queued


def request_rerun(
    db: SessionFactory,
    enqueue: Enqueuer,
    viewer: Viewer,
    *,
    message_id: int,
    setting_id: int | None,
) -> int:
    """Queue a fresh triage of a message, with the owner's primary model or one they chose.

    The new answer is stored as a new result (its prompt version carries the request ID), so
    the earlier answer stays as it was.
    """
    with transaction(db) as session:
        message = visible_message(session, viewer, message_id)
        if message is None:
            raise NotVisible(f"message {message_id}")
        owner_id = session.get_one(MailAccount, message.account_id).user_id
        setting = _owner_setting(session, owner_id, setting_id)
        if message.status == statuses.TOO_LARGE:
            raise ActionError("a too_large message was stored without its body: nothing to triage")
        request = RerunRequest(message_id=message_id, setting_id=setting.id, requested_by=viewer.id)
        session.add(request)
        session.flush()
        request_id = request.id
    enqueue.rerun(request_id)
    return request_id


def _owner_setting(session: Session, owner_id: int, setting_id: int | None) -> ProviderSetting:
    # Only the owner's own classify models: never another user's key, never a house key.
    stmt = select(ProviderSetting).where(
        ProviderSetting.user_id == owner_id, ProviderSetting.task == "classify"
    )
    if setting_id is not None:
        stmt = stmt.where(ProviderSetting.id == setting_id)
    setting = session.scalars(stmt.order_by(ProviderSetting.position)).first()
    if setting is None:
        raise ActionError(
            "the owner has no such classify model"
            if setting_id is not None
            else "the owner has no classify model configured (triage providers set)"
        )
    if not setting.valid:
        raise ActionError(
            f"model {setting.provider}/{setting.model} is marked invalid: {setting.invalid_reason}"
        )
    return setting
