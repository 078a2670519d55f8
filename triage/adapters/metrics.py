"""Prometheus metrics: what each process counts, and the state read from the database and broker.

Counters and histograms live in the process that does the work (a worker counts its stage
outcomes and model calls; a syncer or the listener counts what it stored). The state gauges
(queue depth, messages by status, seconds since each account's last good sync, silent
accounts) are read at scrape time from Postgres and Redis, so every process that serves
/metrics reports the same numbers: alert on `max()` of them.

Workers run the threads pool (see the README's throughput section), one process per worker,
so each serves its own registry on TRIAGE_METRICS_PORT; no multiprocess mode is needed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import redis
from prometheus_client import REGISTRY, Counter, Histogram, make_asgi_app, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry
from sqlalchemy import func, select

from triage.adapters.db.session import SessionFactory
from triage.adapters.db.tables import Message
from triage.adapters.health import account_freshness
from triage.adapters.models.prices import call_cost
from triage.config import Settings
from triage.domain import statuses
from triage.pipeline.ports import AnswerT, ModelPort, ModelReply, ProviderConfig, ProviderError

log = logging.getLogger(__name__)
QUEUES = ("triage", "draft", "sync")

INGESTED = Counter("triage_messages_ingested", "Messages stored by a sync pass or the listener")
TRIAGED = Counter("triage_messages_triaged", "Messages given a triage result by this process")
DRAFTED = Counter("triage_messages_drafted", "Drafts written by this process")
FAILED = Counter("triage_messages_failed", "Stage runs that ended a message as failed", ["reason"])
OUTCOMES = Counter("triage_stage_outcomes", "How stage runs ended", ["stage", "status"])
MODEL_LATENCY = Histogram(
    "triage_model_latency_seconds",
    "Wall time of one model request (a re-ask and capability step-downs included)",
    ["provider", "model"],
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120),
)
MODEL_TOKENS = Counter("triage_model_tokens", "Tokens billed", ["provider", "model", "kind"])
MODEL_COST = Counter("triage_model_cost_usd", "USD billed (known prices)", ["provider", "model"])
MODEL_ERRORS = Counter(
    "triage_model_errors", "Failed model requests", ["provider", "model", "error"]
)

# Bounded labels for FAILED: the first phrase of a stage's reason that matches names it.
_FAILURE_REASONS = (
    ("key rejected", "auth"),
    ("rate limited", "rate_limited"),
    ("unreachable", "unavailable"),
    ("provider error", "unavailable"),
    ("invalid answer", "invalid_output"),
    ("no valid model", "no_model"),
    ("refused", "rejected"),
    ("budget", "over_budget"),
)


def failure_reason(detail: str | None) -> str:
    lowered = (detail or "").lower()
    return next((label for phrase, label in _FAILURE_REASONS if phrase in lowered), "other")


def count_outcome(stage: str, status: str, detail: str | None) -> None:
    """Called by the task wrappers with each stage's outcome."""
    OUTCOMES.labels(stage, status).inc()
    if status == statuses.TRIAGED and stage == "triage":
        TRIAGED.inc()
    elif status == statuses.DRAFTED and stage == "draft":
        DRAFTED.inc()
    elif status == statuses.FAILED:
        FAILED.labels(failure_reason(detail)).inc()


class InstrumentedModel:
    """A ModelPort that times and bills every request it passes to the real one."""

    def __init__(self, inner: ModelPort) -> None:
        self._inner = inner

    def ask(
        self,
        config: ProviderConfig,
        *,
        messages: list[dict[str, Any]],
        answer_type: type[AnswerT],
        schema_name: str,
        json_schema: dict[str, Any],
        check: Callable[[AnswerT], None] | None = None,
    ) -> ModelReply[AnswerT]:
        labels = (config.provider, config.model)
        started = time.monotonic()
        try:
            reply = self._inner.ask(
                config,
                messages=messages,
                answer_type=answer_type,
                schema_name=schema_name,
                json_schema=json_schema,
                check=check,
            )
        except ProviderError as exc:
            MODEL_ERRORS.labels(*labels, type(exc).__name__).inc()
            _bill(labels, exc.usage.input_tokens, exc.usage.output_tokens)
            raise
        finally:
            MODEL_LATENCY.labels(*labels).observe(time.monotonic() - started)
        _bill(labels, reply.usage.input_tokens, reply.usage.output_tokens)
        return reply


