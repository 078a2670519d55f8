"""Oversight pages: failures, account health, per-user settings, model quality and cost."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse

from triage.adapters.db.export import export_reviewed
from triage.web.auth import PageViewer
from triage.web.queries.accounts import accounts_health, users_settings
from triage.web.queries.failures import failures
from triage.web.queries.scope import owner_filter
from triage.web.queries.stats import stats
from triage.web.render import page, with_query
from triage.web.sessions import Viewer
from triage.web.state import Console, DbSession, get_console

router = APIRouter(include_in_schema=False)
ConsoleDep = Annotated[Console, Depends(get_console)]


@router.get("/failures", response_class=HTMLResponse)
def failures_page(
    request: Request,
    viewer: PageViewer,
    console: ConsoleDep,
    session: DbSession,
    before: int | None = None,
    status: str | None = None,
) -> Response:
    found = failures(
        session,
        viewer,
        page_size=console.settings.web_page_size,
        before=before,
        status=status or None,
    )
    following = (
        with_query("/failures", status=status or None, before=found.next_before)
        if found.next_before
        else None
    )
    return page(request, "failures.html", viewer, f=found, next_page=following, status=status)


@router.get("/accounts", response_class=HTMLResponse)
def accounts_page(
    request: Request, viewer: PageViewer, console: ConsoleDep, session: DbSession
) -> Response:
    accounts = accounts_health(
        session,
        viewer,
        default_interval=console.rt.settings.sync_interval_seconds,
        silence_factor=console.settings.account_silence_factor,
    )
    users = users_settings(session, viewer)
    return page(request, "accounts.html", viewer, accounts=accounts, users=users)


@router.get("/stats", response_class=HTMLResponse)
def stats_page(
    request: Request, viewer: PageViewer, session: DbSession, user: int | None = None
) -> Response:
    found = stats(session, viewer, user_id=user)
    categories = sorted(
        {c.model_category for c in found.confusion} | {c.reviewer_category for c in found.confusion}
    )
    matrix = {(c.model_category, c.reviewer_category): c.count for c in found.confusion}
    return page(
        request, "stats.html", viewer, s=found, categories=categories, matrix=matrix, user=user
    )


@router.get("/stats/reviewed.jsonl")
def reviewed_download(viewer: PageViewer, console: ConsoleDep, user: int | None = None) -> Response:
    """The corrections as a labelled set, the same lines as `triage export --reviewed`."""
    return StreamingResponse(
        _jsonl(console, viewer, owner_filter(viewer, user)),
        media_type="application/x-ndjson",
        headers={"Content-Disposition": 'attachment; filename="reviewed.jsonl"'},
    )


def _jsonl(console: Console, viewer: Viewer, owner: int | None) -> Iterator[str]:
    with console.rt.db() as session:
        for row in export_reviewed(session, user_id=owner):
            yield json.dumps(row, ensure_ascii=False, default=str) + "\n"
