"""A worker killed with SIGKILL in the middle of a run: a new worker and the sweeper finish it."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from sqlalchemy import Engine

from tests.integration.conftest import Cli, start_worker, stop_worker
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
    wait_for,
)
from tests.support.model_server import FakeModelServer
from triage.domain import statuses

MESSAGES = 500
STUCK_AFTER = 5  # seconds; the run's own messages are re-sent once they sit this long


def test_sigkill_mid_run_loses_and_repeats_nothing(
    service_env: dict[str, str], pg_engine: Engine, model_server: FakeModelServer, tmp_path: Path
) -> None:
    model_server.responder = slow_responder(0.05)
    rt = runtime_with_key(service_env["TRIAGE_DATABASE_URL"], service_env["TRIAGE_SECRET_KEYS"])
    _user, account_id, _setting = seed_user(rt, base_url=model_server.base_url, api_key="sk-k9")
    ids = seed_queued(rt, account_id, MESSAGES, question_every=5)
    cli = Cli(service_env)

    first = start_worker(service_env, tmp_path / "first.log", "--concurrency", "8", *WORKER_FLAGS)
    enqueue_triage(service_env["TRIAGE_BROKER_URL"], ids)
    wait_for(lambda: audit(pg_engine, ids).results >= 100, timeout=120, what="a fifth of the run")
    os.kill(first.process.pid, signal.SIGKILL)
    first.process.wait(timeout=10)
    at_kill = audit(pg_engine, ids)
    assert at_kill.unfinished > 0, f"the run was already over when the worker died: {at_kill}"

    second = start_worker(service_env, tmp_path / "second.log", "--concurrency", "8", *WORKER_FLAGS)
    try:
        # Tasks the dead worker had taken are invisible in Redis for the visibility timeout
        # (hours); the sweeper re-enqueues them from the database, the truth.
        wait_for(
            lambda: finished(pg_engine, ids),
            timeout=240,
            what="every message to finish after the kill",
            every=lambda: cli("sweep", "--stuck-after", str(STUCK_AFTER)),
            every_seconds=STUCK_AFTER,
            explain=lambda: f"{audit(pg_engine, ids)}\n{second.log()[-4000:]}",
        )
    finally:
        stop_worker(second)
        rt.engine.dispose()

    seen = assert_exactly_once(
        pg_engine, ids, allowed=frozenset({statuses.TRIAGED, statuses.DRAFTED})
    )
    assert seen.drafts == MESSAGES // 5
    assert not model_server.errors
