"""Commands that move mail: sync, worker, run (embedded), retry, export."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from sqlalchemy import select

from triage.adapters.db.export import export_messages
from triage.adapters.db.migrate import upgrade
from triage.adapters.db.tables import MailAccount
from triage.embedded import LocalEnqueuer
from triage.pipeline.ingest import SyncReport, sync_account
from triage.pipeline.ports import Enqueuer
from triage.pipeline.sweep import retry_messages, sweep_stuck
from triage.runtime import Runtime

log = logging.getLogger(__name__)


@contextmanager
def enqueuer_for(rt: Runtime) -> Iterator[Enqueuer]:
    """Celery when a broker is configured; otherwise a local pool that is drained before exit."""
    if rt.settings.broker_url:
        from workers.tasks import CeleryEnqueuer

        yield CeleryEnqueuer()
        return
    local = LocalEnqueuer(rt, workers=rt.settings.worker_concurrency)
    try:
        yield local
        local.wait_idle()
    finally:
        local.shutdown()


def account_ids(rt: Runtime, only: int | None) -> list[int]:
    with rt.db() as session:
        query = select(MailAccount.id).order_by(MailAccount.id)
        if only is not None:
            query = query.where(MailAccount.id == only)
        ids = list(session.scalars(query))
    if only is not None and not ids:
        raise SystemExit(f"error: no account {only}")
    return ids


def sync_pass(rt: Runtime, enqueue: Enqueuer, ids: list[int], max_messages: int | None) -> int:
    """Sync each account once; returns how many accounts failed."""
    from workers.tasks import mailbox_opener

    failures = 0
    for account_id in ids:
        report = sync_account(
            account_id=account_id,
            db=rt.db,
            open_mailbox=mailbox_opener(rt),
            secrets=rt.secrets,
            enqueue=enqueue,
            settings=rt.settings,
            max_messages=max_messages,
        )
        print(_describe(report), file=sys.stderr)
        failures += report.error is not None
    return failures


def _describe(report: SyncReport) -> str:
    if report.error:
        return f"account {report.account_id}: FAILED: {report.error}"
    text = (
        f"account {report.account_id}: stored {report.stored} (too large {report.too_large}, "
        f"failed {report.failed}), already known {report.duplicates}"
    )
    if report.remaining:
        text += f", {report.remaining} left for later"
    return text


def sync(rt: Runtime, args: argparse.Namespace) -> int:
    ids = account_ids(rt, args.account)
    with enqueuer_for(rt) as enqueue:
        while True:
            failures = sync_pass(rt, enqueue, ids, args.max)
            if args.once:
                return 1 if failures else 0
            time.sleep(rt.settings.sync_interval_seconds)


def run(rt: Runtime, args: argparse.Namespace) -> int:
    """Everything in one process: migrate, then sync, sweep and triage on a local thread pool."""
    upgrade(rt.settings.resolved_database_url())
    with enqueuer_for(rt) as enqueue:
        # Nothing else runs in this process yet, so whatever is unfinished was interrupted.
        sweep_stuck(db=rt.db, enqueue=enqueue, older_than=timedelta(0))
        stuck_after = timedelta(seconds=rt.settings.stuck_after_seconds)
        while True:
            failures = sync_pass(rt, enqueue, account_ids(rt, None), None)
            if args.once:
                return 1 if failures else 0
            time.sleep(rt.settings.sync_interval_seconds)
            sweep_stuck(db=rt.db, enqueue=enqueue, older_than=stuck_after)


def retry(rt: Runtime, args: argparse.Namespace) -> int:
    with enqueuer_for(rt) as enqueue:
        count = retry_messages(db=rt.db, enqueue=enqueue, status=args.status)
    print(f"re-enqueued {count} messages with status {args.status}", file=sys.stderr)
    return 0


def export(rt: Runtime, args: argparse.Namespace) -> int:
    out = sys.stdout
    with rt.db() as session:
        for row in export_messages(session):
            out.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
    return 0


def worker(args: argparse.Namespace, celery_args: list[str]) -> int:
    from workers.celery_app import app

    argv = ["worker", "--loglevel=INFO", *celery_args]
    app.worker_main(argv)
    return 0
