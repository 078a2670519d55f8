"""The reference fetchers: imapclient + `email` parsing, offlineimap and mbsync to a Maildir."""

from __future__ import annotations

import email
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from email.policy import Policy
from pathlib import Path

from imapclient import IMAPClient

from bench.harness import Bench, run_measured

FETCH_BATCH = 200  # the same batch size `triage sync` uses by default
# Debian package that provides each command; installed on first use.
PACKAGES = {"offlineimap": "offlineimap3", "mbsync": "isync"}


@dataclass(frozen=True)
class Outcome:
    """One method's pass over the folder: wall seconds, messages handled, the client's CPU
    seconds (Dovecot's and the database's are not in it)."""

    seconds: float
    count: int
    cpu_seconds: float


OFFLINEIMAP_CONFIG = """\
[general]
accounts = bench
metadata = {root}/metadata
ui = quiet

[Account bench]
localrepository = local
remoterepository = remote

[Repository local]
type = Maildir
localfolders = {root}/maildir

[Repository remote]
type = IMAP
remotehost = {host}
remoteport = {port}
remoteuser = {user}
remotepass = {password}
ssl = no
starttls = no
readonly = True
folderfilter = lambda name: name == {folder!r}
"""


MBSYNC_CONFIG = """\
IMAPAccount bench
Host {host}
Port {port}
User {user}
Pass {password}
SSLType None
AuthMechs LOGIN

IMAPStore remote
Account bench

MaildirStore local
Path {root}/maildir/
Inbox {root}/maildir/INBOX
SubFolders Verbatim

Channel bench
Far :remote:
Near :local:
Patterns {folder}
Create Near
Sync Pull
SyncState {root}/state/
"""


def plain_fetch_and_parse(bench: Bench, folder: str, policy: Policy) -> Outcome:
    """Fetch every message with BODY.PEEK[] and parse it with `email`, in this process."""
    start, cpu = time.perf_counter(), time.process_time()
    count = 0
    with IMAPClient(bench.dovecot.host, port=bench.dovecot.port, ssl=False, timeout=120) as imap:
        imap.login(bench.user, bench.password)
        imap.select_folder(folder, readonly=True)
        uids = imap.search(["ALL"])
        for first in range(0, len(uids), FETCH_BATCH):
            fetched = imap.fetch(uids[first : first + FETCH_BATCH], ["BODY.PEEK[]"])
            for item in fetched.values():
                email.message_from_bytes(item[b"BODY[]"], policy=policy)
                count += 1
    return Outcome(time.perf_counter() - start, count, time.process_time() - cpu)


def offlineimap(bench: Bench, folder: str, root: Path) -> Outcome:
    """One `offlineimap -o` mirroring the folder to an empty Maildir."""
    _fresh(root)
    config = root / "offlineimaprc"
    config.write_text(OFFLINEIMAP_CONFIG.format(root=root, folder=folder, **_login(bench)))
    config.chmod(0o600)
    return _mirror(["offlineimap", "-c", str(config), "-o"], bench, root)


def mbsync(bench: Bench, folder: str, root: Path) -> Outcome:
    """One `mbsync` pull of the folder into an empty Maildir."""
    _fresh(root)
    (root / "state").mkdir()
    config = root / "mbsyncrc"
    config.write_text(MBSYNC_CONFIG.format(root=root, folder=folder, **_login(bench)))
    config.chmod(0o600)
    return _mirror(["mbsync", "-c", str(config), "-q", "bench"], bench, root)


def ensure_installed() -> None:
    """apt-get install offlineimap3 and isync when their commands are missing (needs root)."""
    missing = [pkg for cmd, pkg in PACKAGES.items() if shutil.which(cmd) is None]
    if not missing:
        return
    if os.geteuid() != 0:
        raise RuntimeError(f"missing {', '.join(missing)}: run as root or apt-get install them")
    print(f"installing {' '.join(missing)} with apt-get", flush=True)
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True)


def _mirror(command: list[str], bench: Bench, root: Path) -> Outcome:
    run = run_measured(command, env=dict(os.environ, HOME=str(root)), cwd=root)
    if run.returncode != 0:
        raise RuntimeError(f"{command[0]} exited {run.returncode}\n{run.output[-3000:]}")
    count = sum(1 for path in (root / "maildir").rglob("*") if path.parent.name in ("cur", "new"))
    return Outcome(run.seconds, count, run.cpu_seconds)


def _login(bench: Bench) -> dict[str, object]:
    return {
        "host": bench.dovecot.host,
        "port": bench.dovecot.port,
        "user": bench.user,
        "password": bench.password,
    }


def _fresh(root: Path) -> None:
    shutil.rmtree(root, ignore_errors=True)
    (root / "maildir").mkdir(parents=True)
