"""Form posts on the message page: draft decisions, action items, retry and re-run."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form
from fastapi.responses import Response

from triage.adapters.db.session import transaction
from triage.web.actions.drafts import DraftAction, decide_draft
from triage.web.actions.items import set_item_status
from triage.web.actions.requeue import request_rerun, retry_message
from triage.web.auth import FormViewer
from triage.web.render import back_to
from triage.web.state import Console, get_console

router = APIRouter(include_in_schema=False)
ConsoleDep = Annotated[Console, Depends(get_console)]
Next = Annotated[str | None, Form()]


@router.post("/messages/{message_id}/draft")
def draft_decision(
    message_id: int,
    viewer: FormViewer,
    console: ConsoleDep,
    action: Annotated[DraftAction, Form()],
    body: Annotated[str | None, Form(max_length=200_000)] = None,
    next: Next = None,
) -> Response:
    with transaction(console.rt.db) as session:
        decide_draft(session, viewer, message_id=message_id, action=action, body=body)
    return back_to(next, f"/messages/{message_id}")


@router.post("/items/{item_id}")
def item_status(
    item_id: int,
    viewer: FormViewer,
    console: ConsoleDep,
    status: Annotated[str, Form(max_length=16)],
    next: Next = None,
) -> Response:
    with transaction(console.rt.db) as session:
        item = set_item_status(session, viewer, item_id=item_id, status=status)
        message_id = item.message_id
    return back_to(next, f"/messages/{message_id}")


@router.post("/messages/{message_id}/retry")
def retry(message_id: int, viewer: FormViewer, console: ConsoleDep, next: Next = None) -> Response:
    retry_message(console.rt.db, console.enqueue, viewer, message_id)
    return back_to(next, f"/messages/{message_id}")


@router.post("/messages/{message_id}/rerun")
def rerun(
    message_id: int,
    viewer: FormViewer,
    console: ConsoleDep,
    setting_id: Annotated[str, Form()] = "",
    next: Next = None,
) -> Response:
    chosen = int(setting_id) if setting_id.strip().isdigit() else None
    request_rerun(console.rt.db, console.enqueue, viewer, message_id=message_id, setting_id=chosen)
    return back_to(next, f"/messages/{message_id}")
