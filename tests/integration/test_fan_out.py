"""Many messages cross the broker as one task that a real worker fans out, one triage each."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import redis
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session

from tests.e2e.console import runtime_of
from tests.integration.conftest import Cli, start_worker, stop_worker, wait_until
from tests.support.byok import add_message, add_setting, add_user, behaving
from tests.support.model_server import FakeModelServer
from triage.adapters.db.session import transaction
from triage.adapters.db.tables import Message, TriageResult
from triage.domain import statuses
from triage.runtime import Runtime
from workers.tasks import FAN_OUT_MIN, FAN_OUT_SLICE

KEY = "sk-fan-out-test-41c7"


@pytest.fixture
def rt(service_env: dict[str, str]) -> Runtime:
    """The test's own view of the service's database, with the workers' secret key."""
    return runtime_of(service_env)


def test_a_big_batch_is_one_broker_message_and_every_message_is_triaged(
    rt: Runtime,
    service_env: dict[str, str],
    cli: Cli,
    pg_engine: Engine,
    model_server: FakeModelServer,
    tmp_path: Path,
) -> None:
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


def test_a_batch_is_cut_into_slices_that_together_carry_every_id_once(
    rt: Runtime, service_env: dict[str, str], cli: Cli, pg_engine: Engine
) -> None:
    _user_id, account_id = add_user(rt, "owner@example.test")
    count = 2 * FAN_OUT_SLICE + 1
    with transaction(rt.db) as session:
        rows = [
            Message(
                account_id=account_id,
                folder="INBOX",
                uidvalidity=1,
                uid=uid,
                status=statuses.FAILED,
            )
            for uid in range(1, count + 1)
        ]
        session.add_all(rows)
        session.flush()
        ids = [row.id for row in rows]

    cli("retry", "--status", statuses.FAILED)

    broker = redis.Redis.from_url(service_env["TRIAGE_BROKER_URL"])
    sent = [json.loads(item) for item in broker.lrange("triage", 0, -1)]
    assert {message["headers"]["task"] for message in sent} == {"triage.fan_out"}
    slices = [json.loads(base64.b64decode(message["body"]))[0][0] for message in sent]
    assert sorted(len(ids_in) for ids_in in slices) == [1, FAN_OUT_SLICE, FAN_OUT_SLICE]
    assert sorted(i for ids_in in slices for i in ids_in) == sorted(ids)
