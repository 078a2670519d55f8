"""The IMAP login of an account: its password decrypted, or an OAuth2 access token kept fresh."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from triage.adapters.db.session import SessionFactory, transaction
from triage.adapters.db.tables import MailAccount
from triage.adapters.imap import ImapAuthError, ImapError, ImapLogin
from triage.adapters.oauth import (
    OAuthClient,
    OAuthReauthNeeded,
    OAuthUnavailable,
    TokenGrant,
    refresh_access_token,
)
from triage.adapters.secrets import SecretBox, SecretDecryptError

REAUTH_NEEDED = "reauth_needed"
# An access token this close to expiry is refreshed first, so it cannot lapse mid-login.
REFRESH_MARGIN = timedelta(minutes=5)

TokenRefresher = Callable[[OAuthClient, str], TokenGrant]
Clock = Callable[[], datetime]
M = TypeVar("M")


class ReauthNeeded(ImapAuthError):
    """The provider refused the stored refresh token: only the user can authorize again."""


def secret_owner(account_id: int, what: str) -> str:
    """What each of an account's secrets is bound to: `password`, `refresh`, `access`, `client`."""
    if what == "password":
        return f"mail_accounts:{account_id}"  # the binding of the original password column
    return f"mail_accounts:{account_id}:{what}"


@contextmanager
def logged_in(
    open_mailbox: Callable[[ImapLogin], AbstractContextManager[M]],
    *,
    account_id: int,
    db: SessionFactory,
    secrets: SecretBox,
    refresh: TokenRefresher = refresh_access_token,
    now: Clock = lambda: datetime.now(UTC),
) -> Iterator[M]:
    """The account's mailbox, open and logged in; OAuth2 accounts get an access token refreshed
    when due. Raises ReauthNeeded (the account is then `reauth_needed` and makes no more token
    requests until `triage accounts reauth`), ImapAuthError for a refused login or secrets that
    do not decrypt, and ImapError when the server or the token endpoint is down (try later).

    A stored OAuth2 access token that the server refuses before its expiry (the user changed
    the password or revoked a session) is dropped and refreshed, and the login tried once more.
    """
    login, granted_now = _login(account_id, db, secrets, refresh, now)
    with ExitStack() as stack:
        try:
            mailbox = stack.enter_context(open_mailbox(login))
        except ImapAuthError as exc:
            if login.oauth2_token is None:
                raise
            if granted_now:
                raise _refused_new_token(exc) from None
            _forget_access_token(account_id, login.oauth2_token, db, secrets)
            login, granted_now = _login(account_id, db, secrets, refresh, now)
            try:
                mailbox = stack.enter_context(open_mailbox(login))
            except ImapAuthError as again:
                if not granted_now:  # another process's new token, refused as well
                    raise
                raise _refused_new_token(again) from None
        yield mailbox


def _login(
    account_id: int, db: SessionFactory, secrets: SecretBox, refresh: TokenRefresher, now: Clock
) -> tuple[ImapLogin, bool]:
    """The login, and whether its access token was granted just now (by this call)."""
    with db() as session:
        account = session.get_one(MailAccount, account_id)
        if account.auth_method != "oauth2":
            return _password_login(account, secrets), False
        if account.status == REAUTH_NEEDED:
            raise ReauthNeeded(account.last_error or f"account {account_id} must authorize again")
        token = _stored_access_token(account, secrets, now())
        if token is not None:
            return _oauth_login(account, token), False
    with _refresh_lock(account_id):
        return _refreshed_login(account_id, db, secrets, refresh, now)


def _refused_new_token(exc: ImapAuthError) -> ImapAuthError:
    return ImapAuthError(
        f"{exc} with an OAuth2 access token granted just now; check that IMAP is enabled for "
        "the mailbox and that the app was granted the IMAP scope"
    )


def _forget_access_token(
    account_id: int, refused: str, db: SessionFactory, secrets: SecretBox
) -> None:
    """Drop the stored access token, unless another process has replaced it meanwhile."""
    with transaction(db) as session:
        account = session.get_one(MailAccount, account_id, with_for_update=True)
        if not account.oauth_access_token_enc:
            return
        owner = secret_owner(account_id, "access")
        if _decrypt(secrets, account.oauth_access_token_enc, owner) == refused:
            account.oauth_access_token_enc = None
            account.oauth_access_expires_at = None


