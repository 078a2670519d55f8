"""The messages list: filters, newest first, keyset pages (no OFFSET, no COUNT over the table)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import ColumnElement, exists, func, or_, select
from sqlalchemy.orm import Session, aliased

from triage.adapters.db.tables import MailAccount, Message, TriageResult, User
from triage.web.queries.scope import AnySelect, account_ids, limit_accounts
from triage.web.sessions import Viewer


class ListFilters(BaseModel):
    """What the list may be narrowed by; blank form fields mean "any"."""

    model_config = ConfigDict(extra="ignore")

    user: int | None = None
    account: int | None = None
    category: str | None = Field(default=None, max_length=64)
    status: str | None = Field(default=None, max_length=32)
    min_confidence: float | None = Field(default=None, ge=0, le=1)
    max_confidence: float | None = Field(default=None, ge=0, le=1)
    model: str | None = Field(default=None, max_length=255)
    date_from: date | None = None
    date_to: date | None = None
    q: str | None = Field(default=None, max_length=200, description="text in subject or sender")
    before: int | None = Field(default=None, description="keyset cursor: messages older than ID")

    @model_validator(mode="before")
    @classmethod
    def _blank_is_none(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: (None if v == "" else v) for k, v in data.items()}
        return data

    def by_result(self) -> bool:
        return any(
            value is not None
            for value in (self.category, self.min_confidence, self.max_confidence, self.model)
        )

    def query_args(self) -> dict[str, str]:
        """The filters as URL parameters, for the next page's link."""
        return {
            key: str(value)
            for key, value in self.model_dump(exclude={"before"}).items()
            if value is not None
        }


class MessageRow(BaseModel):
    id: int
    account_id: int
    account: str
    owner: str
    subject: str
    from_addr: str
    sent_at: datetime | None
    status: str
    error: str | None
    result_id: int | None
    category: str | None
    confidence: float | None
    provider: str | None
    model: str | None


class MessagePage(BaseModel):
    rows: list[MessageRow]
    next_before: int | None = Field(description="pass as `before` for the next page; null: end")


_COLUMNS = (
    Message.id,
    Message.account_id,
    (MailAccount.username + "@" + MailAccount.host).label("account"),
    User.email.label("owner"),
    Message.subject,
    Message.from_addr,
    Message.sent_at,
    Message.status,
    Message.error,
)


def list_messages(
    session: Session, viewer: Viewer, filters: ListFilters, *, page_size: int
) -> MessagePage:
    stmt = list_statement(session, viewer, filters, page_size=page_size)
    rows = [MessageRow.model_validate(row, from_attributes=True) for row in session.execute(stmt)]
    more = len(rows) > page_size
    rows = rows[:page_size]
    return MessagePage(rows=rows, next_before=rows[-1].id if more and rows else None)


def list_statement(
    session: Session, viewer: Viewer, filters: ListFilters, *, page_size: int
) -> AnySelect:
    """One page plus one row (to know whether there is a next page)."""
    ids = account_ids(session, viewer, filters.user)
    stmt = _by_result(filters) if filters.by_result() else _by_message()
    stmt = limit_accounts(stmt.join(MailAccount).join(User), ids)
    for condition in _message_conditions(filters):
        stmt = stmt.where(condition)
    return stmt.order_by(Message.id.desc()).limit(page_size + 1)


def _by_message() -> AnySelect:
    # No result filter: walk messages newest first and look up each one's newest result.
    newest = (
        select(func.max(TriageResult.id))
        .where(TriageResult.message_id == Message.id)
        .correlate(Message)
        .scalar_subquery()
    )
    return (
        select(*_COLUMNS, *_result_columns(TriageResult))
        .select_from(Message)
        .outerjoin(TriageResult, TriageResult.id == newest)
    )


def _by_result(filters: ListFilters) -> AnySelect:
    # A result filter: start from the results (indexed by category, confidence, model) and
    # keep only each message's newest, so the planner can pick the selective side.
    newer = aliased(TriageResult)
    stmt = (
        select(*_COLUMNS, *_result_columns(TriageResult))
        .select_from(TriageResult)
        .join(Message, Message.id == TriageResult.message_id)
        .where(
            ~exists().where(newer.message_id == TriageResult.message_id, newer.id > TriageResult.id)
        )
    )
    if filters.category is not None:
        stmt = stmt.where(TriageResult.category == filters.category)
    if filters.min_confidence is not None:
        stmt = stmt.where(TriageResult.confidence >= filters.min_confidence)
    if filters.max_confidence is not None:
        stmt = stmt.where(TriageResult.confidence <= filters.max_confidence)
    if filters.model is not None:
        stmt = stmt.where(TriageResult.model == filters.model)
    return stmt


def _result_columns(result: type[TriageResult]) -> tuple[Any, ...]:
    return (
        result.id.label("result_id"),
        result.category,
        result.confidence,
        result.provider,
        result.model,
    )


def _message_conditions(filters: ListFilters) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if filters.account is not None:
        conditions.append(Message.account_id == filters.account)
    if filters.status is not None:
        conditions.append(Message.status == filters.status)
    if filters.date_from is not None:
        conditions.append(Message.sent_at >= _midnight(filters.date_from))
    if filters.date_to is not None:
        conditions.append(Message.sent_at < _midnight(filters.date_to + timedelta(days=1)))
    if filters.q:
        pattern = "%" + _escape_like(filters.q.strip()) + "%"
        conditions.append(
            or_(
                Message.subject.ilike(pattern, escape="\\"),
                Message.from_addr.ilike(pattern, escape="\\"),
            )
        )
    if filters.before is not None:
        conditions.append(Message.id < filters.before)
    return conditions


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
