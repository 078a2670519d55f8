"""A private Dovecot IMAP server on a free loopback port, for tests against a real server."""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import IO

from imapclient import IMAPClient

from tests.support.certs import make_server_certificate
from tests.support.services import ServiceUnavailable

DOVECOT = Path("/usr/sbin/dovecot")
DOVEADM = Path("/usr/bin/doveadm")
HOST = "127.0.0.1"
START_TIMEOUT = 15.0
INSTALL_FIX = "run scripts/test as root, or `apt-get install -y dovecot-imapd`"

# The configuration from docs/ingestion.md, with changes for tests:
# - first_valid_uid/gid: Dovecot refuses mail to UIDs below 500, and the owner is a system user;
# - one passwd-file per user: Dovecot re-reads a changed passwd-file at most once a second,
#   so a user added right after another login would be unknown for up to a second;
# - no auth failure delay or penalty: wrong-password tests would otherwise wait 2-15 s;
# - verbose_proctitle: each imap process names its user, so a test can signal one session;
# - with tls=True, ssl = yes (STARTTLS on the plain port) and an implicit-TLS listener too.
CONFIG = """\
protocols = imap
listen = {host}
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
verbose_proctitle = yes
{ssl}
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = {user}
default_internal_group = {group}
default_login_user = {user}
first_valid_uid = {uid}
first_valid_gid = {gid}
auth_failure_delay = 0
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users/%u
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/mail/%u
}}
mail_location = maildir:~/Maildir
mail_fsync = never
namespace inbox {{
  inbox = yes
  separator = /
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = {host}
    port = {port}
  }}
  inet_listener imaps {{
    address = {host}
    port = {tls_port}
  }}
}}
service anvil {{
  chroot =
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
"""


class DovecotError(RuntimeError):
    """Dovecot failed to start or to do what a test asked; the message carries its log."""