def _password_login(account: MailAccount, secrets: SecretBox) -> ImapLogin:
    password = ""
    if account.password_enc:
        password = _decrypt(secrets, account.password_enc, secret_owner(account.id, "password"))
    return ImapLogin(
        host=account.host,
        port=account.port,
        security=account.security,
        username=account.username,
        password=password,
    )


def _oauth_login(account: MailAccount, access_token: str) -> ImapLogin:
    return ImapLogin(
        host=account.host,
        port=account.port,
        security=account.security,
        username=account.username,
        password="",
        oauth2_token=access_token,
    )


def _stored_access_token(account: MailAccount, secrets: SecretBox, at: datetime) -> str | None:
    expires = account.oauth_access_expires_at
    if not account.oauth_access_token_enc or expires is None:
        return None
    if expires.tzinfo is None:  # SQLite hands back naive datetimes; they were stored as UTC
        expires = expires.replace(tzinfo=UTC)
    if expires - REFRESH_MARGIN <= at:
        return None
    return _decrypt(secrets, account.oauth_access_token_enc, secret_owner(account.id, "access"))


def _refreshed_login(
    account_id: int, db: SessionFactory, secrets: SecretBox, refresh: TokenRefresher, now: Clock
) -> tuple[ImapLogin, bool]:
    """Refresh under a row lock, so two processes never spend a rotating refresh token twice."""
    failure: ImapError
    with transaction(db) as session:
        account = session.get_one(MailAccount, account_id, with_for_update=True)
        token = _stored_access_token(account, secrets, now())
        if token is not None:  # another process refreshed while we waited for the lock
            return _oauth_login(account, token), False
        client, refresh_token = _client(account, secrets)
        try:
            grant = refresh(client, refresh_token)
        except OAuthReauthNeeded as exc:
            account.status = REAUTH_NEEDED
            account.last_error = (
                f"{exc}; authorize again, then run `triage accounts reauth --account "
                f"{account_id} --refresh-token-env VAR`"
            )
            account.oauth_access_token_enc = None
            account.oauth_access_expires_at = None
            failure = ReauthNeeded(account.last_error)
        except OAuthUnavailable as exc:
            failure = ImapError(str(exc))
        else:
            _save_grant(account, grant, secrets, now())
            return _oauth_login(account, grant.access_token), True
    raise failure  # after the commit, so the reauth_needed status is kept


def _client(account: MailAccount, secrets: SecretBox) -> tuple[OAuthClient, str]:
    settings = account.oauth or {}
    if not account.oauth_refresh_token_enc or not settings.get("token_url"):
        raise ImapAuthError(f"account {account.id} has no OAuth2 refresh token or token URL")
    secret_enc = settings.get("client_secret_enc")
    client = OAuthClient(
        token_url=str(settings["token_url"]),
        client_id=str(settings.get("client_id") or ""),
        client_secret=(
            _decrypt(secrets, str(secret_enc), secret_owner(account.id, "client"))
            if secret_enc
            else ""
        ),
        scopes=tuple(str(scope) for scope in settings.get("scopes") or ()),
    )
    refresh_token = _decrypt(
        secrets, account.oauth_refresh_token_enc, secret_owner(account.id, "refresh")
    )
    return client, refresh_token


def _save_grant(account: MailAccount, grant: TokenGrant, secrets: SecretBox, at: datetime) -> None:
    account.oauth_access_token_enc = secrets.encrypt(
        grant.access_token, owner=secret_owner(account.id, "access")
    )
    account.oauth_access_expires_at = at + timedelta(seconds=grant.expires_in)
    if grant.refresh_token:  # rotated: the old one may already be dead at the provider
        account.oauth_refresh_token_enc = secrets.encrypt(
            grant.refresh_token, owner=secret_owner(account.id, "refresh")
        )


def _decrypt(secrets: SecretBox, token: str, owner: str) -> str:
    try:
        return secrets.decrypt(token, owner=owner)
    except SecretDecryptError as exc:
        raise ImapAuthError(f"{exc}; check TRIAGE_SECRET_KEYS") from None


_locks: dict[int, threading.Lock] = {}
_locks_guard = threading.Lock()


def _refresh_lock(account_id: int) -> threading.Lock:
    """One refresh per account at a time in this process (SQLite has no row locks)."""
    with _locks_guard:
        return _locks.setdefault(account_id, threading.Lock())
