"""`triage listen` against a real Dovecot: pushed mail lands within a second, drops are survived."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from tests.conftest import ImapUser
from tests.e2e.console import free_port
from tests.integration.conftest import Worker, base_env, wait_until
from tests.integration.ingest_support import (
    Process,
    account,
    mail,
    poll,
    seed_account,
    start_triage,
    stored_uids,
    subjects,
)
from tests.support.dovecot import Dovecot
from tests.support.model_server import FakeModelServer
from tests.support.triage_responder import triage_and_draft
from triage.adapters.db.session import make_engine
from triage.adapters.db.tables import Message
from triage.domain import statuses

READY = "up to date, listening"
PUSH_DEADLINE = 1.0  # seconds from the start of the APPEND to the stored row


def push(
    dovecot: Dovecot, imap: ImapUser, engine: Engine, subject: str, folder: str = "INBOX"
) -> float:
    """APPEND one message and return how long until its row was in the database."""
    before = len(stored_uids(engine, folder))
    started = time.monotonic()
    dovecot.append(imap.username, imap.password, folder, mail(subject))
    poll(lambda: len(stored_uids(engine, folder)) > before, timeout=30, what=f"{subject!r} stored")
    return time.monotonic() - started


Starter = Callable[..., Process]


@pytest.fixture
def listener(service_env: dict[str, str], tmp_path: Path) -> Iterator[Starter]:
    """Starts `triage listen` once the test has added its account; stopped after the test."""
    started: list[Process] = []

    def start(name: str = "listen") -> Process:
        process = start_triage(service_env, tmp_path / f"{name}.log", "listen")
        started.append(process)
        return process

    yield start
    for process in started:
        process.terminate()


def test_pushed_mail_is_stored_within_a_second_and_triaged(
    dovecot: Dovecot,
    imap_user: ImapUser,
    service_env: dict[str, str],
    pg_engine: Engine,
    model_server: FakeModelServer,
    worker: Worker,
    listener: Starter,
) -> None:
    model_server.responder = triage_and_draft
    dovecot.append(imap_user.username, imap_user.password, "INBOX", mail("before the listener"))
    seed_account(service_env, imap_user, folders=("INBOX", "Work"))
    dovecot.create_folder(imap_user.username, imap_user.password, "Work")
    process = listener()
    process.wait_for_log(READY, count=2)  # one connection per watched folder
    assert subjects(pg_engine) == ["before the listener"], "the first catch-up missed mail"

    delays = [push(dovecot, imap_user, pg_engine, f"push {n}") for n in range(3)]
    delays.append(push(dovecot, imap_user, pg_engine, "to work", folder="Work"))

    assert max(delays) < PUSH_DEADLINE, f"APPEND-to-row delays {delays}"
    with Session(pg_engine) as session:

        def all_triaged() -> bool:
            done = session.scalar(
                select(func.count()).where(Message.status.in_(statuses.UNFINISHED))
            )
            session.expire_all()
            return done == 0

        wait_until(all_triaged, timeout=60, what="the worker to triage pushed mail")
        assert session.scalar(select(func.count()).select_from(Message)) == 5
    assert account(pg_engine).status == "ok"


def test_after_a_kick_the_listener_reconnects_and_stores_what_came_meanwhile(
    dovecot: Dovecot,
    imap_user: ImapUser,
    service_env: dict[str, str],
    pg_engine: Engine,
    listener: Starter,
) -> None:
    seed_account(service_env, imap_user)
    process = listener()
    process.wait_for_log(READY)

    dovecot.kick(imap_user.username)
    dovecot.append(imap_user.username, imap_user.password, "INBOX", mail("while kicked"))

    poll(lambda: subjects(pg_engine) == ["while kicked"], timeout=20, what="mail from the gap")
    process.wait_for_log(READY, count=2)
    assert "the server closed the connection" in process.log()
    assert push(dovecot, imap_user, pg_engine, "after the kick") < PUSH_DEADLINE
    state = account(pg_engine)
    assert state.status == "ok" and state.consecutive_failures == 0
    assert "closed the connection" in (state.last_error or "")
    assert state.last_success_at is not None


def test_a_connection_cut_without_bye_is_noticed_and_replaced(
    dovecot: Dovecot,
    imap_user: ImapUser,
    service_env: dict[str, str],
    pg_engine: Engine,
    listener: Starter,
) -> None:
    seed_account(service_env, imap_user)
    process = listener()
    process.wait_for_log(READY)
    (session,) = dovecot.sessions(imap_user.username)

    os.kill(session, signal.SIGKILL)  # EOF, no BYE: what a crashed server or a cut line gives

    process.wait_for_log(READY, count=2, timeout=20)
    assert push(dovecot, imap_user, pg_engine, "after the cut") < PUSH_DEADLINE


def test_a_silent_server_is_probed_and_the_connection_replaced(
    dovecot: Dovecot,
    imap_user: ImapUser,
    service_env: dict[str, str],
    pg_engine: Engine,
    listener: Starter,
) -> None:
    service_env.update(TRIAGE_IDLE_SILENCE_SECONDS="1", TRIAGE_IMAP_READ_TIMEOUT="2")
    seed_account(service_env, imap_user)
    process = listener()
    process.wait_for_log(READY)
    (frozen,) = dovecot.sessions(imap_user.username)

    os.kill(frozen, signal.SIGSTOP)  # the TCP connection stays up; the server says nothing
    try:
        process.wait_for_log(READY, count=2, timeout=20)
        assert push(dovecot, imap_user, pg_engine, "after the silence") < PUSH_DEADLINE
    finally:
        os.kill(frozen, signal.SIGCONT)
    assert "timed out" in (account(pg_engine).last_error or "")


def test_two_listeners_at_once_fetch_each_message_once(
    dovecot: Dovecot,
    imap_user: ImapUser,
    service_env: dict[str, str],
    pg_engine: Engine,
    listener: Starter,
) -> None:
    seed_account(service_env, imap_user)
    first, second = listener("first"), listener("second")
    first.wait_for_log(READY)
    second.wait_for_log(READY)

    for n in range(20):
        dovecot.append(imap_user.username, imap_user.password, "INBOX", mail(f"race {n}"))
    poll(lambda: len(stored_uids(pg_engine)) == 20, timeout=30, what="20 messages")

    assert first.terminate() == 0 and second.terminate() == 0
    logs = first.log() + second.log()
    counts = [tuple(map(int, m)) for m in re.findall(r"stored (\d+), already known (\d+)", logs)]
    assert sum(stored for stored, _ in counts) == 20
    assert sum(known for _, known in counts) == 0, "both fetchers fetched the same mail"
    assert stored_uids(pg_engine) == list(range(1, 21))


def test_sigterm_ends_idle_and_logs_out(
    dovecot: Dovecot,
    imap_user: ImapUser,
    service_env: dict[str, str],
    pg_engine: Engine,
    listener: Starter,
) -> None:
    seed_account(service_env, imap_user)
    process = listener()
    process.wait_for_log(READY)

    started = time.monotonic()
    assert process.terminate() == 0
    assert time.monotonic() - started < 5
    assert "SIGTERM received" in process.log()
    poll(
        lambda: (
            f"imap({imap_user.username})" in dovecot.log_tail(200)
            and "Logged out" in dovecot.log_tail(200)
        ),
        timeout=5,
        what="a LOGOUT in Dovecot's log",
    )
    assert account(pg_engine).sync_lease_owner is None, "the lease was left held"


def test_triage_run_listens_too(dovecot: Dovecot, imap_user: ImapUser, tmp_path: Path) -> None:
    env = base_env(tmp_path)
    env["TRIAGE_SYNC_INTERVAL_SECONDS"] = "3600"  # only IDLE can bring mail in time
    env["TRIAGE_WEB_PORT"] = str(free_port())  # `run` serves the console too; not on 8025
    seed_account(env, imap_user)
    process = start_triage(env, tmp_path / "run.log", "run")
    try:
        process.wait_for_log(READY)
        engine = make_engine(f"sqlite:///{tmp_path / 'data' / 'triage.sqlite3'}")
        assert push(dovecot, imap_user, engine, "embedded push") < PUSH_DEADLINE
        engine.dispose()
    finally:
        assert process.terminate() == 0
