"""The console application: routes, templates, static files, error pages, security headers."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlencode

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from triage.adapters.health import readiness
from triage.adapters.metrics import metrics_asgi_app, register_state
from triage.pipeline.ports import Enqueuer
from triage.runtime import Runtime
from triage.web.actions import ActionError, NotVisible
from triage.web.auth import ApiViewer, SignInRequired
from triage.web.headers import SecurityHeaders
from triage.web.render import page
from triage.web.routes import admin, api_read, api_write, message_actions, messages, review, signin
from triage.web.routes import settings as settings_routes
from triage.web.sessions import SessionStore
from triage.web.settings import WebSettings, cookie_signing_key
from triage.web.state import Console
from triage.web.throttle import SigninThrottle

HERE = Path(__file__).parent
# Every route of the console; the access tests walk this list, so none escapes them.
ROUTERS: tuple[APIRouter, ...] = (
    signin.router,
    review.router,
    messages.router,
    message_actions.router,
    admin.router,
    settings_routes.router,
    signin.api,
    api_read.router,
    api_write.router,
)


def create_app(rt: Runtime, enqueue: Enqueuer, settings: WebSettings | None = None) -> FastAPI:
    settings = settings or WebSettings()
    app = FastAPI(
        title="mail-triage console API",
        version="1",
        description="Reads and actions of the admin console. Sign in with POST /api/signin; "
        "send the session cookie, and X-CSRF-Token on writes.",
        openapi_url=None,  # served below, behind the session like every other API route
        docs_url=None,  # the interactive docs load scripts from a CDN; the JSON is enough
        redoc_url=None,
    )

    @app.get("/api/openapi.json", include_in_schema=False)
    def openapi(_viewer: ApiViewer) -> JSONResponse:
        return JSONResponse(app.openapi())

    app.state.console = Console(
        rt=rt,
        settings=settings,
        sessions=SessionStore(
            rt.db,
            signing_key=cookie_signing_key(rt.settings),
            lifetime=timedelta(hours=settings.web_session_hours),
        ),
        throttle=SigninThrottle(
            rt.db,
            max_failures=settings.signin_max_failures,
            max_failures_per_ip=settings.signin_max_failures_per_ip,
            window=timedelta(seconds=settings.signin_window_seconds),
        ),
        enqueue=enqueue,
        templates=_templates(),
    )
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    for router in ROUTERS:
        app.include_router(router)
    _error_pages(app)
    _operations(app, rt)
    app.add_middleware(SecurityHeaders)
    return app


def _operations(app: FastAPI, rt: Runtime) -> None:
    """Probes and metrics, open without a session (outside ROUTERS): they show no mail."""
    register_state(rt.db, rt.settings)
    app.mount("/metrics", metrics_asgi_app())

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> JSONResponse:
        return JSONResponse({"ok": True})

    @app.get("/readyz", include_in_schema=False)
    def readyz() -> JSONResponse:
        ready, body = readiness(rt.engine, rt.settings)
        return JSONResponse(body, status_code=200 if ready else 503)


def _templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.filters["when"] = _when
    templates.env.filters["usd"] = _usd
    templates.env.globals["urlencode"] = urlencode
    return templates


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M") if moment else "—"


def _usd(amount: Decimal | float | None) -> str:
    return "—" if amount is None else f"${Decimal(str(amount)):,.4f}"


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def _error_pages(app: FastAPI) -> None:
    async def sign_in_first(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SignInRequired)
        return RedirectResponse(f"/signin?{urlencode({'next': exc.next_path})}", status_code=303)

    async def refused(request: Request, exc: Exception) -> Response:
        status, text = _status_of(exc)
        headers = getattr(exc, "headers", None)
        if _is_api(request):
            return JSONResponse({"detail": text}, status_code=status, headers=headers)
        response = page(request, "error.html", None, status_code=status, status=status, text=text)
        response.headers.update(headers or {})
        return response

    app.add_exception_handler(SignInRequired, sign_in_first)
    for kind in (NotVisible, ActionError, HTTPException, RequestValidationError):
        app.add_exception_handler(kind, refused)


def _status_of(exc: Exception) -> tuple[int, str]:
    if isinstance(exc, NotVisible):
        return 404, "Not found."
    if isinstance(exc, ActionError):
        return 400, str(exc)
    if isinstance(exc, RequestValidationError):
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc'][1:]) or error['loc'][0]}: {error['msg']}"
            for error in exc.errors()
        )
        return 422, f"Invalid input: {problems}"
    assert isinstance(exc, HTTPException)
    return exc.status_code, str(exc.detail)
