"""Messages with their results, and reviewed results as a labelled set, for `triage export`."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, defer

from triage.adapters.db.tables import (
    ActionItem,
    Attachment,
    Draft,
    MailAccount,
    Message,
    Review,
    TriageResult,
    User,
)

CHUNK = 500


def export_messages(session: Session) -> Iterator[dict[str, Any]]:
    """One dict per stored message, in ID order, loaded in chunks so memory stays flat."""
    last_id = 0
    while True:
        messages = session.scalars(
            select(Message).where(Message.id > last_id).order_by(Message.id).limit(CHUNK)
        ).all()
        if not messages:
            return
        yield from _shape_chunk(session, messages)
        last_id = messages[-1].id
        session.expunge_all()


def _shape_chunk(session: Session, messages: Sequence[Message]) -> Iterator[dict[str, Any]]:
    ids = [message.id for message in messages]
    results = _latest_results(session, ids)
    counts = dict(
        session.execute(
            select(TriageResult.message_id, func.count())
            .where(TriageResult.message_id.in_(ids))
            .group_by(TriageResult.message_id)
        )
        .tuples()
        .all()
    )
    images = dict(
        session.execute(
            select(Attachment.message_id, func.count())
            .where(Attachment.message_id.in_(ids), Attachment.for_model.is_(True))
            .group_by(Attachment.message_id)
        )
        .tuples()
        .all()
    )
    items = _action_items(session, [result.id for result in results.values()])
    drafts = {
        d.message_id: d for d in session.scalars(select(Draft).where(Draft.message_id.in_(ids)))
    }
    for message in messages:
        result = results.get(message.id)
        yield {
            "id": message.id,
            "account": message.account_id,
            "folder": message.folder,
            "uid": message.uid,
            "message_id": message.message_id_header,
            "subject": message.subject,
            "from": message.from_addr,
            "date": message.sent_at.isoformat() if message.sent_at else None,
            "status": message.status,
            "error": message.error,
            "screening_rule": message.screening_rule,
            "defects": list(message.defects or []),
            "images": images.get(message.id, 0),
            "result": _result_dict(result),
            "results_count": counts.get(message.id, 0),
            "action_items": items.get(result.id, []) if result else [],
            "draft": _draft_dict(drafts.get(message.id)),
        }


def _latest_results(session: Session, ids: list[int]) -> dict[int, TriageResult]:
    latest: dict[int, TriageResult] = {}
    rows = session.scalars(
        select(TriageResult).where(TriageResult.message_id.in_(ids)).order_by(TriageResult.id)
    )
    for result in rows:
        latest[result.message_id] = result
    return latest


def _action_items(session: Session, result_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    grouped: dict[int, list[dict[str, Any]]] = defaultdict(list)
    rows = session.scalars(
        select(ActionItem).where(ActionItem.result_id.in_(result_ids)).order_by(ActionItem.id)
    )
    for item in rows:
        grouped[item.result_id].append(
            {
                "text": item.text,
                "owner": item.owner,
                "due_date": item.due_date.isoformat() if item.due_date else None,
                "quote": item.quote,
                "status": item.status,
            }
        )
    return grouped


def _result_dict(result: TriageResult | None) -> dict[str, Any] | None:
    if result is None:
        return None
    return {
        "category": result.category,
        "priority": result.priority,
        "confidence": result.confidence,
        "summary": result.summary,
        "needs_reply": result.needs_reply,
        "injection_suspected": result.injection_suspected,
        "flags": list(result.flags or []),
        "screening_rule": result.screening_rule,
        "provider": result.provider,
        "model": result.model,
        "prompt_version": result.prompt_version,
        "input_tokens": result.input_tokens,
        "output_tokens": result.output_tokens,
        "cost_usd": float(result.cost_usd) if result.cost_usd is not None else None,
        "latency_ms": result.latency_ms,
    }


def _draft_dict(draft: Draft | None) -> dict[str, Any] | None:
    if draft is None:
        return None
    return {"body": draft.body, "status": draft.status, "model": draft.model}


def export_reviewed(session: Session, *, user_id: int | None = None) -> Iterator[dict[str, Any]]:
    """`triage export --reviewed`: one labelled example per reviewed result, in review order.

    The label is the reviewer's final word (their newest review of that result); the model's
    answer is kept beside it, so the set measures a model as well as it trains one.
    """
    newest = select(func.max(Review.id).label("id")).group_by(Review.result_id).subquery("newest")
    stmt = (
        select(Review, TriageResult, Message, User.email)
        .join(newest, newest.c.id == Review.id)
        .join(TriageResult, TriageResult.id == Review.result_id)
        .join(Message, Message.id == TriageResult.message_id)
        .join(User, User.id == Review.reviewer_id)
        .options(defer(Message.raw), defer(Message.html_body))
        .order_by(Review.id)
    )
    if user_id is not None:
        stmt = stmt.join(MailAccount, MailAccount.id == Message.account_id).where(
            MailAccount.user_id == user_id
        )
    for review, result, message, reviewer in session.execute(
        stmt.execution_options(yield_per=CHUNK)
    ).tuples():
        yield {
            "result_id": result.id,
            "message_id": message.id,
            "account": message.account_id,
            "subject": message.subject,
            "from": message.from_addr,
            "date": message.sent_at.isoformat() if message.sent_at else None,
            "text": message.text_body,
            "label": review.to_category,
            "model_category": result.category,
            "changed": review.to_category != result.category,
            "note": review.note,
            "reviewer": reviewer,
            "reviewed_at": review.created_at.isoformat() if review.created_at else None,
            "provider": result.provider,
            "model": result.model,
            "prompt_version": result.prompt_version,
            "confidence": result.confidence,
        }
