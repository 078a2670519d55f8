"""The IMAP server drops every connection mid-fetch, again and again: nothing lost or doubled."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from tests.conftest import ImapUser
from tests.integration.conftest import REPO, Cli, Worker, configure_user
from tests.support.dovecot import Dovecot, DovecotError
from tests.support.fault_run import (
    assert_exactly_once,
    audit,
    finished,
    slow_responder,
    stop_process,
    wait_for,
)
from tests.support.model_server import FakeModelServer
from tests.support.services import ServiceUnavailable
from triage.adapters.db.tables import Message
from triage.domain import statuses

MAILS = 300
KICK_FOR_SECONDS = 8.0


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
    message["From"] = "Carol <carol@example.test>"
    message["To"] = "owner@example.test"
    message["Subject"] = f"Drop {number}"
    # ~20 KB each, so a batch takes long enough to be cut in the middle.
    message.set_content(f"Report {number}.\n" + "Figures for the quarter follow. " * 600)
    return message.as_bytes()


def stored(engine: Engine) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(Message)) or 0


def test_connections_dropped_mid_fetch(
    service_env: dict[str, str],
    pg_engine: Engine,
    own_dovecot: Dovecot,
    model_server: FakeModelServer,
    worker: Worker,
    tmp_path: Path,
) -> None:
    model_server.responder = slow_responder(0.01)
    env = dict(service_env, TRIAGE_SYNC_INTERVAL_SECONDS="1", TRIAGE_FETCH_BATCH_SIZE="10")
    imap = ImapUser(own_dovecot.host, own_dovecot.port, "dropped", "pw-dropped")
    own_dovecot.add_user(imap.username, imap.password)
    for number in range(MAILS):
        own_dovecot.append(imap.username, imap.password, "INBOX", mail(number))
    configure_user(Cli(env), imap, model_server, env)

    log_path = tmp_path / "sync.log"
    with log_path.open("wb") as log:
        syncer = subprocess.Popen(
            [sys.executable, "-m", "triage.cli", "sync"],
            env=env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    kicked_mid_fetch: list[int] = []

    def kick_everyone() -> None:
        wait_for(lambda: stored(pg_engine) > 0, timeout=60, what="the first stored batch")
        deadline = time.monotonic() + KICK_FOR_SECONDS
        while time.monotonic() < deadline:
            count = stored(pg_engine)
            try:
                own_dovecot.kick(imap.username)  # drops every connection of the user
            except DovecotError:
                continue  # nobody was connected at that instant (between passes)
            if 0 < count < MAILS:
                kicked_mid_fetch.append(count)
            time.sleep(0.05)

    kicker = threading.Thread(target=kick_everyone, name="kicker")
    try:
        kicker.start()
        kicker.join()
        wait_for(
            lambda: stored(pg_engine) == MAILS,
            timeout=120,
            what="every message to be stored once the drops stop",
            explain=lambda: log_path.read_text(errors="replace")[-3000:],
        )
        ids = _ids(pg_engine)
        wait_for(
            lambda: finished(pg_engine, ids),
            timeout=120,
            what="every message to be triaged",
            explain=lambda: f"{audit(pg_engine, ids)}\n{worker.log()[-3000:]}",
        )
        assert syncer.poll() is None, "the syncer died of the dropped connections"
    finally:
        stop_process(syncer)

    sync_log = log_path.read_text(errors="replace")
    assert "FAILED" in sync_log, "no sync pass was cut off; the test proved nothing"
    assert kicked_mid_fetch, "no drop happened while a fetch was under way"
    assert "Traceback" not in sync_log, sync_log[-3000:]
    with Session(pg_engine) as session:
        uids = session.scalars(select(Message.uid)).all()
    assert sorted(uids) == list(range(1, MAILS + 1)), "a UID is missing or stored twice"
    assert_exactly_once(pg_engine, ids, allowed=frozenset({statuses.TRIAGED, statuses.DRAFTED}))


def _ids(engine: Engine) -> list[int]:
    with Session(engine) as session:
        return list(session.scalars(select(Message.id)))
