"""What an account's row says about fetching it: status, last success, last error, failures."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from triage.adapters.db.session import SessionFactory, transaction
from triage.adapters.db.tables import MailAccount
from triage.adapters.imap import ImapAuthError, ImapError
from triage.pipeline.credentials import REAUTH_NEEDED, ReauthNeeded

log = logging.getLogger(__name__)

OK = "ok"
AUTH_FAILED = "auth_failed"  # wrong password: only the user can fix it
ERROR = "error"  # unreachable, TLS, timeouts, a dropped connection: retried with backoff


def failure_status(exc: ImapError) -> str:
    if isinstance(exc, ReauthNeeded):
        return REAUTH_NEEDED
    if isinstance(exc, ImapAuthError):
        return AUTH_FAILED
    return ERROR


def record_failure(db: SessionFactory, account_id: int, exc: ImapError) -> int:
    """Store the error on the account; returns its consecutive failures so far."""
    error = str(exc)
    log.warning("account %s: %s", account_id, error)
    with transaction(db) as session:
        account = session.get_one(MailAccount, account_id)
        account.status = failure_status(exc)
        account.last_error = error
        account.consecutive_failures += 1
        return account.consecutive_failures


def record_success(db: SessionFactory, account_id: int) -> None:
    """A fetch went through: the account is `ok`; its last error stays for the record."""
    with transaction(db) as session:
        account = session.get_one(MailAccount, account_id)
        account.status = OK
        account.last_success_at = datetime.now(UTC)
        account.consecutive_failures = 0