class Dovecot:
    """One Dovecot instance in its own temp dir: start/stop/restart, users, folders, mail.

    With tls=True it also speaks TLS, with a certificate from a CA made for it (`ca_path`):
    STARTTLS on `port`, implicit TLS on `tls_port`. Plaintext logins stay allowed on `port`.
    """

    def __init__(self, *, port: int | None = None, tls: bool = False) -> None:
        if not DOVECOT.exists():
            raise ServiceUnavailable("Dovecot", f"{DOVECOT} is not installed", INSTALL_FIX)
        self.host = HOST
        self.port = port or _free_port()
        self.tls = tls
        self.tls_port = _free_port() if tls else 0
        self.owner = _mail_owner()
        self.root = Path(tempfile.mkdtemp(prefix="triage-dovecot-"))
        self.ca_path: Path | None = None
        self.config_path = self.root / "dovecot.conf"
        self.log_path = self.root / "dovecot.log"
        self.users_path = self.root / "users"  # a directory of one-line passwd-files
        self._output_path = self.root / "output.log"  # what dovecot prints before logging starts
        self._process: subprocess.Popen[bytes] | None = None
        self._output: IO[bytes] | None = None
        self._write_files()

    def __enter__(self) -> Dovecot:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> Dovecot:
        """Run the master in the foreground (-F) and wait for the IMAP greeting."""
        if self.running:
            return self
        self.stop()  # tidy up after a master that died on its own
        self._output = self._output_path.open("ab")
        command = [str(DOVECOT), "-F", "-c", str(self.config_path)]
        # Its own session: the master and all its children share a process group we can watch.
        self._process = subprocess.Popen(
            command, stdout=self._output, stderr=subprocess.STDOUT, start_new_session=True
        )
        self._wait_until_ready()
        return self

    def stop(self) -> None:
        """TERM the master and wait until it and every child (imap, auth) are gone."""
        if self._process is not None:
            group = self._process.pid
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            # imap processes with a client outlive the master; end them too, so that a
            # stopped server really drops every connection, as a reboot would.
            _end_group(group)
            self._process = None
        if self._output is not None:
            self._output.close()
            self._output = None

    def restart(self) -> Dovecot:
        """Stop and start again on the same port; mail and users are kept."""
        self.stop()
        return self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def add_user(self, name: str, password: str) -> None:
        if not re.fullmatch(r"[A-Za-z0-9._@+-]+", name) or re.search(r"[:\s]", password):
            raise ValueError(f"unusable IMAP user or password for a passwd-file: {name!r}")
        # Changing an existing user's password may take a second to be seen (see CONFIG).
        (self.users_path / name).write_text(f"{name}:{{PLAIN}}{password}::::::\n")

    def kick(self, user: str) -> None:
        """Drop every connection of `user`, as a server restart or admin would."""
        result = subprocess.run(
            [str(DOVEADM), "-c", str(self.config_path), "kick", user],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if result.returncode != 0:
            raise DovecotError(f"doveadm kick {user} failed: {result.stderr.strip()}")

    def client(self, user: str, password: str, *, timeout: float = 10.0) -> IMAPClient:
        """A logged-in plaintext IMAPClient; the caller logs out (or uses `with`)."""
        imap = IMAPClient(self.host, port=self.port, ssl=False, timeout=timeout)
        imap.login(user, password)
        return imap

    def append(
        self,
        user: str,
        password: str,
        folder: str,
        raw: bytes,
        flags: Iterable[str] = (),
        msg_time: datetime | None = None,
    ) -> int:
        """APPEND one message (arrived at `msg_time`, its INTERNALDATE); return its UID."""
        with self.client(user, password) as imap:
            response = imap.append(folder, raw, flags=tuple(flags), msg_time=msg_time)
        match = re.search(rb"APPENDUID \d+ (\d+)", response)
        if match is None:
            raise DovecotError(f"APPEND gave no APPENDUID: {response!r}")
        return int(match.group(1))

    def create_folder(self, user: str, password: str, folder: str) -> None:
        with self.client(user, password) as imap:
            imap.create_folder(folder)

    def delete_folder(self, user: str, password: str, folder: str) -> None:
        with self.client(user, password) as imap:
            imap.delete_folder(folder)

    def sessions(self, user: str) -> list[int]:
        """PIDs of the imap processes serving `user` (one per logged-in connection)."""
        pids = []
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                title = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue  # the process ended while we looked
            if title.startswith("dovecot/imap [") and f"[{user} " in title:
                pids.append(int(cmdline.parent.name))
        return pids

    def log_tail(self, lines: int = 30) -> str:
        """The end of Dovecot's log and console output, for error messages."""
        parts = []
        for path in (self._output_path, self.log_path):
            if path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {path}\n" + "\n".join(text))
        return "\n".join(parts) or "(no dovecot output)"

    def _write_files(self) -> None:
        for sub in ("run", "state", "mail", "users"):
            (self.root / sub).mkdir()
        ssl = "ssl = no"
        if self.tls:
            made = make_server_certificate(self.root / "tls", self.host)
            self.ca_path = made.ca_path
            ssl = f"ssl = yes\nssl_cert = <{made.cert_path}\nssl_key = <{made.key_path}"
        self.config_path.write_text(
            CONFIG.format(
                ssl=ssl,
                tls_port=self.tls_port,
                host=self.host,
                port=self.port,
                root=self.root,
                user=self.owner.pw_name,
                group=self.owner.pw_name,
                uid=self.owner.pw_uid,
                gid=self.owner.pw_gid,
            )
        )
        # Mail processes run as the owner and must traverse the root and write mail/.
        for path in (self.root, *self.root.iterdir()):
            os.chown(path, self.owner.pw_uid, self.owner.pw_gid)

    def _wait_until_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + START_TIMEOUT
        while not _greets(self.host, self.port):
            if self._process.poll() is not None:
                code = self._process.returncode
                raise DovecotError(f"dovecot exited with {code}\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise DovecotError(f"dovecot not ready after {START_TIMEOUT}s\n{self.log_tail()}")
            time.sleep(0.05)


def _mail_owner() -> pwd.struct_passwd:
    # As root, Dovecot needs an unprivileged user for logins and mail; its own `dovecot`
    # user exists wherever the package is installed. Otherwise everything runs as us.
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid())
    try:
        return pwd.getpwnam("dovecot")
    except KeyError as exc:
        missing = "the `dovecot` system user is missing"
        raise ServiceUnavailable("Dovecot", missing, INSTALL_FIX) from exc


def _end_group(group: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGTERM)
    while _group_members(group):
        if time.monotonic() > deadline:
            os.killpg(group, signal.SIGKILL)
            return
        time.sleep(0.02)


def _group_members(group: int) -> list[int]:
    """Live (non-zombie) processes in a process group, read from /proc."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # Fields after the ")" that closes the command name: state, ppid, pgrp, ...
            state, _ppid, pgrp = stat.read_text().rpartition(")")[2].split()[:3]
        except (OSError, ValueError):
            continue  # the process ended while we looked
        if int(pgrp) == group and state != "Z":
            members.append(int(stat.parent.name))
    return members


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _greets(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1) as sock:
            return sock.recv(64).startswith(b"* OK")
    except OSError:
        return False
