"""A misbehaving provider: 429s for a while, calls that hang past the timeout, a dead primary."""

from __future__ import annotations

import itertools
import threading
import time
from collections import defaultdict
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from tests.integration.conftest import Cli, start_worker, stop_worker
from tests.integration.seed import seed_user
from tests.support.fault_run import (
    WORKER_FLAGS,
    assert_exactly_once,
    audit,
    enqueue_triage,
    finished,
    run_number,
    runtime_with_key,
    seed_queued,
    slow_responder,
    wait_for,
)
from tests.support.model_server import FakeModelServer, RecordedRequest, Reply, api_error
from tests.support.triage_responder import task_of
from triage.adapters.db.session import transaction
from triage.adapters.db.tables import MailAccount, Message, TriageResult, User
from triage.domain import statuses

DONE = frozenset({statuses.TRIAGED, statuses.DRAFTED})


def _run(
    env: dict[str, str], engine: Engine, ids: list[int], tmp_path: Path, *, timeout: float
) -> None:
    """Enqueue the run on a real worker and wait until every message is finished."""
    worker = start_worker(env, tmp_path / "worker.log", "--concurrency", "8", *WORKER_FLAGS)
    try:
        enqueue_triage(env["TRIAGE_BROKER_URL"], ids)
        wait_for(
            lambda: finished(engine, ids),
            timeout=timeout,
            what="every message to finish",
            explain=lambda: f"{audit(engine, ids)}\n{worker.log()[-3000:]}",
        )
    finally:
        stop_worker(worker)


def test_429_with_retry_after_then_recovery(
    service_env: dict[str, str], pg_engine: Engine, model_server: FakeModelServer, tmp_path: Path
) -> None:
    """The issue's "429 for a minute", shortened to 8 s; the shape is kept: every 429 carries
    Retry-After, the next call for that message waits at least that long, then all recover."""
    window, retry_after = 8.0, 2.0
    calls: dict[tuple[str, int | None], list[tuple[float, int]]] = defaultdict(list)
    lock, answer = threading.Lock(), slow_responder(0.02)
    started: list[float] = []

    def limited(request: RecordedRequest) -> Reply:
        now = time.monotonic()
        with lock:
            started[:] = started or [now]
            reply = answer(request) if now - started[0] > window else None
            if reply is None:
                reply = api_error(429, "Rate limit reached", retry_after=retry_after)
            calls[(task_of(request), run_number(request))].append((now, reply.status))
        return reply

    model_server.responder = limited
    rt = runtime_with_key(service_env["TRIAGE_DATABASE_URL"], service_env["TRIAGE_SECRET_KEYS"])
    _user, account_id, _setting = seed_user(rt, base_url=model_server.base_url, api_key="sk-429")
    ids = seed_queued(rt, account_id, 40, question_every=4)
    rt.engine.dispose()

    _run(service_env, pg_engine, ids, tmp_path, timeout=180)

    assert_exactly_once(pg_engine, ids, allowed=DONE)
    limited_messages = 0
    for history in calls.values():
        for (at, status), (next_at, _) in itertools.pairwise(history):
            if status == 429:
                assert next_at - at >= retry_after - 0.05, f"Retry-After ignored: {history}"
        limited_messages += history[0][1] == 429
    assert limited_messages >= 8, "the window should have rate-limited many messages"


