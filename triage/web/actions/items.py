"""Action items: mark one done, or open again."""

from __future__ import annotations

from sqlalchemy.orm import Session

from triage.adapters.db.tables import ActionItem
from triage.web.actions import ActionError, NotVisible
from triage.web.queries.scope import visible_message
from triage.web.sessions import Viewer

ITEM_STATUSES = ("open", "done")


def set_item_status(session: Session, viewer: Viewer, *, item_id: int, status: str) -> ActionItem:
    if status not in ITEM_STATUSES:
        raise ActionError(f"status must be one of {', '.join(ITEM_STATUSES)}")
    item = session.get(ActionItem, item_id)
    if item is None or visible_message(session, viewer, item.message_id) is None:
        raise NotVisible(f"action item {item_id}")
    item.status = status
    return item
