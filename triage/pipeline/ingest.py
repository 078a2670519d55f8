"""Ingest: fetch new mail above each folder's high-water UID, store it, then enqueue triage."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from triage.adapters.db.session import SessionFactory, transaction
from triage.adapters.db.tables import FolderState, MailAccount, Message
from triage.adapters.imap import FolderStatus, ImapAuthError, ImapError, ImapLogin
from triage.adapters.secrets import SecretBox
from triage.config import Settings
from triage.pipeline.credentials import imap_login
from triage.pipeline.message_store import NewMessage, store_message
from triage.pipeline.ports import Enqueuer

log = logging.getLogger(__name__)


class Mailbox(Protocol):
    def select(self, folder: str) -> FolderStatus: ...

    def uids_from(self, first_uid: int) -> list[int]: ...

    def sizes(self, uids: Sequence[int]) -> dict[int, int]: ...

    def bodies(self, uids: Sequence[int]) -> dict[int, bytes]: ...


MailboxOpener = Callable[[ImapLogin], AbstractContextManager[Mailbox]]
Progress = Callable[[str, int, int], None]


@dataclass
class SyncReport:
    account_id: int
    stored: int = 0
    duplicates: int = 0
    too_large: int = 0
    failed: int = 0
    remaining: int = 0
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
    progress: Progress | None = None,
) -> SyncReport:
    """One pass over every folder of an account; the account row records how it went."""
    report = SyncReport(account_id=account_id)
    with db() as session:
        account = session.get_one(MailAccount, account_id)
        login = imap_login(account, secrets)
        folders = list(account.folders or ["INBOX"])
    try:
        with open_mailbox(login) as mailbox:
            for folder in folders:
                report.folders.append(folder)
                _sync_folder(
                    mailbox,
                    account_id,
                    folder,
                    db,
                    enqueue,
                    settings,
                    report,
                    max_messages,
                    progress,
                )
    except ImapAuthError as exc:
        report.error = str(exc)
        _record_failure(db, account_id, "auth_failed", report.error)
    except ImapError as exc:
        report.error = str(exc)
        _record_failure(db, account_id, "error", report.error)
    else:
        _record_success(db, account_id)
    return report


def _sync_folder(
    mailbox: Mailbox,
    account_id: int,
    folder: str,
    db: SessionFactory,
    enqueue: Enqueuer,
    settings: Settings,
    report: SyncReport,
    max_messages: int | None,
    progress: Progress | None,
) -> None:
    status = mailbox.select(folder)
    high_water = _prepare_folder_state(db, account_id, folder, status.uidvalidity)
    uids = mailbox.uids_from(high_water + 1)
    if max_messages is not None:
        report.remaining += max(0, len(uids) - max_messages)
        uids = uids[:max_messages]
    done = 0
    for batch in _chunks(uids, settings.fetch_batch_size):
        new_ids = _ingest_batch(
            mailbox, account_id, folder, status.uidvalidity, batch, db, settings, report
        )
        for message_id in new_ids:
            enqueue.triage(message_id)
        _mark_queued(db, new_ids)
        done += len(batch)
        if progress is not None:
            progress(folder, done, len(uids))


def _ingest_batch(
    mailbox: Mailbox,
    account_id: int,
    folder: str,
    uidvalidity: int,
    batch: Sequence[int],
    db: SessionFactory,
    settings: Settings,
    report: SyncReport,
) -> list[int]:
    """Store one batch and advance the mark in the same transaction; return IDs to enqueue."""
    sizes = mailbox.sizes(batch)
    small = [uid for uid in batch if sizes.get(uid, 0) <= settings.max_message_bytes]
    bodies = mailbox.bodies(small)
    new_ids: list[int] = []
    with transaction(db) as session:
        for uid in batch:
            if uid not in sizes:
                continue  # expunged between SEARCH and FETCH
            item = NewMessage(
                account_id=account_id,
                folder=folder,
                uidvalidity=uidvalidity,
                uid=uid,
                size=sizes[uid],
                raw=bodies.get(uid),
            )
            outcome = store_message(session, item, settings=settings)
            _count(report, outcome.status)
            if outcome.message_id is not None and outcome.status == "received":
                new_ids.append(outcome.message_id)
        _advance_mark(session, account_id, folder, max(batch))
    return new_ids


def _count(report: SyncReport, status: str) -> None:
    if status == "duplicate":
        report.duplicates += 1
        return
    report.stored += 1
    if status == "too_large":
        report.too_large += 1
    elif status == "failed":
        report.failed += 1


def _prepare_folder_state(
    db: SessionFactory, account_id: int, folder: str, uidvalidity: int
) -> int:
    """The UID to continue after; a new UIDVALIDITY restarts the folder from the top."""
    with transaction(db) as session:
        state = _folder_state(session, account_id, folder)
        if state is None:
            session.add(
                FolderState(
                    account_id=account_id, folder=folder, uidvalidity=uidvalidity, high_water_uid=0
                )
            )
            return 0
        if state.uidvalidity != uidvalidity:
            log.warning("account %s folder %s: UIDVALIDITY changed, resyncing", account_id, folder)
            state.uidvalidity = uidvalidity
            state.high_water_uid = 0
        return state.high_water_uid


def _advance_mark(session: Session, account_id: int, folder: str, uid: int) -> None:
    state = _folder_state(session, account_id, folder)
    if state is not None and uid > state.high_water_uid:
        state.high_water_uid = uid


def _folder_state(session: Session, account_id: int, folder: str) -> FolderState | None:
    return session.scalars(
        select(FolderState).where(
            FolderState.account_id == account_id, FolderState.folder == folder
        )
    ).one_or_none()


def _mark_queued(db: SessionFactory, message_ids: list[int]) -> None:
    if not message_ids:
        return
    with transaction(db) as session:
        for message in session.scalars(select(Message).where(Message.id.in_(message_ids))):
            if message.status == "received":
                message.status = "queued"
                message.status_changed_at = datetime.now(UTC)


def _record_failure(db: SessionFactory, account_id: int, status: str, error: str) -> None:
    log.warning("account %s sync failed: %s", account_id, error)
    with transaction(db) as session:
        account = session.get_one(MailAccount, account_id)
        account.status = status
        account.last_error = error
        account.consecutive_failures += 1


def _record_success(db: SessionFactory, account_id: int) -> None:
    with transaction(db) as session:
        account = session.get_one(MailAccount, account_id)
        account.status = "ok"
        account.last_success_at = datetime.now(UTC)
        account.consecutive_failures = 0


def _chunks(items: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for start in range(0, len(items), max(1, size)):
        yield items[start : start + size]
