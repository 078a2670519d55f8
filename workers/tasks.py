"""Thin task wrappers: each loads by ID, runs one pipeline stage, reports back to Celery."""

from __future__ import annotations

from datetime import timedelta
from functools import lru_cache
from typing import Any

from triage.adapters.imap import ImapMailbox, Timeouts
from triage.config import get_settings
from triage.pipeline.draft import draft_message
from triage.pipeline.ingest import MailboxOpener, sync_account
from triage.pipeline.model_calls import StageOutcome
from triage.pipeline.sweep import sweep_stuck
from triage.pipeline.triage import triage_message
from triage.runtime import Runtime, build_runtime
from workers.celery_app import app


class CeleryEnqueuer:
    """The Enqueuer port on Celery: only message IDs cross the broker."""

    def triage(self, message_id: int) -> None:
        triage_task.delay(message_id)

    def draft(self, message_id: int) -> None:
        draft_task.delay(message_id)


@lru_cache(maxsize=1)
def runtime() -> Runtime:
    return build_runtime(get_settings())


def mailbox_opener(rt: Runtime) -> MailboxOpener:
    timeouts = Timeouts(
        connect=rt.settings.imap_connect_timeout, read=rt.settings.imap_read_timeout
    )
    return lambda login: ImapMailbox(login, timeouts=timeouts, ca_file=rt.settings.imap_ca_file)


def _follow(task: Any, outcome: StageOutcome) -> str:
    if outcome.retry_after is not None:
        raise task.retry(countdown=outcome.retry_after, max_retries=None)
    return outcome.status


@app.task(name="triage.triage", bind=True)
def triage_task(self: Any, message_id: int) -> str:
    rt = runtime()
    outcome = triage_message(
        message_id=message_id,
        attempt=self.request.retries + 1,
        db=rt.db,
        model=rt.model,
        secrets=rt.secrets,
        enqueue=CeleryEnqueuer(),
        settings=rt.settings,
    )
    return _follow(self, outcome)


@app.task(name="triage.draft", bind=True)
def draft_task(self: Any, message_id: int) -> str:
    rt = runtime()
    outcome = draft_message(
        message_id=message_id,
        attempt=self.request.retries + 1,
        db=rt.db,
        model=rt.model,
        secrets=rt.secrets,
        settings=rt.settings,
    )
    return _follow(self, outcome)


@app.task(name="triage.sync_account")
def sync_account_task(account_id: int) -> dict[str, Any]:
    rt = runtime()
    report = sync_account(
        account_id=account_id,
        db=rt.db,
        open_mailbox=mailbox_opener(rt),
        secrets=rt.secrets,
        enqueue=CeleryEnqueuer(),
        settings=rt.settings,
    )
    return {"stored": report.stored, "error": report.error}


@app.task(name="triage.sync_all")
def sync_all_task() -> int:
    from sqlalchemy import select

    from triage.adapters.db.tables import MailAccount

    with runtime().db() as session:
        ids = list(session.scalars(select(MailAccount.id)))
    for account_id in ids:
        sync_account_task.delay(account_id)
    return len(ids)


@app.task(name="triage.sweep")
def sweep_task() -> int:
    rt = runtime()
    return sweep_stuck(
        db=rt.db,
        enqueue=CeleryEnqueuer(),
        older_than=timedelta(seconds=rt.settings.stuck_after_seconds),
    )
