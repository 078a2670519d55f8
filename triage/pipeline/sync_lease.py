"""A per-account lease in the database, so at most one fetcher reads an account at any moment."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import or_, update

from triage.adapters.db.session import SessionFactory, transaction
from triage.adapters.db.tables import MailAccount

# How often a waiting fetcher asks again; short, so IDLE mail still lands within a second.
RETRY_SECONDS = 0.1


class LeaseLost(Exception):
    """Our lease expired and another fetcher took the account: stop fetching it."""


def fetcher_id() -> str:
    """A name for one fetcher, unique across machines, processes and threads; shown in the row."""
    return f"{socket.gethostname()[:64]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


@dataclass
class Lease:
    """A held lease: renew it every batch, release it when done (or let it expire on a crash)."""

    db: SessionFactory = field(repr=False)
    account_id: int
    owner: str
    seconds: float

    def renew(self) -> None:
        """Push the expiry forward; LeaseLost if someone else holds the account now."""
        now = _now()
        with transaction(self.db) as session:
            result = session.execute(
                update(MailAccount)
                .where(
                    MailAccount.id == self.account_id, MailAccount.sync_lease_owner == self.owner
                )
                .values(sync_lease_until=now + timedelta(seconds=self.seconds))
            )
        if _rowcount(result) != 1:
            raise LeaseLost(f"account {self.account_id}: another fetcher took over")

    def release(self) -> None:
        with transaction(self.db) as session:
            session.execute(
                update(MailAccount)
                .where(
                    MailAccount.id == self.account_id, MailAccount.sync_lease_owner == self.owner
                )
                .values(sync_lease_owner=None, sync_lease_until=None)
            )


def try_acquire(db: SessionFactory, *, account_id: int, owner: str, seconds: float) -> Lease | None:
    """Take the account if its lease is free or expired: one atomic UPDATE, so one winner."""
    now = _now()
    with transaction(db) as session:
        result = session.execute(
            update(MailAccount)
            .where(
                MailAccount.id == account_id,
                or_(
                    MailAccount.sync_lease_owner.is_(None),
                    MailAccount.sync_lease_owner == owner,
                    MailAccount.sync_lease_until.is_(None),
                    MailAccount.sync_lease_until < now,
                ),
            )
            .values(sync_lease_owner=owner, sync_lease_until=now + timedelta(seconds=seconds))
        )
    if _rowcount(result) != 1:
        return None
    return Lease(db=db, account_id=account_id, owner=owner, seconds=seconds)


def acquire(
    db: SessionFactory,
    *,
    account_id: int,
    owner: str,
    seconds: float,
    wait: float = 0.0,
    stop: threading.Event | None = None,
) -> Lease | None:
    """Take the account, asking again every RETRY_SECONDS for up to `wait`; None if still busy."""
    deadline = time.monotonic() + wait
    while True:
        lease = try_acquire(db, account_id=account_id, owner=owner, seconds=seconds)
        if lease is not None or time.monotonic() >= deadline:
            return lease
        if stop is not None and stop.wait(RETRY_SECONDS):
            return None
        if stop is None:
            time.sleep(RETRY_SECONDS)


def _now() -> datetime:
    # The fetchers' clocks, not the database's: SQLite has none worth the name. Hosts that
    # share a database keep time with NTP; the lease is minutes long, skew is milliseconds.
    return datetime.now(UTC)


def _rowcount(result: object) -> int:
    return int(getattr(result, "rowcount", 0))