def _bill(labels: tuple[str, str], input_tokens: int, output_tokens: int) -> None:
    provider, model = labels
    MODEL_TOKENS.labels(provider, model, "input").inc(input_tokens)
    MODEL_TOKENS.labels(provider, model, "output").inc(output_tokens)
    cost = call_cost(
        provider=provider, model=model, input_tokens=input_tokens, output_tokens=output_tokens
    )
    if cost:
        MODEL_COST.labels(provider, model).inc(float(cost))


class StateCollector(Collector):
    """Gauges read at scrape time: queue depth (Redis), statuses and sync freshness (Postgres)."""

    def __init__(self, *, db: SessionFactory, settings: Settings) -> None:
        self._db = db
        self._settings = settings

    def collect(self) -> Iterator[Metric]:
        yield from self._queue_depth()
        try:
            yield from self._database_state()
        except Exception as exc:  # a scrape must answer even while the database is down
            log.warning("metrics: database state unavailable: %s", type(exc).__name__)

    def _queue_depth(self) -> Iterable[Metric]:
        depth = GaugeMetricFamily(
            "triage_queue_depth", "Tasks waiting in a queue", labels=["queue"]
        )
        if self._settings.broker_url:
            client = redis.Redis.from_url(self._settings.broker_url, socket_timeout=2)
            try:
                for queue in QUEUES:
                    depth.add_metric([queue], float(client.llen(queue)))
            except redis.RedisError as exc:
                log.warning("metrics: broker unavailable: %s", type(exc).__name__)
            finally:
                client.close()
        yield depth

    def _database_state(self) -> Iterable[Metric]:
        by_status = GaugeMetricFamily("triage_messages", "Stored messages", labels=["status"])
        since = GaugeMetricFamily(
            "triage_account_seconds_since_sync",
            "Seconds since the account's last successful sync (-1: never)",
            labels=["account"],
        )
        silent = GaugeMetricFamily(
            "triage_account_silent",
            "1 when an account has not synced for longer than it should",
            labels=["account"],
        )
        now = datetime.now(UTC)
        with self._db() as session:
            rows = session.execute(select(Message.status, func.count()).group_by(Message.status))
            for status, count in rows:
                by_status.add_metric([status], float(count))
            for fresh in account_freshness(session, settings=self._settings, now=now):
                age = -1.0 if fresh.seconds_since_sync is None else fresh.seconds_since_sync
                since.add_metric([str(fresh.account_id)], age)
                silent.add_metric([str(fresh.account_id)], 1.0 if fresh.silent else 0.0)
        yield from (by_status, since, silent)


_state_registered: set[int] = set()


def register_state(db: SessionFactory, settings: Settings) -> None:
    """Add the state gauges to this process's registry (once)."""
    if id(REGISTRY) not in _state_registered:
        REGISTRY.register(StateCollector(db=db, settings=settings))
        _state_registered.add(id(REGISTRY))


def serve(port: int, *, host: str = "0.0.0.0") -> bool:  # noqa: S104 - containers scrape it
    """Serve this process's metrics on HTTP `port` (0: don't); False when the port is taken."""
    if port <= 0:
        return False
    try:
        start_http_server(port, addr=host)
    except OSError as exc:
        log.warning("metrics: cannot listen on port %s: %s", port, exc)
        return False
    log.info("metrics on http://%s:%s/metrics", host, port)
    return True


def metrics_asgi_app(registry: CollectorRegistry = REGISTRY) -> Any:
    """An ASGI app for the web console to mount at /metrics."""
    return make_asgi_app(registry)
