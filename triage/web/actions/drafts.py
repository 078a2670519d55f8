"""Draft decisions: approve (maybe edited), save an edit, or discard. Nothing is ever sent."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from triage.adapters.db.tables import Draft
from triage.web.actions import ActionError, NotVisible
from triage.web.queries.scope import visible_message
from triage.web.sessions import Viewer

DraftAction = Literal["approve", "save", "discard"]
MAX_BODY = 100_000


def decide_draft(
    session: Session,
    viewer: Viewer,
    *,
    message_id: int,
    action: DraftAction,
    body: str | None = None,
) -> Draft:
    """The model's text stays in `body`; an edit goes to `edited_body` beside it."""
    if visible_message(session, viewer, message_id) is None:
        raise NotVisible(f"message {message_id}")
    draft = session.scalars(select(Draft).where(Draft.message_id == message_id)).first()
    if draft is None:
        raise NotVisible(f"draft of message {message_id}")
    if body is not None and action != "discard":
        text = body.replace("\r\n", "\n").strip()
        if not text:
            raise ActionError("the draft is empty; discard it instead")
        if len(text) > MAX_BODY:
            raise ActionError(f"the draft is longer than {MAX_BODY} characters")
        draft.edited_body = None if text == draft.body.strip() else text
    if action == "approve":
        draft.status = "approved"
    elif action == "discard":
        draft.status = "discarded"
    if action != "save":
        draft.decided_by, draft.decided_at = viewer.id, datetime.now(UTC)
    return draft
