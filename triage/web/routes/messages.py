"""Message pages: the filtered list, one message, its sandboxed HTML body and its images."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from triage.adapters.db.tables import Attachment, MailAccount, User
from triage.domain import statuses
from triage.web.auth import PageViewer
from triage.web.html_body import BODY_CSP, framed_document
from triage.web.queries.detail import message_detail
from triage.web.queries.listing import ListFilters, list_messages
from triage.web.queries.scope import visible_message
from triage.web.render import page, with_query
from triage.web.state import Console, DbSession, get_console

router = APIRouter(include_in_schema=False)
ConsoleDep = Annotated[Console, Depends(get_console)]
IMAGE_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp"}


@router.get("/messages", response_class=HTMLResponse)
def messages_page(
    request: Request,
    viewer: PageViewer,
    console: ConsoleDep,
    session: DbSession,
    filters: Annotated[ListFilters, Query()],
) -> Response:
    found = list_messages(session, viewer, filters, page_size=console.settings.web_page_size)
    choices = _filter_choices(session, viewer.id if not viewer.is_admin else None)
    following = (
        with_query("/messages", **filters.query_args(), before=found.next_before)
        if found.next_before
        else None
    )
    return page(
        request,
        "messages.html",
        viewer,
        page_rows=found.rows,
        filters=filters,
        next_page=following,
        statuses=sorted(statuses.UNFINISHED | statuses.FINISHED),
        **choices,
    )


def _filter_choices(session: Session, owner: int | None) -> dict[str, Any]:
    accounts = select(MailAccount.id, MailAccount.username, MailAccount.host, MailAccount.user_id)
    users = select(User.id, User.email).order_by(User.email)
    if owner is not None:
        accounts = accounts.where(MailAccount.user_id == owner)
        users = users.where(User.id == owner)
    return {
        "accounts": session.execute(accounts.order_by(MailAccount.id)).all(),
        "users": session.execute(users).all(),
    }


@router.get("/messages/{message_id}", response_class=HTMLResponse)
def message_page(
    request: Request, message_id: int, viewer: PageViewer, console: ConsoleDep, session: DbSession
) -> Response:
    detail = message_detail(session, viewer, message_id)
    if detail is None:
        raise HTTPException(404, "no such message")
    return page(
        request,
        "message.html",
        viewer,
        d=detail,
        retryable=detail.message.status in statuses.RETRYABLE,
    )


@router.get("/messages/{message_id}/body")
def message_body(
    message_id: int, viewer: PageViewer, console: ConsoleDep, session: DbSession
) -> Response:
    """The HTML part, sanitized, for the sandboxed frame only (its own CSP, same-origin frame)."""
    message = visible_message(session, viewer, message_id)
    if message is None or not message.html_body:
        raise HTTPException(404, "no such message body")
    document = framed_document(message.html_body)
    return HTMLResponse(
        document,
        headers={"Content-Security-Policy": BODY_CSP, "X-Frame-Options": "SAMEORIGIN"},
    )


@router.get("/attachments/{attachment_id}/image")
def attachment_image(
    attachment_id: int, viewer: PageViewer, console: ConsoleDep, session: DbSession
) -> Response:
    """The normalized (re-encoded, downscaled) image; the original bytes are never served."""
    row = session.execute(
        select(Attachment.message_id, Attachment.normalized, Attachment.normalized_type).where(
            Attachment.id == attachment_id
        )
    ).first()
    if row is None or visible_message(session, viewer, row.message_id) is None:
        raise HTTPException(404, "no such image")
    if row.normalized is None or row.normalized_type not in IMAGE_TYPES:
        raise HTTPException(404, "no image was kept for this attachment")
    return Response(
        bytes(row.normalized),
        media_type=row.normalized_type,
        headers={"Content-Security-Policy": "default-src 'none'; sandbox"},
    )
