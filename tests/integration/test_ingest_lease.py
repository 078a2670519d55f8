"""The per-account lease on Postgres and SQLite, and two real fetchers racing for one account."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import Engine

from tests.conftest import ImapUser
from tests.integration.ingest_support import (
    mail,
    runtime_from,
    seed_account,
    stored_uids,
    sync_once,
)
from tests.integration.seed import runtime_for
from tests.support.byok import add_user_to
from tests.support.dovecot import Dovecot
from triage.adapters.db.session import (
    SessionFactory,
)
from triage.pipeline.ingest import SyncReport
from triage.pipeline.sync_lease import LeaseLost, acquire, try_acquire


def test_of_many_threads_racing_exactly_one_gets_the_lease(
    account_db: tuple[SessionFactory, int],
) -> None:
    db, account_id = account_db
    start = threading.Barrier(8)
    winners: list[str] = []

    def race(owner: str) -> None:
        start.wait()
        if try_acquire(db, account_id=account_id, owner=owner, seconds=60) is not None:
            winners.append(owner)

    threads = [threading.Thread(target=race, args=(f"fetcher-{n}",)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1


def test_a_lease_is_renewed_released_and_taken_over_when_expired(
    account_db: tuple[SessionFactory, int],
) -> None:
    db, account_id = account_db
    first = try_acquire(db, account_id=account_id, owner="first", seconds=0.5)
    assert first is not None
    assert try_acquire(db, account_id=account_id, owner="second", seconds=0.5) is None
    first.renew()  # still ours

    time.sleep(0.6)  # first crashed: its lease runs out
    second = acquire(db, account_id=account_id, owner="second", seconds=30, wait=2)
    assert second is not None
    with pytest.raises(LeaseLost):
        first.renew()
    first.release()  # releasing a lease we lost must not free the new holder's
    assert try_acquire(db, account_id=account_id, owner="third", seconds=30) is None

    second.release()
    assert try_acquire(db, account_id=account_id, owner="third", seconds=30) is not None


def test_a_waiting_fetcher_gets_the_lease_as_soon_as_it_is_freed(
    account_db: tuple[SessionFactory, int],
) -> None:
    db, account_id = account_db
    holder = try_acquire(db, account_id=account_id, owner="holder", seconds=60)
    assert holder is not None
    threading.Timer(0.3, holder.release).start()

    started = time.monotonic()
    waiter = acquire(db, account_id=account_id, owner="waiter", seconds=60, wait=5)

    assert waiter is not None
    assert time.monotonic() - started < 0.3 + 0.5


def test_two_syncs_started_at_once_fetch_each_message_once(
    dovecot: Dovecot, imap_user: ImapUser, service_env: dict[str, str], pg_engine: Engine
) -> None:
    for n in range(150):
        dovecot.append(imap_user.username, imap_user.password, "INBOX", mail(f"m{n}"))
    service_env["TRIAGE_FETCH_BATCH_SIZE"] = "10"
    account_id = seed_account(service_env, imap_user)
    rt = runtime_from(service_env)
    start = threading.Barrier(2)
    reports: list[SyncReport] = []

    def fetcher() -> None:
        start.wait()  # both connect, search and fetch at the same moment, unless one waits
        reports.append(sync_once(rt, account_id))

    threads = [threading.Thread(target=fetcher) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert all(report.error is None for report in reports)
    assert sorted(report.stored for report in reports) == [0, 150]
    assert sum(report.duplicates for report in reports) == 0, "both fetched the same mail"
    assert stored_uids(pg_engine) == list(range(1, 151))
    rt.engine.dispose()


def test_a_poll_reports_busy_while_another_fetcher_holds_the_account(
    pg_engine: Engine, migrated_pg: str
) -> None:
    from tests.integration.seed import RecordingEnqueuer
    from triage.pipeline.ingest import sync_account

    rt = runtime_for(migrated_pg)
    _user_id, account_id = add_user_to(rt.db, "busy@example.test")
    assert try_acquire(rt.db, account_id=account_id, owner="listener", seconds=60) is not None

    def never_opened(_login: object) -> object:
        raise AssertionError("a busy account must not be connected to")

    report = sync_account(
        account_id=account_id,
        db=rt.db,
        open_mailbox=never_opened,  # type: ignore[arg-type]
        secrets=rt.secrets,
        enqueue=RecordingEnqueuer(),
        settings=rt.settings,
        lease_wait=0.3,
    )
    rt.engine.dispose()
    assert report.busy and report.error is None
