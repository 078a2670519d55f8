"""Model quality and cost: agreement with reviewers, confusions, latency, tokens and spend."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from triage.adapters.db.tables import MailAccount, Message, Review, TriageResult, UsageEntry, User
from triage.web.queries.scope import AnySelect, owner_filter
from triage.web.sessions import Viewer


class ModelQuality(BaseModel):
    provider: str
    model: str
    messages: int
    reviewed: int
    unchanged: int
    agreement: float | None  # share of reviewed results whose category the reviewer kept
    mean_latency_ms: float | None
    input_tokens: int
    output_tokens: int
    cost_usd: float


class Confusion(BaseModel):
    model_category: str
    reviewer_category: str
    count: int


class MonthlyUsage(BaseModel):
    user: str
    month: str
    provider: str
    model: str
    calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: float


class Stats(BaseModel):
    models: list[ModelQuality]
    confusion: list[Confusion]
    usage: list[MonthlyUsage]


def latest_reviews() -> Any:
    """Each reviewed result with its reviewer's final word (the newest review)."""
    newest = select(func.max(Review.id).label("id")).group_by(Review.result_id).subquery()
    return (
        select(Review.result_id, Review.to_category, Review.created_at, Review.note, Review.id)
        .join(newest, newest.c.id == Review.id)
        .subquery()
    )


def stats(session: Session, viewer: Viewer, *, user_id: int | None = None) -> Stats:
    owner = owner_filter(viewer, user_id)
    return Stats(
        models=_quality(session, owner),
        confusion=_confusion(session, owner),
        usage=_usage(session, owner),
    )


def _scoped(stmt: AnySelect, owner: int | None) -> AnySelect:
    if owner is None:
        return stmt
    return (
        stmt.join(Message, Message.id == TriageResult.message_id)
        .join(MailAccount, MailAccount.id == Message.account_id)
        .where(MailAccount.user_id == owner)
    )


def _quality(session: Session, owner: int | None) -> list[ModelQuality]:
    final = latest_reviews()
    kept = case((final.c.to_category == TriageResult.category, 1), else_=0)
    stmt = (
        select(
            TriageResult.provider,
            TriageResult.model,
            func.count(func.distinct(TriageResult.message_id)).label("messages"),
            func.count(final.c.result_id).label("reviewed"),
            func.coalesce(func.sum(kept), 0).label("unchanged"),
            func.avg(TriageResult.latency_ms).label("mean_latency_ms"),
            func.coalesce(func.sum(TriageResult.input_tokens), 0).label("input_tokens"),
            func.coalesce(func.sum(TriageResult.output_tokens), 0).label("output_tokens"),
            func.coalesce(func.sum(TriageResult.cost_usd), 0).label("cost_usd"),
        )
        .select_from(TriageResult)
        .outerjoin(final, final.c.result_id == TriageResult.id)
        .group_by(TriageResult.provider, TriageResult.model)
        .order_by(TriageResult.provider, TriageResult.model)
    )
    found = []
    for row in session.execute(_scoped(stmt, owner)):
        data = dict(row._mapping)
        data["agreement"] = data["unchanged"] / data["reviewed"] if data["reviewed"] else None
        data["mean_latency_ms"] = (
            float(data["mean_latency_ms"]) if data["mean_latency_ms"] is not None else None
        )
        found.append(ModelQuality.model_validate(data))
    return found


def _confusion(session: Session, owner: int | None) -> list[Confusion]:
    final = latest_reviews()
    stmt = (
        select(
            TriageResult.category.label("model_category"),
            final.c.to_category.label("reviewer_category"),
            func.count().label("count"),
        )
        .select_from(TriageResult)
        .join(final, final.c.result_id == TriageResult.id)
        .group_by(TriageResult.category, final.c.to_category)
        .order_by(TriageResult.category, final.c.to_category)
    )
    return [
        Confusion.model_validate(dict(row._mapping))
        for row in session.execute(_scoped(stmt, owner))
    ]


def _usage(session: Session, owner: int | None) -> list[MonthlyUsage]:
    if session.get_bind().dialect.name == "postgresql":
        month = func.to_char(UsageEntry.created_at, "YYYY-MM")
    else:
        month = func.strftime("%Y-%m", UsageEntry.created_at)
    stmt = (
        select(
            User.email.label("user"),
            month.label("month"),
            UsageEntry.provider,
            UsageEntry.model,
            func.count().label("calls"),
            func.coalesce(func.sum(UsageEntry.input_tokens), 0).label("input_tokens"),
            func.coalesce(func.sum(UsageEntry.output_tokens), 0).label("output_tokens"),
            func.coalesce(func.sum(UsageEntry.cost_usd), 0).label("cost_usd"),
        )
        .join(User, User.id == UsageEntry.user_id)
        .group_by(User.email, month, UsageEntry.provider, UsageEntry.model)
        .order_by(month.desc(), User.email, UsageEntry.provider, UsageEntry.model)
    )
    if owner is not None:
        stmt = stmt.where(UsageEntry.user_id == owner)
    return [MonthlyUsage.model_validate(dict(row._mapping)) for row in session.execute(stmt)]
