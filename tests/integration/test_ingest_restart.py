"""Dovecot stopped in the middle of a sync, or under a listener: nothing lost, nothing repeated."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from tests.conftest import ImapUser
from tests.integration.ingest_support import (
    account,
    mail,
    poll,
    runtime_from,
    seed_account,
    start_triage,
    stored_uids,
    subjects,
    sync_once,
)
from tests.support.dovecot import Dovecot
from triage.adapters.db.tables import Message
from triage.domain import statuses

TOTAL, BATCH, STOP_AFTER = 120, 10, 30


@pytest.fixture
def own_dovecot() -> Iterator[tuple[Dovecot, ImapUser]]:
    """A Dovecot of this test's own, free to be stopped, with one user."""
    with Dovecot() as server:
        user = ImapUser(server.host, server.port, "restart-user", secrets.token_urlsafe(12))
        server.add_user(user.username, user.password)
        yield server, user


def test_a_sync_cut_by_a_server_stop_completes_on_the_next_pass(
    own_dovecot: tuple[Dovecot, ImapUser], service_env: dict[str, str], pg_engine: Engine
) -> None:
    server, imap = own_dovecot
    for n in range(TOTAL):
        server.append(imap.username, imap.password, "INBOX", mail(f"restart {n}"))
    service_env["TRIAGE_FETCH_BATCH_SIZE"] = str(BATCH)
    account_id = seed_account(service_env, imap)
    rt = runtime_from(service_env)

    def stop_midway(_folder: str, done: int, _total: int) -> None:
        if done >= STOP_AFTER and server.running:
            server.stop()  # every connection dropped, as a crash or reboot would

    cut = sync_once(rt, account_id, progress=stop_midway)

    assert cut.error is not None and cut.stored == STOP_AFTER
    state = account(pg_engine)
    assert state.status == "error" and state.consecutive_failures == 1
    assert state.sync_lease_owner is None, "a failed sync must release the account"

    server.start()
    resumed = sync_once(rt, account_id)

    assert resumed.error is None
    assert (resumed.stored, resumed.duplicates) == (TOTAL - STOP_AFTER, 0)
    assert stored_uids(pg_engine) == list(range(1, TOTAL + 1))
    with Session(pg_engine) as session:
        not_queued = session.scalar(select(func.count()).where(Message.status != statuses.QUEUED))
    assert not_queued == 0, "a stored message was never handed to the queue"
    assert account(pg_engine).status == "ok"
    rt.engine.dispose()


def test_the_listener_comes_back_after_a_server_restart(
    own_dovecot: tuple[Dovecot, ImapUser],
    service_env: dict[str, str],
    pg_engine: Engine,
    tmp_path: Path,
) -> None:
    server, imap = own_dovecot
    seed_account(service_env, imap)
    listener = start_triage(service_env, tmp_path / "listen.log", "listen")
    try:
        listener.wait_for_log("up to date, listening")
        server.stop()
        server.start()
        server.append(imap.username, imap.password, "INBOX", mail("after the restart"))

        poll(lambda: subjects(pg_engine) == ["after the restart"], timeout=30, what="the mail")
        listener.wait_for_log("up to date, listening", count=2)
    finally:
        assert listener.terminate() == 0
    assert "Server shutting down" in listener.log()
