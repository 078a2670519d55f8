"""Many messages cross the broker as one task that a real worker fans out, one triage each."""

from __future__ import annotations

from pathlib import Path

import redis
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session

from tests.integration.conftest import Cli, start_worker, stop_worker, wait_until
from tests.support.byok import add_message, add_setting, add_user, behaving
from tests.support.model_server import FakeModelServer
from triage.adapters.db.session import transaction
from triage.adapters.db.tables import Message, TriageResult
from triage.config import Settings
from triage.domain import statuses
from triage.runtime import build_runtime
from workers.tasks import FAN_OUT_MIN

KEY = "sk-fan-out-test-41c7"


def test_a_big_batch_is_one_broker_message_and_every_message_is_triaged(
    service_env: dict[str, str],
    cli: Cli,
    pg_engine: Engine,
    model_server: FakeModelServer,
    tmp_path: Path,
) -> None:
    rt = build_runtime(
        Settings(
            database_url=service_env["TRIAGE_DATABASE_URL"],
            secret_keys=service_env["TRIAGE_SECRET_KEYS"],
        )
    )
    user_id, account_id = add_user(rt, "owner@example.test")
    add_setting(rt, user_id, provider="openai", base_url=model_server.base_url, api_key=KEY)
    count = 3 * FAN_OUT_MIN
    ids = [add_message(rt, account_id, uid=uid) for uid in range(1, count + 1)]
    with transaction(rt.db) as session:
        session.execute(update(Message).where(Message.id.in_(ids)).values(status=statuses.FAILED))
    model_server.responder = behaving()

    cli("retry", "--status", statuses.FAILED)  # the sweeper's and a sync's way to enqueue

    broker = redis.Redis.from_url(service_env["TRIAGE_BROKER_URL"])
    assert broker.llen("triage") == 1  # one fan-out task, not one task per message
    worker = start_worker(service_env, tmp_path / "worker.log")
    try:

        def all_triaged() -> bool:
            with Session(pg_engine) as session:
                done = session.scalar(
                    select(func.count()).where(
                        Message.id.in_(ids),
                        Message.status.in_({statuses.TRIAGED, statuses.DRAFTED}),
                    )
                )
            return done == count

        wait_until(all_triaged, timeout=120, what=f"{count} messages triaged")
    finally:
        stop_worker(worker)
    with Session(pg_engine) as session:
        results = session.scalars(select(TriageResult.message_id)).all()
    assert sorted(results) == sorted(ids)
