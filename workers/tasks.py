"""Thin task wrappers: each loads by ID, runs one pipeline stage, reports back to Celery."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy.exc import InterfaceError, OperationalError

from triage.adapters.metrics import INGESTED, InstrumentedModel, count_outcome
from triage.config import get_settings
from triage.logging_setup import log_context
from triage.pipeline.draft import draft_message
from triage.pipeline.ingest import sync_account
from triage.pipeline.model_calls import StageOutcome
from triage.pipeline.ports import ModelPort
from triage.pipeline.rerun import rerun_triage
from triage.pipeline.sweep import sweep_stuck
from triage.pipeline.triage import triage_message
from triage.pipeline.write_back import write_back_message
from triage.runtime import Runtime, build_runtime, mailbox_opener
from workers.celery_app import app

log = logging.getLogger(__name__)

# A database restart fails the tasks in flight: they retry within seconds instead of waiting for
# the sweeper. Safe, because a stage's claim is idempotent and a lost commit stored nothing.
DB_RETRY: dict[str, Any] = {
    "autoretry_for": (OperationalError, InterfaceError),
    "retry_backoff": 2,
    "retry_backoff_max": 60,
    "retry_jitter": True,
    "max_retries": 20,
}


class CeleryEnqueuer:
    """The Enqueuer port on Celery: only message IDs cross the broker."""

    def triage(self, message_id: int) -> None:
        triage_task.delay(message_id)

    def triage_many(self, message_ids: Sequence[int]) -> None:
        """A few: a task each. More (a sync's batch, the sweeper's): a task per slice of
        FAN_OUT_SLICE that a worker turns into the tasks of its messages, so the one syncing
        process does not build thousands of Celery messages (a sixth of its time on a first
        sync) while worker threads, which mostly wait on model calls, have time for it."""
        if len(message_ids) < FAN_OUT_MIN:
            _send_triage_tasks(message_ids)
            return
        with app.producer_or_acquire() as producer, producer.batch():
            for start in range(0, len(message_ids), FAN_OUT_SLICE):
                ids = list(message_ids[start : start + FAN_OUT_SLICE])
                fan_out_task.apply_async((ids,), producer=producer)

    def draft(self, message_id: int) -> None:
        draft_task.delay(message_id)

    def write_back(self, message_id: int) -> None:
        write_back_task.delay(message_id)

    def rerun(self, request_id: int) -> None:
        rerun_task.delay(request_id)


FAN_OUT_MIN = 16
FAN_OUT_SLICE = 500


def _send_triage_tasks(message_ids: Sequence[int]) -> None:
    # One Redis pipeline for the batch: a third of the CPU of a send per message.
    with app.producer_or_acquire() as producer, producer.batch():
        for message_id in message_ids:
            triage_task.apply_async((message_id,), producer=producer)


@app.task(name="triage.fan_out")
def fan_out_task(message_ids: list[int]) -> int:
    """One triage task per message. Sent again after a lost worker, it may send some twice,
    which is harmless: the triage stage is idempotent."""
    _send_triage_tasks(message_ids)
    return len(message_ids)


@lru_cache(maxsize=1)
def runtime() -> Runtime:
    return build_runtime(get_settings())


@lru_cache(maxsize=1)
def model_port() -> ModelPort:
    """The runtime's model client, timed and billed into this worker's metrics."""
    return InstrumentedModel(runtime().model)


def _finished(stage: str, outcome: StageOutcome) -> None:
    """One line per stage run, carrying the IDs of the log context; and the metrics."""
    count_outcome(stage, outcome.status, outcome.detail)
    retry = f", again in {outcome.retry_after:.0f}s" if outcome.retry_after is not None else ""
    log.info("%s: %s%s", stage, outcome.status, retry)


def _follow(task: Any, outcome: StageOutcome) -> str:
    """Run the stage again after `retry_after` seconds through the broker (a countdown)."""
    if outcome.retry_after is None:
        return outcome.status
    if outcome.counts_as_attempt:
        raise task.retry(countdown=outcome.retry_after, max_retries=None)
    # Our own pacing: the same attempt comes back later, so waits do not use up the retries.
    task.signature_from_request(
        task.request, countdown=outcome.retry_after, retries=task.request.retries
    ).apply_async()
    return "waiting"


@app.task(name="triage.triage", bind=True, **DB_RETRY)
def triage_task(self: Any, message_id: int) -> str:
    rt = runtime()
    with log_context(message_id=message_id, task_id=self.request.id):
        outcome = triage_message(
            message_id=message_id,
            attempt=self.request.retries + 1,
            db=rt.db,
            model=model_port(),
            secrets=rt.secrets,
            enqueue=CeleryEnqueuer(),
            settings=rt.settings,
        )
        _finished("triage", outcome)
    return _follow(self, outcome)


@app.task(name="triage.draft", bind=True, **DB_RETRY)
def draft_task(self: Any, message_id: int) -> str:
    rt = runtime()
    with log_context(message_id=message_id, task_id=self.request.id):
        outcome = draft_message(
            message_id=message_id,
            attempt=self.request.retries + 1,
            db=rt.db,
            model=model_port(),
            secrets=rt.secrets,
            settings=rt.settings,
            enqueue=CeleryEnqueuer(),
        )
        _finished("draft", outcome)
    return _follow(self, outcome)


@app.task(name="triage.rerun", bind=True)
def rerun_task(self: Any, request_id: int) -> str:
    rt = runtime()
    outcome = rerun_triage(
        request_id=request_id,
        attempt=self.request.retries + 1,
        db=rt.db,
        model=model_port(),
        secrets=rt.secrets,
        settings=rt.settings,
    )
    return _follow(self, outcome)


@app.task(name="triage.write_back", bind=True)
def write_back_task(self: Any, message_id: int) -> str:
    rt = runtime()
    outcome = write_back_message(
        message_id=message_id,
        attempt=self.request.retries + 1,
        db=rt.db,
        secrets=rt.secrets,
        open_mailbox=mailbox_opener(rt),
    )
    return _follow(self, outcome)


@app.task(name="triage.sync_account")
def sync_account_task(account_id: int) -> dict[str, Any]:
    rt = runtime()
    with log_context(account_id=account_id):
        report = sync_account(
            account_id=account_id,
            db=rt.db,
            open_mailbox=mailbox_opener(rt),
            secrets=rt.secrets,
            enqueue=CeleryEnqueuer(),
            settings=rt.settings,
        )
    INGESTED.inc(report.stored)
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
