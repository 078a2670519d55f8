"""What every console request needs (database, settings, sessions, queue), kept on the app."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session

from triage.pipeline.ports import Enqueuer
from triage.runtime import Runtime
from triage.web.sessions import SessionStore
from triage.web.settings import WebSettings
from triage.web.throttle import SigninThrottle


@dataclass(frozen=True)
class Console:
    rt: Runtime
    settings: WebSettings
    sessions: SessionStore
    throttle: SigninThrottle
    enqueue: Enqueuer
    templates: Jinja2Templates


def get_console(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


def db_session(console: Annotated[Console, Depends(get_console)]) -> Iterator[Session]:
    """One database session per request, shared by the sign-in check and the page's queries."""
    with console.rt.db() as session:
        yield session


DbSession = Annotated[Session, Depends(db_session)]
