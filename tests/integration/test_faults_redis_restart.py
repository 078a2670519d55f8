"""Redis restarted without persistence mid-run: every queue is gone; beat's sweeper refills it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import Engine

from tests.integration.conftest import start_worker, stop_worker
from tests.integration.seed import seed_user
from tests.support.fault_run import (
    WORKER_FLAGS,
    assert_exactly_once,
    audit,
    enqueue_triage,
    finished,
    runtime_with_key,
    seed_queued,
    slow_responder,
    start_beat,
    stop_process,
    wait_for,
)
from tests.support.model_server import FakeModelServer
from tests.support.private_services import PrivateRedis
from tests.support.services import ServiceUnavailable
from triage.domain import statuses

MESSAGES = 500


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    try:
        server = PrivateRedis().start()
    except ServiceUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    yield server
    server.close()


def test_redis_restart_mid_run_is_refilled_from_the_database(
    service_env: dict[str, str],
    pg_engine: Engine,
    model_server: FakeModelServer,
    private_redis: PrivateRedis,
    tmp_path: Path,
) -> None:
    model_server.responder = slow_responder(0.05)
    env = dict(
        service_env,
        TRIAGE_BROKER_URL=private_redis.url(),
        TRIAGE_SWEEP_INTERVAL_SECONDS="2",
        TRIAGE_STUCK_AFTER_SECONDS="6",
        TRIAGE_SYNC_INTERVAL_SECONDS="3600",
    )
    rt = runtime_with_key(env["TRIAGE_DATABASE_URL"], env["TRIAGE_SECRET_KEYS"])
    _user, account_id, _setting = seed_user(rt, base_url=model_server.base_url, api_key="sk-rr")
    ids = seed_queued(rt, account_id, MESSAGES, question_every=5)

    workers = [start_worker(env, tmp_path / "worker.log", "--concurrency", "4", *WORKER_FLAGS)]
    beat = start_beat(env, tmp_path)

    def finished_under_supervision() -> bool:
        """A worker that exits is started again, as compose's `restart: unless-stopped` does:
        now and then kombu ends the worker on a reconnect (AttributeError in Channel.close,
        the same family as celery/kombu#582 and #970) instead of reconnecting."""
        if workers[-1].process.poll() is not None:
            log = tmp_path / f"worker-{len(workers)}.log"
            workers.append(start_worker(env, log, "--concurrency", "4", *WORKER_FLAGS))
        return finished(pg_engine, ids)

    def logs() -> str:
        return "\n".join(worker.log() for worker in workers)

    try:
        enqueue_triage(private_redis.url(), ids)
        wait_for(lambda: audit(pg_engine, ids).results >= 50, timeout=120, what="the run to start")
        private_redis.restart()
        client = redis.Redis.from_url(private_redis.url())
        assert client.llen("triage") == 0, "the restart should have emptied the queue"
        client.close()
        at_restart = audit(pg_engine, ids)
        assert at_restart.unfinished > 100, f"too little left to lose: {at_restart}"

        wait_for(
            finished_under_supervision,
            timeout=240,
            what="every message to finish after the broker lost its queues",
            explain=lambda: f"{audit(pg_engine, ids)}\n{logs()[-8000:]}\n{_beat_log(tmp_path)}",
        )
    finally:
        stop_process(beat)
        for worker in workers:
            stop_worker(worker)
        rt.engine.dispose()

    assert_exactly_once(pg_engine, ids, allowed=frozenset({statuses.TRIAGED, statuses.DRAFTED}))
    assert "sweeper re-enqueued" in logs()
    assert not model_server.errors


def _beat_log(tmp_path: Path) -> str:
    return (tmp_path / "beat.log").read_text(errors="replace")[-3000:]
