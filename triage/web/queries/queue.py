"""The review queue: unreviewed current results, the doubtful ones first.

Doubtful means confidence under the threshold, flagged as suspicious (by the model's own
injection flag or its category) or answered differently by a fallback model. Those come
first, least confident first; the rest follow, newest first, for spot checks. Each part is
read with a keyset (no OFFSET), so a page costs the same on the first and the last page.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field
from sqlalchemy import ColumnElement, exists, not_, or_, select, tuple_
from sqlalchemy.orm import Session, aliased

from triage.adapters.db.tables import MailAccount, Message, Review, TriageResult, User
from triage.web.queries.scope import AnySelect, account_ids, limit_accounts
from triage.web.sessions import Viewer

Part = Literal["doubtful", "rest"]


class QueueCursor(BaseModel):
    part: Part = "doubtful"
    confidence: float | None = None
    result_id: int | None = None


class QueueRow(BaseModel):
    result_id: int
    message_id: int
    owner_id: int
    owner: str
    subject: str
    from_addr: str
    sent_at: datetime | None
    category: str
    priority: str
    confidence: float
    summary: str
    injection_suspected: bool
    fallback_disagreed: bool
    provider: str
    model: str
    doubtful: bool


class QueuePage(BaseModel):
    rows: list[QueueRow]
    next: QueueCursor | None = Field(description="pass back as part/confidence/result_id")


def doubtful(threshold: float) -> ColumnElement[bool]:
    return or_(
        TriageResult.confidence < threshold,
        TriageResult.injection_suspected.is_(True),
        TriageResult.fallback_disagreed.is_(True),
        TriageResult.category == "suspicious",
    )


def review_queue(
    session: Session,
    viewer: Viewer,
    *,
    threshold: float,
    page_size: int,
    cursor: QueueCursor | None = None,
    user_id: int | None = None,
) -> QueuePage:
    cursor = cursor or QueueCursor()
    ids = account_ids(session, viewer, user_id)
    rows: list[QueueRow] = []
    if cursor.part == "doubtful":
        stmt = queue_statement(ids, threshold, "doubtful", cursor, page_size + 1)
        rows = _rows(session, stmt, doubtful=True)
        if len(rows) > page_size:
            last = rows[page_size - 1]
            return QueuePage(rows=rows[:page_size], next=_after(last, "doubtful"))
        cursor = QueueCursor(part="rest")
    wanted = page_size - len(rows)
    rest = _rows(
        session, queue_statement(ids, threshold, "rest", cursor, wanted + 1), doubtful=False
    )
    more = len(rest) > wanted
    rows += rest[:wanted]
    following = _after(rows[-1], "rest") if more and rows else None
    if more and not rest[:wanted]:
        following = cursor  # the doubtful part filled the page exactly
    return QueuePage(rows=rows, next=following)


def queue_statement(
    ids: list[int] | None, threshold: float, part: Part, cursor: QueueCursor, limit: int
) -> AnySelect:
    newer = aliased(TriageResult)
    stmt = (
        select(
            TriageResult.id.label("result_id"),
            TriageResult.message_id,
            User.id.label("owner_id"),
            User.email.label("owner"),
            Message.subject,
            Message.from_addr,
            Message.sent_at,
            TriageResult.category,
            TriageResult.priority,
            TriageResult.confidence,
            TriageResult.summary,
            TriageResult.injection_suspected,
            TriageResult.fallback_disagreed,
            TriageResult.provider,
            TriageResult.model,
        )
        .select_from(TriageResult)
        .join(Message, Message.id == TriageResult.message_id)
        .join(MailAccount)
        .join(User)
        .where(
            ~exists().where(Review.result_id == TriageResult.id),
            ~exists().where(
                newer.message_id == TriageResult.message_id, newer.id > TriageResult.id
            ),
        )
    )
    stmt = limit_accounts(stmt, ids)
    if part == "doubtful":
        stmt = stmt.where(doubtful(threshold))
        if cursor.result_id is not None and cursor.confidence is not None:
            stmt = stmt.where(
                tuple_(TriageResult.confidence, TriageResult.id)
                > tuple_(cursor.confidence, cursor.result_id)
            )
        return stmt.order_by(TriageResult.confidence, TriageResult.id).limit(limit)
    stmt = stmt.where(not_(doubtful(threshold)))
    if cursor.result_id is not None:
        stmt = stmt.where(TriageResult.id < cursor.result_id)
    return stmt.order_by(TriageResult.id.desc()).limit(limit)


def _rows(session: Session, stmt: AnySelect, *, doubtful: bool) -> list[QueueRow]:
    return [
        QueueRow.model_validate({**row._mapping, "doubtful": doubtful})
        for row in session.execute(stmt)
    ]


def _after(row: QueueRow, part: Part) -> QueueCursor:
    return QueueCursor(part=part, confidence=row.confidence, result_id=row.result_id)
