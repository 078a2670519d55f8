"""The one rule of visibility: admins see every user's mail, a user only their own."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeAlias, TypeVarTuple

from sqlalchemy import Select, select
from sqlalchemy.orm import Session, defer

from triage.adapters.db.tables import MailAccount, Message, TriageResult, User
from triage.domain.schemas import DEFAULT_CATEGORIES, Category, parse_categories
from triage.web.sessions import Viewer

Columns = TypeVarTuple("Columns")
# A select of any columns (SQLAlchemy 2.1 types a select by its column types).
AnySelect: TypeAlias = Select[*tuple[Any, ...]]


def owner_filter(viewer: Viewer, user_id: int | None) -> int | None:
    """Which user's data a query may show: a user is always pinned to themselves."""
    return user_id if viewer.is_admin else viewer.id


def account_ids(session: Session, viewer: Viewer, user_id: int | None) -> list[int] | None:
    """The accounts a query is limited to, or None for all (an admin with no user filter)."""
    owner = owner_filter(viewer, user_id)
    if owner is None:
        return None
    return list(session.scalars(select(MailAccount.id).where(MailAccount.user_id == owner)))


def limit_accounts(stmt: Select[*Columns], ids: Sequence[int] | None) -> Select[*Columns]:
    if ids is None:
        return stmt
    return stmt.where(Message.account_id.in_(ids))


def visible_message(session: Session, viewer: Viewer, message_id: int) -> Message | None:
    """The message if the viewer may see it; None (shown as 404) for another user's message."""
    stmt = (
        select(Message)
        .join(MailAccount)
        .where(Message.id == message_id)
        .options(defer(Message.raw))  # the raw bytes can be megabytes; no page shows them
    )
    if not viewer.is_admin:
        stmt = stmt.where(MailAccount.user_id == viewer.id)
    return session.scalars(stmt).first()


def visible_result(session: Session, viewer: Viewer, result_id: int) -> TriageResult | None:
    stmt = (
        select(TriageResult)
        .join(Message, Message.id == TriageResult.message_id)
        .join(MailAccount)
        .where(TriageResult.id == result_id)
    )
    if not viewer.is_admin:
        stmt = stmt.where(MailAccount.user_id == viewer.id)
    return session.scalars(stmt).first()


def owner_of(session: Session, message: Message) -> User:
    account = session.get_one(MailAccount, message.account_id)
    return session.get_one(User, account.user_id)


def categories_of(user: User | None) -> tuple[Category, ...]:
    """A user's categories; a stored list that no longer parses falls back to the defaults."""
    if user is None:
        return DEFAULT_CATEGORIES
    try:
        return parse_categories(user.categories)
    except ValueError:
        return DEFAULT_CATEGORIES
