"""Reviews: confirm a result or correct its category; a review is a row of its own."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from triage.adapters.db.tables import Message, Review
from triage.web.actions import ActionError, NotVisible
from triage.web.queries.scope import categories_of, owner_of, visible_result
from triage.web.sessions import Viewer

MAX_NOTE = 2000


def record_review(
    session: Session,
    viewer: Viewer,
    *,
    result_id: int,
    to_category: str | None,
    note: str | None,
) -> Review:
    """`to_category` None confirms; the model's result row is never touched."""
    result = visible_result(session, viewer, result_id)
    if result is None:
        raise NotVisible(f"result {result_id}")
    owner = owner_of(session, session.get_one(Message, result.message_id))
    names = {category.name for category in categories_of(owner)} | {result.category}
    if to_category and to_category not in names:
        raise ActionError(f"unknown category {to_category!r}; one of {', '.join(sorted(names))}")
    note = (note or "").strip() or None
    if note and len(note) > MAX_NOTE:
        raise ActionError(f"the note is longer than {MAX_NOTE} characters")
    previous = session.scalars(
        select(Review.to_category)
        .where(Review.result_id == result_id)
        .order_by(Review.id.desc())
        .limit(1)
    ).first()
    current = previous or result.category
    review = Review(
        result_id=result_id,
        reviewer_id=viewer.id,
        from_category=current,
        to_category=to_category or current,
        note=note,
    )
    session.add(review)
    session.flush()
    return review
