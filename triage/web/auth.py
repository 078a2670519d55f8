"""Who may do what: every page and API route depends on one of these checks, on the server."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Form, Header, HTTPException, Request
from sqlalchemy.orm import Session

from triage.web.sessions import COOKIE, Viewer, same_token
from triage.web.state import Console, DbSession, get_console


class SignInRequired(Exception):
    """A page was asked for without a session; the app answers with a redirect to sign in."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def _viewer(request: Request, console: Console, session: Session) -> Viewer | None:
    return console.sessions.viewer(request.cookies.get(COOKIE), session=session)


def page_viewer(
    request: Request, console: Annotated[Console, Depends(get_console)], session: DbSession
) -> Viewer:
    viewer = _viewer(request, console, session)
    if viewer is None:
        raise SignInRequired(request.url.path)
    return viewer


def api_viewer(
    request: Request, console: Annotated[Console, Depends(get_console)], session: DbSession
) -> Viewer:
    viewer = _viewer(request, console, session)
    if viewer is None:
        raise HTTPException(401, "sign in first (POST /signin), then send the session cookie")
    return viewer


PageViewer = Annotated[Viewer, Depends(page_viewer)]
ApiViewer = Annotated[Viewer, Depends(api_viewer)]


def form_csrf(viewer: PageViewer, csrf_token: Annotated[str, Form()] = "") -> Viewer:
    """For form posts: the hidden field must carry this session's token."""
    if not same_token(csrf_token, viewer.csrf):
        raise HTTPException(403, "the form's CSRF token is missing or wrong; reload the page")
    return viewer


def api_csrf(viewer: ApiViewer, x_csrf_token: Annotated[str | None, Header()] = None) -> Viewer:
    """For API writes: the X-CSRF-Token header (from GET /api/me) must match the session."""
    if not same_token(x_csrf_token, viewer.csrf):
        raise HTTPException(403, "X-CSRF-Token header is missing or wrong (see GET /api/me)")
    return viewer


def admin_only(viewer: Viewer) -> None:
    if not viewer.is_admin:
        # 404, not 403: a user learns nothing about what exists beyond their own data.
        raise HTTPException(404, "not found")


FormViewer = Annotated[Viewer, Depends(form_csrf)]
ApiWriter = Annotated[Viewer, Depends(api_csrf)]
