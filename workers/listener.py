"""The long-running IDLE listener: one connection per watched folder, new mail stored at once.

One connection per (account, folder), not one per account: IDLE watches only the selected
folder, so a single connection would leave every other folder to the poll. Accounts watch a
few folders and servers allow 10-20 connections per user, so this stays well inside limits.
The account's lease still lets one fetcher at a time read it, whichever folder woke.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable

from sqlalchemy import select

from triage.adapters.db.tables import MailAccount
from triage.adapters.imap import ImapAuthError, ImapError, ImapLogin, ImapMailbox, Timeouts
from triage.adapters.metrics import INGESTED
from triage.pipeline.account_status import record_failure, record_success
from triage.pipeline.credentials import logged_in
from triage.pipeline.ingest import SyncReport, sync_folder
from triage.pipeline.ports import Enqueuer
from triage.pipeline.sync_lease import Lease, LeaseLost, acquire, fetcher_id
from triage.runtime import Runtime

log = logging.getLogger(__name__)

REFRESH_SECONDS = 30.0  # how often the account list is read again (added or removed folders)
LEASE_WAIT_SECONDS = 30.0  # while another fetcher holds the account, NOOP this often
FIRST_RETRY_SECONDS = 1.0
AUTH_FIRST_RETRY_SECONDS = 60.0  # a refused login is the user's to fix: no retry storm
AUTH_MAX_RETRY_SECONDS = 3600.0

Opener = Callable[[ImapLogin], ImapMailbox]
WatchKey = tuple[int, str]  # (account id, folder)


def backoff_delay(failures: int, *, first: float, cap: float) -> float:
    """Exponential backoff with jitter: between half and all of first * 2^(failures-1), capped."""
    ceiling = min(cap, first * 2 ** max(0, failures - 1))
    return random.uniform(ceiling / 2, ceiling)


def default_opener(rt: Runtime) -> Opener:
    settings = rt.settings
    timeouts = Timeouts(connect=settings.imap_connect_timeout, read=settings.imap_read_timeout)
    return lambda login: ImapMailbox(login, timeouts=timeouts, ca_file=settings.imap_ca_file)


class FolderWatcher:
    """IDLE on one folder, catching up after every wake; reconnects after any error."""

    def __init__(
        self, rt: Runtime, enqueue: Enqueuer, key: WatchKey, *, opener: Opener | None = None
    ) -> None:
        self.account_id, self.folder = key
        self.stop = threading.Event()
        self._rt = rt
        self._enqueue = enqueue
        self._open = opener or default_opener(rt)
        self._owner = fetcher_id()
        self._failures = 0

    def run(self) -> None:
        """Never returns until stopped: every failure is recorded, then retried after a backoff."""
        while not self.stop.is_set():
            try:
                self._watch()
            except ImapError as exc:
                self._failed(exc)
            except Exception:  # a database outage, a bug: log it, back off, keep listening
                log.exception("account %s %s: listener error", self.account_id, self.folder)
                self._failures += 1
                self._pause(FIRST_RETRY_SECONDS, self._rt.settings.reconnect_max_seconds)

    def _watch(self) -> None:
        rt = self._rt
        settings = rt.settings
        with logged_in(
            self._open, account_id=self.account_id, db=rt.db, secrets=rt.secrets
        ) as mailbox:
            self._catch_up(mailbox)
            log.info("account %s %s: up to date, listening", self.account_id, self.folder)
            while not self.stop.is_set():
                mailbox.idle_wait(
                    timeout=settings.idle_renew_seconds,
                    silence=settings.idle_silence_seconds,
                    stop=self.stop,
                )
                self._catch_up(mailbox)  # after every wake: new mail, renewal or a probe

    def _catch_up(self, mailbox: ImapMailbox) -> None:
        lease = self._lease(mailbox)
        if lease is None:
            return
        report = SyncReport(account_id=self.account_id)
        try:
            sync_folder(
                mailbox=mailbox,
                account_id=self.account_id,
                folder=self.folder,
                db=self._rt.db,
                enqueue=self._enqueue,
                settings=self._rt.settings,
                report=report,
                lease=lease,
                stop=self.stop,
            )
        except LeaseLost as exc:
            log.warning("%s", exc)
            return
        finally:
            lease.release()
        record_success(self._rt.db, self.account_id)
        self._failures = 0
        INGESTED.inc(report.stored)
        if report.stored or report.recognised or report.duplicates:
            log.info(
                "account %s %s: stored %s, already known %s",
                self.account_id,
                self.folder,
                report.stored,
                report.duplicates + report.recognised,
            )

    def _lease(self, mailbox: ImapMailbox) -> Lease | None:
        """Wait for the account while another fetcher (a poll, another folder) holds it; asks
        every 0.1 s so mail still lands at once when it is freed. None when stopping."""
        while not self.stop.is_set():
            lease = acquire(
                self._rt.db,
                account_id=self.account_id,
                owner=self._owner,
                seconds=self._rt.settings.sync_lease_seconds,
                wait=LEASE_WAIT_SECONDS,
                stop=self.stop,
            )
            if lease is not None:
                return lease
            mailbox.noop()  # keep the connection alive while we wait
        return None

    def _failed(self, exc: ImapError) -> None:
        self._failures += 1
        try:
            record_failure(self._rt.db, self.account_id, exc)
        except Exception:
            log.exception("account %s: could not record the failure", self.account_id)
        if isinstance(exc, ImapAuthError):
            self._pause(AUTH_FIRST_RETRY_SECONDS, AUTH_MAX_RETRY_SECONDS)
        else:
            self._pause(FIRST_RETRY_SECONDS, self._rt.settings.reconnect_max_seconds)

    def _pause(self, first: float, cap: float) -> None:
        delay = backoff_delay(self._failures, first=first, cap=cap)
        log.info("account %s %s: reconnecting in %.1fs", self.account_id, self.folder, delay)
        self.stop.wait(delay)


class Listener:
    """Keeps one FolderWatcher thread per watched folder, following the accounts table."""

    def __init__(
        self,
        rt: Runtime,
        enqueue: Enqueuer,
        stop: threading.Event,
        *,
        only: int | None = None,
        opener: Opener | None = None,
    ) -> None:
        self._rt = rt
        self._enqueue = enqueue
        self._stop = stop
        self._only = only
        self._opener = opener
        self._watchers: dict[WatchKey, tuple[FolderWatcher, threading.Thread]] = {}

    def run(self) -> None:
        """Until `stop` is set; then every watcher ends its IDLE, logs out, and is joined."""
        try:
            while not self._stop.is_set():
                try:
                    self._refresh()
                except Exception:  # the database is down: keep the watchers, look again later
                    log.exception("listener: cannot read the accounts")
                self._stop.wait(REFRESH_SECONDS)
        finally:
            for watcher, _thread in self._watchers.values():
                watcher.stop.set()
            for _watcher, thread in self._watchers.values():
                thread.join()

    def _refresh(self) -> None:
        wanted = set(self._wanted())
        for key in list(self._watchers):
            watcher, thread = self._watchers[key]
            if key not in wanted or not thread.is_alive():
                watcher.stop.set()
                del self._watchers[key]
        for key in sorted(wanted - self._watchers.keys()):
            watcher = FolderWatcher(self._rt, self._enqueue, key, opener=self._opener)
            thread = threading.Thread(
                target=watcher.run, name=f"listen-{key[0]}-{key[1]}", daemon=True
            )
            self._watchers[key] = (watcher, thread)
            thread.start()

    def _wanted(self) -> list[WatchKey]:
        with self._rt.db() as session:
            query = select(MailAccount.id, MailAccount.folders).order_by(MailAccount.id)
            if self._only is not None:
                query = query.where(MailAccount.id == self._only)
            rows = session.execute(query).all()
        return [
            (account_id, folder) for account_id, folders in rows for folder in folders or ["INBOX"]
        ]
