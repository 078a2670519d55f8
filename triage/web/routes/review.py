"""Review pages: the queue, and the one-click confirm or correct of a result."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select

from triage.adapters.db.session import transaction
from triage.adapters.db.tables import User
from triage.web.actions import ActionError
from triage.web.actions.reviews import record_review
from triage.web.auth import FormViewer, PageViewer
from triage.web.queries.queue import QueueCursor, review_queue
from triage.web.queries.scope import categories_of
from triage.web.render import back_to, page, with_query
from triage.web.state import Console, DbSession, get_console

router = APIRouter(include_in_schema=False)
ConsoleDep = Annotated[Console, Depends(get_console)]


@router.get("/", response_class=HTMLResponse)
def home(_viewer: PageViewer) -> Response:
    return back_to("/review", "/review")


@router.get("/review", response_class=HTMLResponse)
def review_page(
    request: Request,
    viewer: PageViewer,
    console: ConsoleDep,
    session: DbSession,
    cursor: Annotated[QueueCursor, Query()],
    user: int | None = None,
) -> Response:
    settings = console.settings
    queue = review_queue(
        session,
        viewer,
        threshold=settings.review_confidence_threshold,
        page_size=settings.web_page_size,
        cursor=cursor if cursor.result_id is not None or cursor.part != "doubtful" else None,
        user_id=user,
    )
    owners = {row.owner_id for row in queue.rows}
    categories = {
        owner.id: categories_of(owner)
        for owner in session.scalars(select(User).where(User.id.in_(owners)))
    }
    following = with_query("/review", user=user, **queue.next.model_dump()) if queue.next else None
    return page(
        request,
        "review.html",
        viewer,
        queue=queue,
        categories=categories,
        next_page=following,
        here=str(request.url.path) + (f"?{request.url.query}" if request.url.query else ""),
    )


@router.post("/results/{result_id}/review")
def review_result(
    result_id: int,
    viewer: FormViewer,
    console: ConsoleDep,
    decision: Annotated[Literal["confirm", "correct"], Form()],
    to_category: Annotated[str, Form(max_length=64)] = "",
    note: Annotated[str, Form(max_length=4000)] = "",
    next: Annotated[str | None, Form()] = None,
) -> Response:
    if decision == "correct" and not to_category:
        raise ActionError("pick the category the message should have")
    with transaction(console.rt.db) as session:
        record_review(
            session,
            viewer,
            result_id=result_id,
            to_category=to_category if decision == "correct" else None,
            note=note,
        )
    return back_to(next, "/review")
