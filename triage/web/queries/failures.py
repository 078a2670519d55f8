"""What went wrong: failed, too large and over-budget messages, and accounts needing sign-in."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from triage.adapters.db.tables import MailAccount, Message, User
from triage.domain import statuses
from triage.web.queries.scope import account_ids, limit_accounts, owner_filter
from triage.web.sessions import Viewer

FAILED_STATUSES = (statuses.FAILED, statuses.TOO_LARGE, statuses.OVER_BUDGET)
REAUTH_NEEDED = "reauth_needed"


class FailedMessage(BaseModel):
    id: int
    owner: str
    subject: str
    from_addr: str
    status: str
    error: str | None
    status_changed_at: datetime
    retryable: bool


class FailedAccount(BaseModel):
    id: int
    owner: str
    username: str
    host: str
    status: str
    last_error: str | None
    consecutive_failures: int


class Failures(BaseModel):
    messages: list[FailedMessage]
    accounts: list[FailedAccount]
    next_before: int | None


def failures(
    session: Session,
    viewer: Viewer,
    *,
    page_size: int,
    before: int | None = None,
    status: str | None = None,
) -> Failures:
    ids = account_ids(session, viewer, None)
    wanted = (status,) if status in FAILED_STATUSES else FAILED_STATUSES
    stmt = (
        select(
            Message.id,
            User.email.label("owner"),
            Message.subject,
            Message.from_addr,
            Message.status,
            Message.error,
            Message.status_changed_at,
        )
        .join(MailAccount, MailAccount.id == Message.account_id)
        .join(User)
        .where(Message.status.in_(wanted))
    )
    stmt = limit_accounts(stmt, ids)
    if before is not None:
        stmt = stmt.where(Message.id < before)
    rows = [
        FailedMessage(**row._mapping, retryable=row.status in statuses.RETRYABLE)
        for row in session.execute(stmt.order_by(Message.id.desc()).limit(page_size + 1))
    ]
    more = len(rows) > page_size
    rows = rows[:page_size]
    return Failures(
        messages=rows,
        accounts=_accounts_in_trouble(session, viewer),
        next_before=rows[-1].id if more and rows else None,
    )


def _accounts_in_trouble(session: Session, viewer: Viewer) -> list[FailedAccount]:
    stmt = (
        select(
            MailAccount.id,
            User.email.label("owner"),
            MailAccount.username,
            MailAccount.host,
            MailAccount.status,
            MailAccount.last_error,
            MailAccount.consecutive_failures,
        )
        .join(User)
        .where((MailAccount.status == REAUTH_NEEDED) | (MailAccount.consecutive_failures > 0))
        .order_by(MailAccount.id)
    )
    owner = owner_filter(viewer, None)
    if owner is not None:
        stmt = stmt.where(MailAccount.user_id == owner)
    return [FailedAccount(**row._mapping) for row in session.execute(stmt)]
