"""IMAP access with imapclient: timeouts, verified TLS, folders read by UID, nothing marked read."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import imapclient
from imapclient.exceptions import IMAPClientError, LoginError


class ImapError(Exception):
    """The server could not be reached or failed mid-conversation; reconnect later."""


class ImapAuthError(ImapError):
    """The server refused the credentials: the user must fix them, retrying will not help."""


@dataclass(frozen=True)
class ImapLogin:
    host: str
    port: int
    security: str  # ssl | starttls | plain
    username: str
    password: str = field(repr=False)
    oauth2_token: str | None = field(default=None, repr=False)  # XOAUTH2 instead of a password


@dataclass(frozen=True)
class FolderStatus:
    uidvalidity: int
    uidnext: int | None
    exists: int


@dataclass(frozen=True)
class Timeouts:
    connect: float = 15.0
    read: float = 60.0


class ImapMailbox:
    """One authenticated connection; use as a context manager so it is always closed."""

    def __init__(
        self, login: ImapLogin, *, timeouts: Timeouts = Timeouts(), ca_file: Path | None = None
    ) -> None:
        self._login = login
        self._timeouts = timeouts
        self._ca_file = ca_file
        self._client: Any = None

    def __enter__(self) -> ImapMailbox:
        self.connect()
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _exc: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.close()

    def connect(self) -> None:
        login = self._login
        context = self._tls_context()
        try:
            client = imapclient.IMAPClient(
                login.host,
                port=login.port,
                ssl=login.security == "ssl",
                ssl_context=context,
                timeout=imapclient.SocketTimeout(
                    connect=self._timeouts.connect, read=self._timeouts.read
                ),
            )
            if login.security == "starttls":
                client.starttls(context)
        except (OSError, IMAPClientError, ssl.SSLError) as exc:
            raise ImapError(f"cannot connect to {login.host}:{login.port}: {exc}") from None
        try:
            if login.oauth2_token:
                client.oauth2_login(login.username, login.oauth2_token)
            else:
                client.login(login.username, login.password)
        except LoginError:
            _quietly_shutdown(client)
            raise ImapAuthError(f"the IMAP server refused the login of {login.username}") from None
        except (OSError, IMAPClientError) as exc:
            _quietly_shutdown(client)
            raise ImapError(f"login to {login.host} failed: {exc}") from None
        self._client = client

    def close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            client.logout()
        except (OSError, IMAPClientError):
            _quietly_shutdown(client)

    def select(self, folder: str) -> FolderStatus:
        response = self._run(lambda c: c.select_folder(folder, readonly=True))
        uidnext = response.get(b"UIDNEXT")
        return FolderStatus(
            uidvalidity=int(response[b"UIDVALIDITY"]),
            uidnext=int(uidnext) if uidnext is not None else None,
            exists=int(response.get(b"EXISTS", 0)),
        )

    def uids_from(self, first_uid: int) -> list[int]:
        """UIDs >= first_uid, ascending. The server always returns the top UID: drop it if lower."""
        found = self._run(lambda c: c.search(["UID", f"{max(first_uid, 1)}:*"]))
        return sorted(uid for uid in found if uid >= first_uid)

    def sizes(self, uids: Iterable[int]) -> dict[int, int]:
        wanted = list(uids)
        if not wanted:
            return {}
        data = self._run(lambda c: c.fetch(wanted, ["RFC822.SIZE"]))
        return {uid: int(item.get(b"RFC822.SIZE", 0)) for uid, item in data.items()}

    def bodies(self, uids: Iterable[int]) -> dict[int, bytes]:
        """Raw messages by UID, with BODY.PEEK[] so nothing is marked as read."""
        wanted = list(uids)
        if not wanted:
            return {}
        data = self._run(lambda c: c.fetch(wanted, ["BODY.PEEK[]"]))
        return {uid: bytes(item.get(b"BODY[]") or b"") for uid, item in data.items()}

    def _run(self, action: Any) -> Any:
        if self._client is None:
            raise ImapError("not connected")
        try:
            return action(self._client)
        except (TimeoutError, OSError, IMAPClientError, ssl.SSLError) as exc:
            # A connection that failed once is never reused.
            client, self._client = self._client, None
            _quietly_shutdown(client)
            raise ImapError(f"IMAP command failed: {exc}") from None

    def _tls_context(self) -> ssl.SSLContext | None:
        if self._login.security == "plain":
            return None
        context = ssl.create_default_context(cafile=str(self._ca_file) if self._ca_file else None)
        return context


def _quietly_shutdown(client: Any) -> None:
    with contextlib.suppress(OSError, IMAPClientError):
        client.shutdown()
