"""Rendering helpers shared by the page routes: templates, redirects, safe `next` targets."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse

from triage.web.sessions import Viewer
from triage.web.state import get_console


def page(
    request: Request, name: str, viewer: Viewer | None, status_code: int = 200, **context: Any
) -> HTMLResponse:
    console = get_console(request)
    return console.templates.TemplateResponse(
        request,
        name,
        {"viewer": viewer, "settings": console.settings, **context},
        status_code=status_code,
    )


def back_to(target: str | None, fallback: str) -> RedirectResponse:
    """303 after a form post; only paths on this site are followed (no open redirect)."""
    return RedirectResponse(local_path(target) or fallback, status_code=303)


def local_path(target: str | None) -> str | None:
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    return target


def with_query(path: str, **params: object) -> str:
    kept = {key: str(value) for key, value in params.items() if value is not None}
    return f"{path}?{urlencode(kept)}" if kept else path
