"""Ingest: fetch new mail above each folder's high-water UID, store it, then enqueue triage."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Protocol

from sqlalchemy.exc import SQLAlchemyError

from triage.adapters.db.session import SessionFactory
from triage.adapters.db.tables import MailAccount
from triage.adapters.imap import FolderStatus, ImapError, ImapLogin
from triage.adapters.secrets import SecretBox
from triage.config import Settings
from triage.pipeline.account_status import record_failure, record_success
from triage.pipeline.credentials import logged_in
from triage.pipeline.folder_state import (
    Where,
    prepare_folder_state,
    set_remaining,
    skip_to,
    stored_under_other_uidvalidity,
)
from triage.pipeline.ingest_store import Counts, Fetcher, Ingester
from triage.pipeline.ports import Enqueuer
from triage.pipeline.sync_lease import Lease, LeaseLost, acquire, fetcher_id

log = logging.getLogger(__name__)

# A poll that finds the account busy (the listener is fetching) waits this long, then skips.
POLL_LEASE_WAIT_SECONDS = 10.0


class Mailbox(Fetcher, Protocol):
    def select(self, folder: str) -> FolderStatus: ...

    def uids_from(self, first_uid: int, *, since: date | None = None) -> list[int]: ...


MailboxOpener = Callable[[ImapLogin], AbstractContextManager[Mailbox]]
Progress = Callable[[str, int, int], None]  # folder, messages done, messages planned


@dataclass(frozen=True)
class SyncLimits:
    """How far a first sync reaches back (`since`), and how much one pass takes (`max_messages`)."""

    since: date | None = None
    max_messages: int | None = None


@dataclass(kw_only=True)
class SyncReport(Counts):
    account_id: int
    remaining: int = 0  # over --max: fetched by the next pass
    skipped_old: int = 0  # older than --since at a first sync: left on the server
    busy: bool = False  # another fetcher held the account
    error: str | None = None
    folders: list[str] = field(default_factory=list)


def sync_account(
    *,
    account_id: int,
    db: SessionFactory,
    open_mailbox: MailboxOpener,
    secrets: SecretBox,
    enqueue: Enqueuer,
    settings: Settings,
    max_messages: int | None = None,
    since: date | None = None,
    progress: Progress | None = None,
    lease_wait: float = POLL_LEASE_WAIT_SECONDS,
    stop: threading.Event | None = None,
) -> SyncReport:
    """One pass over every folder of an account, holding its lease; the account row records
    how it went. An account another fetcher holds for longer than `lease_wait` is `busy`."""
    report = SyncReport(account_id=account_id)
    lease = acquire(
        db,
        account_id=account_id,
        owner=fetcher_id(),
        seconds=settings.sync_lease_seconds,
        wait=lease_wait,
        stop=stop,
    )
    if lease is None:
        report.busy = True
        return report
    try:
        limits = SyncLimits(since=since, max_messages=max_messages)
        _sync_folders(
            report, db, open_mailbox, secrets, enqueue, settings, limits, progress, lease, stop
        )
    except LeaseLost as exc:
        log.warning("%s", exc)
        report.busy = True
    finally:
        _release(lease)
    return report


def _sync_folders(
    report: SyncReport,
    db: SessionFactory,
    open_mailbox: MailboxOpener,
    secrets: SecretBox,
    enqueue: Enqueuer,
    settings: Settings,
    limits: SyncLimits,
    progress: Progress | None,
    lease: Lease,
    stop: threading.Event | None,
) -> None:
    account_id = report.account_id
    with db() as session:
        account = session.get_one(MailAccount, account_id)
        folders = list(account.folders or ["INBOX"])
    try:
        with logged_in(open_mailbox, account_id=account_id, db=db, secrets=secrets) as mailbox:
            for folder in folders:
                if stop is not None and stop.is_set():
                    return
                report.folders.append(folder)
                sync_folder(
                    mailbox=mailbox,
                    account_id=account_id,
                    folder=folder,
                    db=db,
                    enqueue=enqueue,
                    settings=settings,
                    report=report,
                    limits=limits,
                    progress=progress,
                    lease=lease,
                    stop=stop,
                )
    except ImapError as exc:
        report.error = str(exc)
        record_failure(db, account_id, exc)
    else:
        record_success(db, account_id)


def sync_folder(
    *,
    mailbox: Mailbox,
    account_id: int,
    folder: str,
    db: SessionFactory,
    enqueue: Enqueuer,
    settings: Settings,
    report: SyncReport,
    limits: SyncLimits = SyncLimits(),
    progress: Progress | None = None,
    lease: Lease | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Fetch a folder above its mark in batches; memory holds two batches of bodies at most
    (one being parsed while the one before is stored).

    The caller holds the account's lease (and passes it, to be renewed every batch)."""
    status = mailbox.select(folder)
    where = Where(account_id=account_id, folder=folder, uidvalidity=status.uidvalidity)
    plan = _plan(mailbox, prepare_folder_state(db, where), limits)
    where = replace(where, resync=stored_under_other_uidvalidity(db, where))
    report.skipped_old += plan.skipped_old
    report.remaining += plan.left
    set_remaining(db, where, plan.skipped_old + plan.left)
    if progress is not None:
        progress(folder, 0, len(plan.uids))
    ingester = Ingester(where=where, db=db, enqueue=enqueue, settings=settings, counts=report)
    done = 0
    try:
        for batch in _chunks(plan.uids, settings.fetch_batch_size):
            if stop is not None and stop.is_set():
                report.remaining += len(plan.uids) - done
                break
            ingester.feed(mailbox, batch, lease=lease)
            done += len(batch)
            if progress is not None:
                progress(folder, done, len(plan.uids))
    finally:  # what was fetched is kept, even when the connection drops before the next batch
        ingester.finish()
    if stop is not None and stop.is_set():
        return
    if plan.left == 0 and plan.skipped_old:
        skip_to(db, where, plan.top)  # what --since left behind stays behind


@dataclass(frozen=True)
class _Plan:
    uids: list[int]  # to fetch this pass, ascending
    skipped_old: int
    left: int
    top: int


def _plan(mailbox: Mailbox, high_water: int, limits: SyncLimits) -> _Plan:
    every = mailbox.uids_from(high_water + 1)
    uids = every
    if high_water == 0 and limits.since is not None and every:
        uids = mailbox.uids_from(1, since=limits.since)
    skipped_old = len(every) - len(uids)
    left = 0
    if limits.max_messages is not None and len(uids) > limits.max_messages:
        left = len(uids) - limits.max_messages
        uids = uids[: limits.max_messages]
    return _Plan(uids=uids, skipped_old=skipped_old, left=left, top=every[-1] if every else 0)


def _release(lease: Lease) -> None:
    try:
        lease.release()
    except SQLAlchemyError as exc:  # it expires on its own; the sync's outcome matters more
        log.warning("account %s: could not release the sync lease: %s", lease.account_id, exc)


def _chunks(items: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for start in range(0, len(items), max(1, size)):
        yield items[start : start + size]
