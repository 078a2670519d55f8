"""Postgres restarted mid-run: the worker and the syncer reconnect, and no message is stuck."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from tests.conftest import ImapUser
from tests.integration.conftest import REPO, Cli, configure_user, start_worker, stop_worker
from tests.support.dovecot import Dovecot, DovecotError
from tests.support.fault_run import (
    WORKER_FLAGS,
    assert_exactly_once,
    audit,
    enqueue_triage,
    finished,
    runtime_with_key,
    seed_queued,
    slow_responder,
    stop_process,
    wait_for,
)
from tests.support.model_server import FakeModelServer
from tests.support.private_services import PrivatePostgres
from tests.support.services import ServiceUnavailable
from triage.adapters.db.migrate import upgrade
from triage.adapters.db.session import make_engine
from triage.adapters.db.tables import MailAccount, Message
from triage.domain import statuses

SEEDED = 500
BY_IMAP = 20  # before the restart, and as many again after it
DONE = frozenset({statuses.TRIAGED, statuses.DRAFTED})


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    try:
        server = PrivatePostgres().start()
    except ServiceUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    upgrade(server.url())
    yield server
    server.close()


@pytest.fixture
def own_dovecot() -> Iterator[Dovecot]:
    try:
        server = Dovecot().start()
    except (ServiceUnavailable, DovecotError) as exc:
        pytest.fail(str(exc), pytrace=False)
    yield server
    server.close()


def mail(number: int) -> bytes:
    message = EmailMessage()
    message["From"] = "Bob <bob@example.test>"
    message["To"] = "owner@example.test"
    message["Subject"] = f"Imap {number}"
    message.set_content(f"Message {number} arrived over IMAP. Please file it.")
    return message.as_bytes()


def test_postgres_restart_mid_run(
    service_env: dict[str, str],
    private_pg: PrivatePostgres,
    own_dovecot: Dovecot,
    model_server: FakeModelServer,
    tmp_path: Path,
) -> None:
    model_server.responder = slow_responder(0.05)
    env = dict(
        service_env,
        TRIAGE_DATABASE_URL=private_pg.url(),
        TRIAGE_SYNC_INTERVAL_SECONDS="1",
        TRIAGE_SYNC_LEASE_SECONDS="10",  # a lease whose release failed in the outage expires
    )
    cli = Cli(env)
    imap = ImapUser(own_dovecot.host, own_dovecot.port, "pgrestart", "pw-pgrestart")
    own_dovecot.add_user(imap.username, imap.password)
    configure_user(cli, imap, model_server, env)
    engine = make_engine(private_pg.url())
    rt = runtime_with_key(private_pg.url(), env["TRIAGE_SECRET_KEYS"])
    with Session(engine) as session:
        account_id = session.scalars(select(MailAccount.id)).one()
    seeded = seed_queued(rt, account_id, SEEDED, question_every=5, folder="Archive")
    rt.engine.dispose()

    worker = start_worker(env, tmp_path / "worker.log", "--concurrency", "8", *WORKER_FLAGS)
    syncer = _start_syncer(env, tmp_path / "sync.log")
    try:
        enqueue_triage(env["TRIAGE_BROKER_URL"], seeded)
        for number in range(BY_IMAP):
            own_dovecot.append(imap.username, imap.password, "INBOX", mail(number))
        wait_for(lambda: audit(engine, seeded).results >= 100, timeout=120, what="the run")

        private_pg.restart("fast")  # every connection of the worker and the syncer is cut
        at_restart = audit(engine, seeded)
        assert at_restart.unfinished > 0, f"the run was over before the restart: {at_restart}"
        for number in range(BY_IMAP, 2 * BY_IMAP):
            own_dovecot.append(imap.username, imap.password, "INBOX", mail(number))

        wait_for(
            lambda: _all_done(engine),
            timeout=240,
            what="every message, seeded and fetched, to finish after the restart",
            every=lambda: cli("sweep", "--stuck-after", "10"),
            every_seconds=5,
            explain=lambda: f"{audit(engine, _all_ids(engine))}\n{worker.log()[-3000:]}",
        )
        assert syncer.poll() is None, "the syncer died with the database"
    finally:
        stop_process(syncer)
        stop_worker(worker)

    ids = _all_ids(engine)
    assert len(ids) == SEEDED + 2 * BY_IMAP, "a fetched message was lost or stored twice"
    assert_exactly_once(engine, ids, allowed=DONE)
    sync_log = (tmp_path / "sync.log").read_text(errors="replace")
    assert "Traceback" not in sync_log, sync_log[-3000:]
    engine.dispose()


def _start_syncer(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "triage.cli", "sync"],
            env=env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def _all_ids(engine: Engine) -> list[int]:
    with Session(engine) as session:
        return list(session.scalars(select(Message.id)))


def _all_done(engine: Engine) -> bool:
    with Session(engine) as session:
        fetched = session.scalar(
            select(func.count()).select_from(Message).where(Message.folder == "INBOX")
        )
    return fetched == 2 * BY_IMAP and finished(engine, _all_ids(engine))
