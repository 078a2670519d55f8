"""IMAP access with imapclient: timeouts, verified TLS, folders read by UID, nothing marked read."""

from __future__ import annotations

import contextlib
import re
import ssl
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from types import TracebackType
from typing import Any

import imapclient
from imapclient.exceptions import IMAPClientError, LoginError

_APPENDUID = re.compile(rb"APPENDUID \d+ (\d+)")
# How often an IDLE wait looks at its stop flag; the server's words wake it at once regardless.
IDLE_SLICE_SECONDS = 0.5
_NEW_MAIL = (b"EXISTS", b"RECENT")


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
        where = f"{login.host}:{login.port}"
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
        except ssl.SSLCertVerificationError as exc:
            raise ImapError(
                f"the TLS certificate of {where} is not trusted ({exc.verify_message}); "
                "if the server uses a private CA, set TRIAGE_IMAP_CA_FILE to its certificate"
            ) from None
        except ssl.SSLError as exc:
            raise ImapError(
                f"TLS with {where} failed ({exc.reason or exc}); check the port and --ssl, "
                "--starttls or --plain"
            ) from None
        except (OSError, IMAPClientError) as exc:
            raise ImapError(f"cannot connect to {where}: {exc}") from None
        try:
            if login.oauth2_token:
                client.oauth2_login(login.username, login.oauth2_token)
            else:
                client.login(login.username, login.password)
        except LoginError as exc:
            _quietly_shutdown(client)
            if _turned_away_for_now(str(exc)):
                raise ImapError(
                    f"the IMAP server turned the login of {login.username} away for now "
                    f"({_server_words(str(exc))}); trying again later"
                ) from None
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
        self._take_pending_news()  # what SELECT reported is known; later EXISTS are news
        uidnext = response.get(b"UIDNEXT")
        return FolderStatus(
            uidvalidity=int(response[b"UIDVALIDITY"]),
            uidnext=int(uidnext) if uidnext is not None else None,
            exists=int(response.get(b"EXISTS", 0)),
        )

    def uids_from(self, first_uid: int, *, since: date | None = None) -> list[int]:
        """UIDs >= first_uid (that arrived on or after `since`), ascending.

        `UID n:*` always matches the top UID, even below n: drop what is lower.
        """
        criteria: list[Any] = ["UID", f"{max(first_uid, 1)}:*"]
        if since is not None:
            criteria += ["SINCE", since]
        found = self._run(lambda c: c.search(criteria))
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

    def headers(self, uids: Iterable[int], *, limit: int = 65536) -> dict[int, bytes]:
        """The first `limit` bytes of each header block (for mail too large to download)."""
        wanted = list(uids)
        if not wanted:
            return {}
        data = self._run(lambda c: c.fetch(wanted, [f"BODY.PEEK[HEADER]<0.{limit}>"]))
        return {uid: bytes(item.get(b"BODY[HEADER]<0>") or b"") for uid, item in data.items()}

    def noop(self) -> bool:
        """One round trip that proves the connection alive; True when it reported new mail."""
        _text, responses = self._run(lambda c: c.noop())
        return self._news_in(responses)

    def idle_wait(
        self, *, timeout: float, silence: float, stop: threading.Event | None = None
    ) -> bool:
        """IDLE on the selected folder; True as soon as the server reports new mail.

        Returns False after `timeout` (time to re-issue IDLE), after `silence` seconds without a
        word from the server, or when `stop` is set; every wake ends with DONE and a NOOP, so a
        dead connection shows here. A BYE, EOF or timeout raises ImapError, connection discarded.
        """
        # EXISTS that came with our own SEARCH or FETCH replies, or that a NOOP brings: mail that
        # landed before IDLE started, which Dovecot only reports at the next command. What lands
        # in the one round trip between this NOOP and IDLE waits for the next wake (at most
        # `silence` seconds), and the poll is there besides.
        if self._take_pending_news() or self.noop():
            return True
        self._run(lambda c: c.idle())
        news = self._idle_until_news(timeout, silence, stop)
        _text, responses = self._run(lambda c: c.idle_done())
        news = self._news_in(responses) or news
        return self.noop() or news

    def _idle_until_news(
        self, timeout: float, silence: float, stop: threading.Event | None
    ) -> bool:
        started = heard = time.monotonic()
        while stop is None or not stop.is_set():
            now = time.monotonic()
            if now - started >= timeout or now - heard >= silence:
                return False
            responses = self._run(lambda c: c.idle_check(timeout=IDLE_SLICE_SECONDS))
            if responses:
                heard = time.monotonic()
                if self._news_in(responses):
                    return True
            elif time.monotonic() - now < IDLE_SLICE_SECONDS / 2:
                # Readable yet no line: the server closed the socket. idle_check swallows the
                # EOF, so end IDLE now and let DONE fail.
                return False
        return False

    def _news_in(self, responses: list[Any]) -> bool:
        """New mail in untagged responses; a BYE means the server is hanging up on us."""
        for response in responses:
            if response and response[0] == b"BYE":
                words = b" ".join(part for part in response[1:] if isinstance(part, bytes))
                self._discard()
                said = words.decode(errors="replace")
                raise ImapError(f"the server closed the connection: {said}")
        return any(len(response) > 1 and response[1] in _NEW_MAIL for response in responses)

    def _take_pending_news(self) -> bool:
        # imaplib files untagged responses that arrive with other commands' replies here; only
        # SELECT empties it, so EXISTS or RECENT left in it arrived after the last SELECT.
        if self._client is None:
            return False
        pending = self._client._imap.untagged_responses
        exists, recent = pending.pop("EXISTS", None), pending.pop("RECENT", None)
        return bool(exists or recent)

    def _run(self, action: Any) -> Any:
        if self._client is None:
            raise ImapError("not connected")
        try:
            return action(self._client)
        except (TimeoutError, OSError, IMAPClientError, ssl.SSLError) as exc:
            self._discard()  # a connection that failed once is never reused
            raise ImapError(f"IMAP command failed: {exc or type(exc).__name__}") from None

    def _discard(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            _quietly_shutdown(client)

    def _tls_context(self) -> ssl.SSLContext | None:
        if self._login.security == "plain":
            return None
        try:
            return ssl.create_default_context(cafile=str(self._ca_file) if self._ca_file else None)
        except (OSError, ssl.SSLError) as exc:
            raise ImapError(f"TRIAGE_IMAP_CA_FILE {self._ca_file} cannot be used: {exc}") from None

    # Write-back (after triage, when the account asks for it): keywords, moves, draft APPENDs.
    # Nothing here deletes mail or sets \Seen.

    def select_writable(self, folder: str) -> FolderStatus:
        """SELECT read-write, as STORE and MOVE need; selecting marks nothing as read."""
        response = self._run(lambda c: c.select_folder(folder, readonly=False))
        uidnext = response.get(b"UIDNEXT")
        return FolderStatus(
            uidvalidity=int(response[b"UIDVALIDITY"]),
            uidnext=int(uidnext) if uidnext is not None else None,
            exists=int(response.get(b"EXISTS", 0)),
        )

    def has_capability(self, name: str) -> bool:
        return bool(self._run(lambda c: c.has_capability(name)))

    def existing_uids(self, uids: Iterable[int]) -> set[int]:
        """Which of these UIDs the selected folder still holds (others were expunged or moved)."""
        wanted = sorted(set(uids))
        if not wanted:
            return set()
        found = self._run(lambda c: c.search(["UID", ",".join(str(uid) for uid in wanted)]))
        return set(found) & set(wanted)

    def add_keywords(self, uids: Iterable[int], keywords: Iterable[str]) -> None:
        """UID STORE +FLAGS.SILENT: adds keywords, leaves \\Seen and every other flag alone."""
        wanted, flags = list(uids), list(keywords)
        if wanted and flags:
            self._run(lambda c: c.add_flags(wanted, flags, silent=True))

    def ensure_folder(self, folder: str) -> None:
        if not self._run(lambda c: c.folder_exists(folder)):
            self._run(lambda c: c.create_folder(folder))

    def move(self, uids: Iterable[int], folder: str) -> None:
        """UID MOVE (RFC 6851) only: COPY then EXPUNGE would delete, which write-back never does."""
        wanted = list(uids)
        if wanted:
            self._run(lambda c: c.move(wanted, folder))

    def drafts_folder(self) -> str | None:
        """The folder the server marks \\Drafts (SPECIAL-USE), if any."""
        found = self._run(lambda c: c.find_special_folder(b"\\Drafts"))
        return str(found) if found else None

    def find_message_id(self, folder: str, message_id: str) -> int | None:
        """The UID of the message with this Message-ID in a folder (selected read-only)."""
        self._run(lambda c: c.select_folder(folder, readonly=True))
        found = self._run(lambda c: c.search(["HEADER", "Message-ID", message_id]))
        return min(found) if found else None

    def append(self, folder: str, raw: bytes, flags: Iterable[str]) -> int | None:
        """APPEND a message; its new UID from UIDPLUS's APPENDUID when the server sends one."""
        wanted = tuple(flags)
        response = self._run(lambda c: c.append(folder, raw, flags=wanted))
        found = _APPENDUID.search(response if isinstance(response, bytes) else b"")
        return int(found.group(1)) if found else None


# RFC 5530 codes of a refusal that says nothing against the credentials (the server is busy, or
# the account has too many connections open), and Gmail's words for the latter.
_FOR_NOW = re.compile(
    r"\[(UNAVAILABLE|LIMIT|INUSE|SERVERBUG)\]|too many simultaneous connections", re.IGNORECASE
)


def _turned_away_for_now(refusal: str) -> bool:
    return _FOR_NOW.search(refusal) is not None


def _server_words(refusal: str) -> str:
    """The server's reply as text (imaplib hands it over as the repr of bytes), kept short."""
    text = refusal.strip()
    if text[:2] in ("b'", 'b"') and text[-1:] == text[1]:
        text = text[2:-1]
    return text[:200]


def _quietly_shutdown(client: Any) -> None:
    with contextlib.suppress(OSError, IMAPClientError):
        client.shutdown()
