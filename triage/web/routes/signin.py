"""Sign-in and sign-out pages (and their API twins): the only routes open without a session."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel, Field

from triage.web.auth import ApiWriter, FormViewer
from triage.web.render import back_to, local_path, page
from triage.web.sessions import COOKIE, SIGNIN_COOKIE, same_token
from triage.web.signin import check_password
from triage.web.state import Console, get_console

router = APIRouter(include_in_schema=False)
api = APIRouter(prefix="/api", tags=["session"])
ConsoleDep = Annotated[Console, Depends(get_console)]


def _ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _set_session(response: Response, console: Console, user_id: int) -> str:
    cookie = console.sessions.open(user_id)
    response.set_cookie(
        COOKIE,
        cookie,
        max_age=console.sessions.max_age,
        httponly=True,
        samesite="strict",
        secure=console.settings.web_secure_cookies,
        path="/",
    )
    return cookie


@router.get("/signin", response_class=HTMLResponse)
def signin_form(request: Request, console: ConsoleDep, next: str | None = None) -> Response:
    if console.sessions.viewer(request.cookies.get(COOKIE)):
        return back_to(next, "/review")
    return _form(request, console, next=local_path(next))


def _form(
    request: Request,
    console: Console,
    *,
    next: str | None,
    error: str | None = None,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    nonce = secrets.token_urlsafe(24)
    response = page(
        request,
        "signin.html",
        None,
        status_code=status_code,
        csrf=console.sessions.signin_csrf(nonce),
        next=next,
        error=error,
    )
    response.set_cookie(
        SIGNIN_COOKIE,
        nonce,
        max_age=3600,
        httponly=True,
        samesite="strict",
        secure=console.settings.web_secure_cookies,
        path="/signin",
    )
    response.headers.update(headers or {})
    return response


@router.post("/signin")
def signin(
    request: Request,
    console: ConsoleDep,
    email: Annotated[str, Form(max_length=320)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    csrf_token: Annotated[str, Form()] = "",
    next: Annotated[str | None, Form()] = None,
) -> Response:
    nonce = request.cookies.get(SIGNIN_COOKIE, "")
    if not nonce or not same_token(csrf_token, console.sessions.signin_csrf(nonce)):
        return _form(
            request,
            console,
            next=local_path(next),
            status_code=403,
            error="The form expired or did not come from this site. Try again.",
        )
    outcome = check_password(console, email=email, password=password, ip=_ip(request))
    if outcome.wait_seconds:
        return _form(
            request,
            console,
            next=local_path(next),
            status_code=429,
            error=f"Too many failed attempts. Try again in {outcome.wait_seconds} s.",
            headers={"Retry-After": str(outcome.wait_seconds)},
        )
    if outcome.user_id is None:
        return _form(
            request,
            console,
            next=local_path(next),
            status_code=401,
            error="Wrong email or password.",
        )
    response = back_to(next, "/review")
    _set_session(response, console, outcome.user_id)
    response.delete_cookie(SIGNIN_COOKIE, path="/signin")
    return response


@router.post("/signout")
def signout(request: Request, console: ConsoleDep, _viewer: FormViewer) -> Response:
    console.sessions.close(request.cookies.get(COOKIE))
    response = RedirectResponse("/signin", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


class Credentials(BaseModel):
    email: str = Field(max_length=320)
    password: str = Field(max_length=1024)


class SignedIn(BaseModel):
    user_id: int
    csrf_token: str = Field(description="send as X-CSRF-Token on every API write")


@api.post("/signin", response_model=SignedIn, responses={401: {}, 429: {}})
def api_signin(
    request: Request, response: Response, console: ConsoleDep, credentials: Credentials
) -> SignedIn:
    outcome = check_password(
        console, email=credentials.email, password=credentials.password, ip=_ip(request)
    )
    if outcome.wait_seconds:
        raise HTTPException(
            429, "too many failed attempts", headers={"Retry-After": str(outcome.wait_seconds)}
        )
    if outcome.user_id is None:
        raise HTTPException(401, "wrong email or password")
    cookie = _set_session(response, console, outcome.user_id)
    return SignedIn(user_id=outcome.user_id, csrf_token=console.sessions.csrf_of(cookie))


@api.post("/signout", status_code=204)
def api_signout(request: Request, console: ConsoleDep, _viewer: ApiWriter) -> Response:
    console.sessions.close(request.cookies.get(COOKIE))
    response = Response(status_code=204)
    response.delete_cookie(COOKIE, path="/")
    return response
