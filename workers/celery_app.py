"""The Celery app: Redis broker, late acks, one task at a time per thread, no result backend."""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from celery.signals import setup_logging, worker_init, worker_process_init

from triage.config import get_settings

QUEUE_TRIAGE = "triage"
QUEUE_DRAFT = "draft"
QUEUE_SYNC = "sync"


def make_celery() -> Celery:
    settings = get_settings()
    app = Celery("triage", broker=settings.broker_url or "redis://127.0.0.1:6379/0")
    longest_wait = 2 * 3600  # above any retry countdown, or Redis redelivers the delayed task
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        result_backend=None,
        task_soft_time_limit=settings.task_soft_time_limit,
        task_time_limit=settings.task_time_limit,
        broker_transport_options={"visibility_timeout": longest_wait},
        broker_connection_retry_on_startup=True,
        task_default_queue=QUEUE_TRIAGE,
        task_routes={
            "triage.draft": {"queue": QUEUE_DRAFT},
            "triage.sync_account": {"queue": QUEUE_SYNC},
            "triage.write_back": {"queue": QUEUE_SYNC},
            "triage.sync_all": {"queue": QUEUE_SYNC},
            "triage.sweep": {"queue": QUEUE_SYNC},
        },
        beat_schedule={
            "sync-all": {"task": "triage.sync_all", "schedule": settings.sync_interval_seconds},
            "sweep": {"task": "triage.sweep", "schedule": settings.sweep_interval_seconds},
        },
        worker_hijack_root_logger=False,
        include=["workers.tasks"],
    )
    return app


app = make_celery()


def _serve_metrics(**_kwargs: Any) -> None:
    """The worker process serves /metrics on TRIAGE_METRICS_PORT (0: off).

    One registry per worker process is enough because workers run the threads pool; a prefork
    pool would need prometheus_client's multiprocess mode instead.
    """
    from triage.adapters.metrics import register_state, serve
    from workers.tasks import runtime

    rt = runtime()
    register_state(rt.db, rt.settings)
    serve(rt.settings.metrics_port, host=rt.settings.metrics_host)


def _fresh_connections_after_fork(**_kwargs: Any) -> None:
    """A prefork child must not share the database connections it inherited from the parent
    (which built the runtime for /metrics): drop them from its pool, leaving the parent's open."""
    from workers.tasks import runtime

    if runtime.cache_info().currsize:
        runtime().engine.dispose(close=False)


def _configure_logging(loglevel: int | str | None = None, **_kwargs: Any) -> None:
    """Our JSON lines for workers and beat alike (connecting here stops Celery's own set-up)."""
    from triage.logging_setup import configure_logging

    settings = get_settings()
    level = logging.getLevelName(loglevel) if isinstance(loglevel, int) else loglevel
    configure_logging(fmt=settings.log_format, level=str(level or settings.log_level))


worker_init.connect(_serve_metrics)
worker_process_init.connect(_fresh_connections_after_fork)
setup_logging.connect(_configure_logging)
