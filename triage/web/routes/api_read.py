"""JSON API, reads: the same questions the pages answer, under the same session."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import StreamingResponse

from triage.adapters.db.export import export_reviewed
from triage.web.auth import ApiViewer
from triage.web.queries.accounts import AccountHealth, UserSettings, accounts_health, users_settings
from triage.web.queries.detail import message_detail
from triage.web.queries.failures import Failures, failures
from triage.web.queries.listing import ListFilters, MessagePage, list_messages
from triage.web.queries.queue import QueueCursor, QueuePage, review_queue
from triage.web.queries.scope import owner_filter
from triage.web.queries.stats import Stats, stats
from triage.web.routes.api_models import Me, MessageOut
from triage.web.state import Console, DbSession, get_console

router = APIRouter(prefix="/api", tags=["read"], responses={401: {"description": "no session"}})
ConsoleDep = Annotated[Console, Depends(get_console)]


@router.get("/me", response_model=Me)
def me(viewer: ApiViewer) -> Me:
    return Me(id=viewer.id, email=viewer.email, is_admin=viewer.is_admin, csrf_token=viewer.csrf)


@router.get("/messages", response_model=MessagePage)
def messages(
    viewer: ApiViewer,
    console: ConsoleDep,
    session: DbSession,
    filters: Annotated[ListFilters, Query()],
) -> MessagePage:
    return list_messages(session, viewer, filters, page_size=console.settings.web_page_size)


@router.get("/messages/{message_id}", response_model=MessageOut, responses={404: {}})
def message(
    message_id: int, viewer: ApiViewer, console: ConsoleDep, session: DbSession
) -> MessageOut:
    detail = message_detail(session, viewer, message_id)
    if detail is None:
        raise HTTPException(404, "no such message")
    return MessageOut.of(detail)


@router.get("/review-queue", response_model=QueuePage)
def queue(
    viewer: ApiViewer,
    console: ConsoleDep,
    session: DbSession,
    cursor: Annotated[QueueCursor, Query()],
    user: int | None = None,
) -> QueuePage:
    return review_queue(
        session,
        viewer,
        threshold=console.settings.review_confidence_threshold,
        page_size=console.settings.web_page_size,
        cursor=cursor if cursor.result_id is not None or cursor.part != "doubtful" else None,
        user_id=user,
    )


@router.get("/failures", response_model=Failures)
def failed(
    viewer: ApiViewer,
    console: ConsoleDep,
    session: DbSession,
    before: int | None = None,
    status: str | None = None,
) -> Failures:
    return failures(
        session, viewer, page_size=console.settings.web_page_size, before=before, status=status
    )


@router.get("/accounts", response_model=list[AccountHealth])
def accounts(viewer: ApiViewer, console: ConsoleDep, session: DbSession) -> list[AccountHealth]:
    return accounts_health(
        session,
        viewer,
        default_interval=console.rt.settings.sync_interval_seconds,
        silence_factor=console.settings.account_silence_factor,
    )


@router.get("/users", response_model=list[UserSettings])
def users(viewer: ApiViewer, console: ConsoleDep, session: DbSession) -> list[UserSettings]:
    return users_settings(session, viewer)


@router.get("/stats", response_model=Stats)
def quality(
    viewer: ApiViewer, console: ConsoleDep, session: DbSession, user: int | None = None
) -> Stats:
    return stats(session, viewer, user_id=user)


@router.get("/reviewed.jsonl", response_class=StreamingResponse)
def reviewed(viewer: ApiViewer, console: ConsoleDep, user: int | None = None) -> StreamingResponse:
    """The labelled set of reviewed results, one JSON object a line."""
    owner = owner_filter(viewer, user)

    def lines() -> Iterator[str]:
        with console.rt.db() as session:
            for row in export_reviewed(session, user_id=owner):
                yield json.dumps(row, ensure_ascii=False, default=str) + "\n"

    return StreamingResponse(lines(), media_type="application/x-ndjson")
