"""Commands that move mail: sync, listen, worker, run (embedded), sweep, retry."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import date, timedelta
from types import FrameType
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from triage.adapters.db.tables import MailAccount
from triage.adapters.metrics import INGESTED, register_state, serve
from triage.commands.progress import SyncProgress
from triage.embedded import LocalEnqueuer
from triage.pipeline.ingest import SyncReport, sync_account
from triage.pipeline.ports import Enqueuer
from triage.pipeline.sweep import retry_messages, sweep_stuck
from triage.runtime import Runtime, mailbox_opener

if TYPE_CHECKING:
    from triage.commands.web import ConsoleThread

log = logging.getLogger(__name__)


@contextmanager
def enqueuer_for(rt: Runtime, *, stop: threading.Event | None = None) -> Iterator[Enqueuer]:
    """Celery when a broker is configured; otherwise a local pool, drained before exit unless
    `stop` was set (what it leaves unfinished stays queued in the database for the sweeper)."""
    if rt.settings.broker_url:
        from workers.tasks import CeleryEnqueuer

        yield CeleryEnqueuer()
        return
    local = LocalEnqueuer(rt, workers=rt.settings.worker_concurrency)
    try:
        yield local
        if stop is None or not stop.is_set():
            local.wait_idle()
    finally:
        local.shutdown()


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[threading.Event]:
    """SIGTERM and SIGINT set `stop`: loops finish their batch, IDLE ends, connections log out."""

    def handle(signum: int, _frame: FrameType | None) -> None:
        log.info("%s received: stopping", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def account_ids(rt: Runtime, only: int | None) -> list[int]:
    with rt.db() as session:
        query = select(MailAccount.id).order_by(MailAccount.id)
        if only is not None:
            query = query.where(MailAccount.id == only)
        ids = list(session.scalars(query))
    if only is not None and not ids:
        raise SystemExit(f"error: no account {only}")
    return ids


def sync_pass(
    rt: Runtime,
    enqueue: Enqueuer,
    ids: list[int],
    max_messages: int | None,
    *,
    since: date | None = None,
    stop: threading.Event | None = None,
) -> int:
    """Sync each account once (progress on stderr); returns how many accounts failed."""
    failures = 0
    for account_id in ids:
        if stop is not None and stop.is_set():
            break
        progress = SyncProgress(account_id)
        try:
            report = sync_account(
                account_id=account_id,
                db=rt.db,
                open_mailbox=mailbox_opener(rt),
                secrets=rt.secrets,
                enqueue=enqueue,
                settings=rt.settings,
                max_messages=max_messages,
                since=since,
                progress=progress,
                stop=stop,
            )
        finally:
            progress.close()
        print(describe(report), file=sys.stderr)
        INGESTED.inc(report.stored)
        failures += report.error is not None
    return failures


def describe(report: SyncReport) -> str:
    name = f"account {report.account_id}"
    if report.busy:
        return f"{name}: busy, another fetcher holds it (it will store the mail); skipped"
    if report.error:
        return f"{name}: FAILED: {report.error}"
    text = (
        f"{name}: stored {report.stored} (too large {report.too_large}, "
        f"failed {report.failed}), already known {report.duplicates + report.recognised}"
    )
    if report.recognised:
        text += f" ({report.recognised} recognised after a UIDVALIDITY change)"
    if report.skipped_old:
        text += f", {report.skipped_old} older than --since left on the server"
    if report.remaining:
        text += f", {report.remaining} left for later"
    return text


def serve_metrics(rt: Runtime) -> None:
    """A long-running syncer or listener serves /metrics on TRIAGE_METRICS_PORT (0: off)."""
    register_state(rt.db, rt.settings)
    serve(rt.settings.metrics_port, host=rt.settings.metrics_host)


def sync(rt: Runtime, args: argparse.Namespace) -> int:
    ids = account_ids(rt, args.account)
    if not args.once:
        serve_metrics(rt)
    stop = threading.Event()
    with stop_on_signals(stop), enqueuer_for(rt, stop=stop) as enqueue:
        while True:
            try:
                failures = sync_pass(rt, enqueue, ids, args.max, since=args.since, stop=stop)
            except SQLAlchemyError as exc:
                if args.once:
                    raise
                # A database restart must not end the syncer: the next pass reconnects
                # (pre-ping), and the high-water marks make it pick up where it stopped.
                log.warning("sync pass aborted, database unavailable: %s", type(exc).__name__)
                failures = len(ids)
            if args.once:
                return 1 if failures else 0
            if stop.wait(rt.settings.sync_interval_seconds):
                return 0


def listen(rt: Runtime, args: argparse.Namespace) -> int:
    """IDLE on every watched folder until SIGTERM/SIGINT; the poll (beat, `run`) is the net."""
    from workers.listener import Listener

    stop = threading.Event()
    serve_metrics(rt)
    with stop_on_signals(stop), enqueuer_for(rt, stop=stop) as enqueue:
        Listener(rt, enqueue, stop, only=args.account).run()
    return 0


def run(rt: Runtime, args: argparse.Namespace) -> int:
    """Everything in one process: migrate, then serve the console, listen, poll, sweep and
    triage on local threads, until SIGTERM/SIGINT."""
    from triage.adapters.db.migrate import upgrade

    upgrade(rt.settings.resolved_database_url())
    stop = threading.Event()
    with stop_on_signals(stop), enqueuer_for(rt, stop=stop) as enqueue, ExitStack() as console:
        if not (args.once or args.no_web):
            # Bound before any work starts: a port in use fails the start, and nothing else.
            console.enter_context(_console(rt, enqueue))
        # Nothing else runs in this process yet, so whatever is unfinished was interrupted.
        sweep_stuck(db=rt.db, enqueue=enqueue, older_than=timedelta(0))
        if args.once:
            return 1 if sync_pass(rt, enqueue, account_ids(rt, None), None, stop=stop) else 0
        listener = _start_listener(rt, enqueue, stop)
        try:
            _poll_until_stopped(rt, enqueue, stop)
        finally:
            stop.set()
            listener.join()
    return 0


def _console(rt: Runtime, enqueue: Enqueuer) -> ConsoleThread:
    """The admin console as `triage web` serves it, on TRIAGE_WEB_HOST:TRIAGE_WEB_PORT; it is
    stopped (after the listener, before the pool) when the ExitStack closes."""
    from triage.commands.web import ConsoleThread

    console = ConsoleThread(rt, enqueue, host=rt.settings.web_host, port=rt.settings.web_port)
    print(f"console on {console.url}", file=sys.stderr, flush=True)
    return console


def _start_listener(rt: Runtime, enqueue: Enqueuer, stop: threading.Event) -> threading.Thread:
    from workers.listener import Listener

    thread = threading.Thread(target=Listener(rt, enqueue, stop).run, name="listener")
    thread.start()
    return thread


def _poll_until_stopped(rt: Runtime, enqueue: Enqueuer, stop: threading.Event) -> None:
    """The safety net under IDLE: every account, every sync interval; the sweeper after each."""
    stuck_after = timedelta(seconds=rt.settings.stuck_after_seconds)
    while not stop.is_set():
        sync_pass(rt, enqueue, account_ids(rt, None), None, stop=stop)
        if stop.wait(rt.settings.sync_interval_seconds):
            return
        sweep_stuck(db=rt.db, enqueue=enqueue, older_than=stuck_after)


def sweep(rt: Runtime, args: argparse.Namespace) -> int:
    """One pass of the safety net that beat runs every TRIAGE_SWEEP_INTERVAL_SECONDS."""
    seconds = rt.settings.stuck_after_seconds if args.stuck_after is None else args.stuck_after
    with enqueuer_for(rt) as enqueue:
        count = sweep_stuck(db=rt.db, enqueue=enqueue, older_than=timedelta(seconds=seconds))
    print(f"re-enqueued {count} messages unfinished for over {seconds}s", file=sys.stderr)
    return 0


def retry(rt: Runtime, args: argparse.Namespace) -> int:
    with enqueuer_for(rt) as enqueue:
        count = retry_messages(db=rt.db, enqueue=enqueue, status=args.status)
    print(f"re-enqueued {count} messages with status {args.status}", file=sys.stderr)
    return 0


def worker(args: argparse.Namespace, celery_args: list[str]) -> int:
    from workers.celery_app import app

    argv = ["worker", "--loglevel=INFO", *celery_args]
    app.worker_main(argv)
    return 0