def test_calls_that_hang_past_the_timeout(
    service_env: dict[str, str], pg_engine: Engine, model_server: FakeModelServer, tmp_path: Path
) -> None:
    """The first call of each message hangs: it is cut at the timeout and retried; a message
    whose every call hangs ends `failed` after a bounded number of attempts."""
    attempts = 3
    env = dict(
        service_env,
        TRIAGE_MODEL_TIMEOUT_SECONDS="2",
        TRIAGE_MODEL_MAX_ATTEMPTS=str(attempts),
        TRIAGE_MODEL_BACKOFF_SECONDS="0.5",
        TRIAGE_MODEL_BACKOFF_MAX_SECONDS="1",
    )
    hopeless = {1, 2}  # run numbers whose every call hangs
    seen: dict[int | None, int] = defaultdict(int)
    lock, answer = threading.Lock(), slow_responder(0.02)

    def first_call_hangs(request: RecordedRequest) -> Reply:
        number = run_number(request)
        with lock:
            seen[number] += 1
            first = seen[number] == 1
        if first or number in hopeless:
            return Reply(hang=True)
        return answer(request)

    model_server.responder = first_call_hangs
    rt = runtime_with_key(env["TRIAGE_DATABASE_URL"], env["TRIAGE_SECRET_KEYS"])
    _user, account_id, _setting = seed_user(rt, base_url=model_server.base_url, api_key="sk-hang")
    ids = seed_queued(rt, account_id, 24)
    rt.engine.dispose()

    _run(env, pg_engine, ids, tmp_path, timeout=180)

    assert_exactly_once(pg_engine, ids, allowed=DONE | {statuses.FAILED})
    with Session(pg_engine) as session:
        failed = session.scalars(select(Message).where(Message.status == statuses.FAILED)).all()
    assert sorted(int(m.subject.split()[-1]) for m in failed) == sorted(hopeless)
    assert all(m.error for m in failed), "a failed message must say why"
    for number in hopeless:
        assert seen[number] == attempts, f"run {number}: {seen[number]} calls, not {attempts}"
    others = [n for n in seen if n not in hopeless]
    assert all(seen[n] == 2 for n in others), "one hung call and one answer per message"


def test_500_from_the_primary_while_the_fallback_answers(
    service_env: dict[str, str], pg_engine: Engine, model_server: FakeModelServer, tmp_path: Path
) -> None:
    env = dict(
        service_env,
        TRIAGE_MODEL_MAX_ATTEMPTS="2",
        TRIAGE_MODEL_BACKOFF_SECONDS="0.2",
        TRIAGE_MODEL_BACKOFF_MAX_SECONDS="0.5",
        PRIMARY_KEY="sk-primary-0001",
        FALLBACK_KEY="sk-fallback-0002",
    )
    model_server.responder = lambda _request: api_error(500, "upstream exploded")
    with FakeModelServer() as fallback:
        fallback.responder = slow_responder(0.02)
        cli = Cli(env)
        cli("users", "add", "owner@example.test")
        common = ("--user", "owner@example.test", "--no-probe")
        cli(
            "providers",
            "set",
            *common,
            "--provider",
            "openai",
            "--base-url",
            model_server.base_url,
            "--model",
            "primary-model",
            "--api-key-env",
            "PRIMARY_KEY",
        )
        cli(
            "providers",
            "set",
            *common,
            "--provider",
            "custom",
            "--base-url",
            fallback.base_url,
            "--model",
            "fallback-model",
            "--api-key-env",
            "FALLBACK_KEY",
            "--fallback-of",
            "openai",
        )
        rt = runtime_with_key(env["TRIAGE_DATABASE_URL"], env["TRIAGE_SECRET_KEYS"])
        with transaction(rt.db) as session:
            user_id = session.scalars(select(User.id)).one()
            account = MailAccount(
                user_id=user_id,
                host="127.0.0.1",
                port=1,
                security="plain",
                username="u",
                folders=["INBOX"],
            )
            session.add(account)
        ids = seed_queued(rt, account.id, 30, question_every=5)
        rt.engine.dispose()

        _run(env, pg_engine, ids, tmp_path, timeout=180)

    assert_exactly_once(pg_engine, ids, allowed=DONE)
    with Session(pg_engine) as session:
        answered_by = set(session.execute(select(TriageResult.provider, TriageResult.model)).all())
    assert answered_by == {("custom", "fallback-model")}
    assert model_server.chat_requests, "the primary was never tried"
    assert not fallback.errors
