"""The prefork pool, the documented alternative to threads: each child uses its own connections."""

from __future__ import annotations

from pathlib import Path

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
    wait_for,
)
from tests.support.model_server import FakeModelServer
from triage.domain import statuses

MESSAGES = 60


def test_a_prefork_worker_triages_with_connections_of_its_own(
    service_env: dict[str, str], pg_engine: Engine, model_server: FakeModelServer, tmp_path: Path
) -> None:
    model_server.responder = slow_responder(0.02)
    # The parent builds the runtime (and touches the database) before it forks its children.
    env = dict(service_env, TRIAGE_METRICS_PORT="0")
    rt = runtime_with_key(env["TRIAGE_DATABASE_URL"], env["TRIAGE_SECRET_KEYS"])
    _user, account_id, _setting = seed_user(rt, base_url=model_server.base_url, api_key="sk-pf")
    ids = seed_queued(rt, account_id, MESSAGES, question_every=4)
    # The last --pool given wins over start_worker's threads.
    worker = start_worker(
        env, tmp_path / "worker.log", "--pool", "prefork", "--concurrency", "3", *WORKER_FLAGS
    )
    try:
        enqueue_triage(env["TRIAGE_BROKER_URL"], ids)
        wait_for(
            lambda: finished(pg_engine, ids),
            timeout=180,
            what="every message triaged by the prefork children",
            explain=lambda: f"{audit(pg_engine, ids)}\n{worker.log()[-6000:]}",
        )
    finally:
        stop_worker(worker)
        rt.engine.dispose()

    assert "prefork" in worker.log() or "ForkPoolWorker" in worker.log()
    assert_exactly_once(pg_engine, ids, allowed=frozenset({statuses.TRIAGED, statuses.DRAFTED}))
    assert "INTRANS" not in worker.log() and "server closed the connection" not in worker.log()
