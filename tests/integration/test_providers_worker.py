"""Waits go through the queue of a real worker: Retry-After, backoff, and the per-key bucket."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from celery import Celery
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from tests.e2e.console import runtime_of
from tests.integration.conftest import Worker, start_worker, stop_worker, wait_until
from tests.support.byok import Clock, add_message, add_setting, add_user, behaving
from tests.support.model_server import FakeModelServer, RecordedRequest, Reply, api_error
from triage.adapters.db.tables import Message
from triage.domain import statuses
from triage.runtime import Runtime

KEY = "sk-worker-test-6b2e"


@pytest.fixture
def rt(service_env: dict[str, str]) -> Runtime:
    """The test's own view of the service's database, with the workers' secret key."""
    return runtime_of(service_env)


@pytest.fixture
def workers(service_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    started: list[Worker] = []

    def start(**env: str) -> Worker:
        worker = start_worker({**service_env, **env}, tmp_path / f"worker-{len(started)}.log")
        started.append(worker)
        return worker

    yield start
    for worker in started:
        stop_worker(worker)


def enqueue(service_env: dict[str, str], *message_ids: int) -> None:
    app = Celery(broker=service_env["TRIAGE_BROKER_URL"])
    for message_id in message_ids:
        app.send_task("triage.triage", args=[message_id], queue="triage")
    app.close()


def status_of(engine: Engine, message_id: int) -> str:
    with Session(engine) as session:
        return session.get_one(Message, message_id).status


def scripted(*first: Reply) -> Callable[[RecordedRequest], Reply]:
    """These replies first (thread-safe), then a competent model."""
    replies = iter(first)
    lock = threading.Lock()
    competent = behaving()

    def respond(request: RecordedRequest) -> Reply:
        with lock:
            reply = next(replies, None)
        return reply if reply is not None else competent(request)

    return respond


def test_429s_are_honoured_through_a_countdown_never_earlier(
    rt: Runtime,
    service_env: dict[str, str],
    workers: Callable[..., Worker],
    pg_engine: Engine,
    model_server: FakeModelServer,
) -> None:
    user_id, account_id = add_user(rt, "owner@example.test")
    add_setting(rt, user_id, provider="openai", base_url=model_server.base_url, api_key=KEY)
    message_id = add_message(rt, account_id, uid=1)
    storm = [api_error(429, "Rate limit reached", retry_after=2) for _ in range(3)]
    clock = Clock(scripted(*storm))
    model_server.responder = clock
    worker = workers()

    enqueue(service_env, message_id)
    wait_until(
        lambda: status_of(pg_engine, message_id) == statuses.TRIAGED,
        timeout=60,
        what="the message to be triaged after the 429s",
    )

    assert len(model_server.chat_requests) == 4
    gaps = [later - earlier for earlier, later in itertools.pairwise(clock.arrivals)]
    assert all(2.0 <= gap < 2.0 + 1.2 + 3.0 for gap in gaps), gaps
    assert "Retry in" in worker.log()  # Celery's own record of the countdown


def test_5xx_backs_off_through_the_queue_and_fails_after_the_bound(
    rt: Runtime,
    service_env: dict[str, str],
    workers: Callable[..., Worker],
    pg_engine: Engine,
    model_server: FakeModelServer,
) -> None:
    user_id, account_id = add_user(rt, "owner@example.test")
    add_setting(rt, user_id, provider="openai", base_url=model_server.base_url, api_key=KEY)
    message_id = add_message(rt, account_id, uid=1)
    model_server.responder = lambda _r: api_error(502, "bad gateway")
    workers(TRIAGE_MODEL_MAX_ATTEMPTS="3", TRIAGE_MODEL_BACKOFF_SECONDS="0.4")

    enqueue(service_env, message_id)
    wait_until(
        lambda: status_of(pg_engine, message_id) == statuses.FAILED,
        timeout=60,
        what="the message to fail after its retries",
    )

    assert len(model_server.chat_requests) == 3
    with Session(pg_engine) as session:
        assert "502" in (session.get_one(Message, message_id).error or "")


def test_a_hanging_provider_times_out_under_the_task_limit(
    rt: Runtime,
    service_env: dict[str, str],
    workers: Callable[..., Worker],
    pg_engine: Engine,
    model_server: FakeModelServer,
) -> None:
    user_id, account_id = add_user(rt, "owner@example.test")
    add_setting(rt, user_id, provider="openai", base_url=model_server.base_url, api_key=KEY)
    message_id = add_message(rt, account_id, uid=1)
    model_server.responder = lambda _r: Reply(hang=True)
    workers(
        TRIAGE_MODEL_TIMEOUT_SECONDS="1",
        TRIAGE_MODEL_MAX_ATTEMPTS="2",
        TRIAGE_MODEL_BACKOFF_SECONDS="0.2",
    )

    enqueue(service_env, message_id)
    wait_until(
        lambda: status_of(pg_engine, message_id) == statuses.FAILED,
        timeout=60,
        what="the message to fail after two timeouts",
    )

    assert len(model_server.chat_requests) == 2
    with Session(pg_engine) as session:
        assert "timeout" in (session.get_one(Message, message_id).error or "")


def test_the_key_bucket_keeps_two_workers_under_the_users_rpm(
    rt: Runtime,
    service_env: dict[str, str],
    workers: Callable[..., Worker],
    pg_engine: Engine,
    model_server: FakeModelServer,
) -> None:
    rpm = 60
    user_id, account_id = add_user(rt, "owner@example.test")
    add_setting(
        rt, user_id, provider="openai", base_url=model_server.base_url, api_key=KEY, rpm=rpm
    )
    # No question in the mail, so no drafts: every call is a classification.
    body = "Notes from the meeting are attached."
    message_ids = [add_message(rt, account_id, uid=uid, body=body) for uid in range(1, 9)]
    clock = Clock(behaving())
    model_server.responder = clock
    workers()
    workers()  # two processes, four threads each: eight calls could go out at once

    enqueue(service_env, *message_ids)
    wait_until(
        lambda: all(status_of(pg_engine, i) == statuses.TRIAGED for i in message_ids),
        timeout=120,
        what="every message to be triaged",
    )

    arrivals = sorted(clock.arrivals)
    assert len(arrivals) == len(message_ids)
    # One call a second at 60 rpm: call j never comes more than half a second (the jitter of
    # an HTTP round trip on a busy machine) ahead of i + (j - i) seconds, for any i < j.
    interval = 60 / rpm
    for (i, early), (j, late) in itertools.combinations(enumerate(arrivals), 2):
        assert late - early >= (j - i) * interval - 0.5, (i, j, arrivals)
    client = redis.Redis.from_url(service_env["TRIAGE_BROKER_URL"])
    buckets = [key.decode() for key in client.scan_iter("triage:rate:*")]
    client.close()
    assert len(buckets) == 1 and KEY not in buckets[0]
    with Session(pg_engine) as session:
        errors = session.scalars(select(Message.error).where(Message.error.is_not(None))).all()
        assert errors == []
