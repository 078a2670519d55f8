"""The safety net: re-enqueue messages stuck unfinished, and send failed ones back on request."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, and_, or_, select

from triage.adapters.db.session import SessionFactory, transaction
from triage.adapters.db.tables import Draft, Message, TriageResult
from triage.domain import statuses
from triage.pipeline.model_calls import set_status
from triage.pipeline.ports import Enqueuer
from triage.pipeline.write_back import lost_write_backs

log = logging.getLogger(__name__)


def sweep_stuck(
    *, db: SessionFactory, enqueue: Enqueuer, older_than: timedelta, limit: int = 1000
) -> int:
    """Re-enqueue unfinished messages untouched for a while (a lost broker loses no mail),
    triaged ones whose draft task was lost, and finished ones whose write-back was lost."""
    cutoff = datetime.now(UTC) - older_than
    with transaction(db) as session:
        ids = list(
            session.scalars(
                select(Message.id)
                .where(Message.status_changed_at < cutoff)
                .where(or_(Message.status.in_(statuses.UNFINISHED), _draft_lost()))
                .order_by(Message.id)
                .limit(limit)
            )
        )
        _requeue(session.scalars(select(Message).where(Message.id.in_(ids))))
        unwritten = lost_write_backs(session, before=cutoff, limit=limit)
    enqueue.triage_many(ids)
    for message_id in unwritten:
        enqueue.write_back(message_id)
    if ids:
        log.info("sweeper re-enqueued %d stuck messages", len(ids))
    if unwritten:
        log.info("sweeper re-sent %d lost write-backs", len(unwritten))
    return len(ids) + len(unwritten)


def _draft_lost() -> ColumnElement[bool]:
    """Triaged, wanting a reply, no draft and no draft error: the draft task was lost (a worker
    killed after the result was stored); triage's resume path re-enqueues the draft."""
    wants = (
        select(TriageResult.id)
        .where(TriageResult.message_id == Message.id, TriageResult.needs_reply.is_(True))
        .exists()
    )
    drafted = select(Draft.id).where(Draft.message_id == Message.id).exists()
    return and_(Message.status == statuses.TRIAGED, Message.error.is_(None), wants, ~drafted)


def retry_messages(
    *, db: SessionFactory, enqueue: Enqueuer, status: str, limit: int = 10_000
) -> int:
    """`triage retry`: send messages with this status back to the queue."""
    if status not in statuses.RETRYABLE:
        raise ValueError(f"cannot retry status {status!r}; one of {sorted(statuses.RETRYABLE)}")
    with transaction(db) as session:
        messages = list(
            session.scalars(
                select(Message).where(Message.status == status).order_by(Message.id).limit(limit)
            )
        )
        ids = [message.id for message in messages]
        _requeue(messages)
    enqueue.triage_many(ids)
    return len(ids)


def _requeue(messages: Iterable[Message]) -> None:
    for message in messages:
        set_status(message, statuses.QUEUED, message.error)
