"""The console (`triage web`; a thread of `triage run`) and `triage export`, with --reviewed."""

from __future__ import annotations

import argparse
import json
import logging
import socket
import sys
import threading
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from triage.commands.setup import CommandError
from triage.runtime import Runtime

if TYPE_CHECKING:
    from fastapi import FastAPI

    from triage.pipeline.ports import Enqueuer

log = logging.getLogger(__name__)
# The same for `triage web` and the console inside `triage run`.
SERVER_OPTIONS: dict[str, Any] = {
    "proxy_headers": True,  # trusts X-Forwarded-For from 127.0.0.1 only (uvicorn default)
    "server_header": False,
    "log_level": "info",
}


def console_app(rt: Runtime, enqueue: Enqueuer) -> FastAPI:
    """The console's app; a bad console setting is a clear error, never a traceback."""
    from triage.web.app import create_app
    from triage.web.settings import WebSettings

    try:
        settings = WebSettings()
    except ValidationError as exc:
        raise CommandError(f"console settings: {exc}") from None
    return create_app(rt, enqueue, settings)


def web(rt: Runtime, args: argparse.Namespace) -> int:
    """Serve the console until interrupted; pipeline work goes to Celery or the local pool."""
    import uvicorn

    from triage.commands import running

    host = args.host or rt.settings.web_host
    port = args.port or rt.settings.web_port
    with running.enqueuer_for(rt) as enqueue:
        app = console_app(rt, enqueue)
        print(f"console on http://{host}:{port}/", file=sys.stderr, flush=True)
        uvicorn.run(app, host=host, port=port, **SERVER_OPTIONS)
    return 0


class ConsoleThread:
    """The console on a thread of `triage run`: the socket is bound at once, so a port in use
    fails the start with a clear message, and stop() ends it with the rest of the process."""

    def __init__(self, rt: Runtime, enqueue: Enqueuer, *, host: str, port: int) -> None:
        import uvicorn

        app = console_app(rt, enqueue)
        self._socket = _bind(host, port)
        # log_config=None: uvicorn logs through the process's own handlers and format (JSON
        # lines), without the ANSI-coloured copy of its messages it attaches to each record.
        logging.getLogger("uvicorn.error").addFilter(_drop_color_message)
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_config=None,
            timeout_graceful_shutdown=5,
            **SERVER_OPTIONS,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, name="console", daemon=True
        )
        self.url = f"http://{_url_host(host)}:{self._socket.getsockname()[1]}/"

    def __enter__(self) -> ConsoleThread:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def stop(self, timeout: float = 10) -> None:
        """Stop accepting, let requests in flight finish (5 s at most), close the socket."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("the console did not stop within %ss", timeout)
        self._socket.close()


def _drop_color_message(record: logging.LogRecord) -> bool:
    record.__dict__.pop("color_message", None)
    return True


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=2048)
    except OSError as exc:
        raise CommandError(
            f"the console cannot listen on {host}:{port}: {exc.strerror or exc}; "
            "set TRIAGE_WEB_HOST / TRIAGE_WEB_PORT, or run without it (--no-web)"
        ) from None


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def export(rt: Runtime, args: argparse.Namespace) -> int:
    """`triage export`: every message, or with --reviewed the reviewed results as labels."""
    from triage.adapters.db.export import export_messages, export_reviewed

    rows = export_reviewed if getattr(args, "reviewed", False) else export_messages
    with rt.db() as session:
        for row in rows(session):
            sys.stdout.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
    return 0
