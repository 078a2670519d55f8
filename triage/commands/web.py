"""Console commands: `triage web` serves it; `triage export --reviewed` prints its labelled set."""

from __future__ import annotations

import argparse
import json
import sys

from pydantic import ValidationError

from triage.adapters.db.export import export_reviewed
from triage.commands import running
from triage.commands.setup import CommandError
from triage.runtime import Runtime


def web(rt: Runtime, args: argparse.Namespace) -> int:
    """Serve the console until interrupted; pipeline work goes to Celery or the local pool."""
    import uvicorn

    from triage.web.app import create_app
    from triage.web.settings import WebSettings

    try:
        settings = WebSettings()
    except ValidationError as exc:
        raise CommandError(f"console settings: {exc}") from None
    host = args.host or rt.settings.web_host
    port = args.port or rt.settings.web_port
    with running.enqueuer_for(rt) as enqueue:
        app = create_app(rt, enqueue, settings)
        print(f"console on http://{host}:{port}/", file=sys.stderr, flush=True)
        uvicorn.run(
            app,
            host=host,
            port=port,
            proxy_headers=True,  # trusts X-Forwarded-For from 127.0.0.1 only (uvicorn default)
            server_header=False,
            log_level="info",
        )
    return 0


def export(rt: Runtime, args: argparse.Namespace) -> int:
    """`triage export`: every message, or with --reviewed the reviewed results as labels."""
    if not getattr(args, "reviewed", False):
        return running.export(rt, args)
    with rt.db() as session:
        for row in export_reviewed(session):
            sys.stdout.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
    return 0
