"""Big mailboxes: --since, --max, progress on a terminal or in logs, the size cap, flat memory."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import tracemalloc
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, undefer

from tests.conftest import ImapUser
from tests.integration.conftest import REPO, Cli
from tests.integration.ingest_support import (
    mail,
    runtime_from,
    seed_account,
    stored_uids,
    subjects,
    sync_once,
)
from tests.support.dovecot import Dovecot
from triage.adapters.db.tables import FolderState, Message


def folder_state(engine: Engine) -> FolderState:
    with Session(engine) as session:
        return session.scalars(select(FolderState)).one()


def test_since_limits_the_first_sync_and_later_passes_go_on_from_the_mark(
    dovecot: Dovecot, imap_user: ImapUser, cli: Cli, pg_engine: Engine
) -> None:
    user, password = imap_user.username, imap_user.password
    long_ago = datetime(2020, 3, 1, tzinfo=UTC)
    for n in range(5):
        dovecot.append(user, password, "INBOX", mail(f"old {n}"), msg_time=long_ago)
    for n in range(3):
        dovecot.append(user, password, "INBOX", mail(f"recent {n}"))
    seed_account(cli.env, imap_user)
    since = (datetime.now(UTC) - timedelta(days=30)).date().isoformat()

    first = cli("sync", "--once", "--since", since)

    assert "stored 3 " in first.stderr
    assert "5 older than --since left on the server" in first.stderr
    assert subjects(pg_engine) == ["recent 0", "recent 1", "recent 2"]
    state = folder_state(pg_engine)
    assert (state.high_water_uid, state.remaining) == (8, 5)

    dovecot.append(user, password, "INBOX", mail("newest"))
    second = cli("sync", "--once")  # no --since: the mark, not a date, says where to go on

    assert "stored 1 " in second.stderr
    assert stored_uids(pg_engine) == [6, 7, 8, 9]
    assert folder_state(pg_engine).remaining == 0

    bad = cli("sync", "--once", "--since", "last tuesday", check=False)
    assert bad.returncode == 2 and "expected a date like 2024-01-31" in bad.stderr


def test_max_takes_the_oldest_first_and_leaves_the_rest_for_later_passes(
    dovecot: Dovecot, imap_user: ImapUser, cli: Cli, pg_engine: Engine
) -> None:
    for n in range(7):
        dovecot.append(imap_user.username, imap_user.password, "INBOX", mail(f"m{n}"))
    seed_account(cli.env, imap_user)

    first = cli("sync", "--once", "--max", "3")
    assert "stored 3 " in first.stderr and "4 left for later" in first.stderr
    assert folder_state(pg_engine).remaining == 4
    # Not a terminal here: plain log lines with counts and rate instead of a bar.
    assert "INBOX: 3 new messages to fetch" in first.stderr
    assert re.search(r"INBOX: 3/3 messages \(\d+ msg/s\)", first.stderr)

    second = cli("sync", "--once", "--max", "5")
    assert "stored 4 " in second.stderr and "left for later" not in second.stderr
    assert stored_uids(pg_engine) == list(range(1, 8))
    assert folder_state(pg_engine).remaining == 0


def test_a_terminal_gets_a_progress_bar(
    dovecot: Dovecot, imap_user: ImapUser, cli: Cli, pg_engine: Engine
) -> None:
    for n in range(25):
        dovecot.append(imap_user.username, imap_user.password, "INBOX", mail(f"bar {n}"))
    seed_account(cli.env, imap_user)
    cli.env["TRIAGE_FETCH_BATCH_SIZE"] = "5"

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-m", "triage.cli", "sync", "--once"],
        env=cli.env,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
    )
    os.close(follower)
    output = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the process closed the terminal
            break
        if not chunk:
            break
        output += chunk
    assert process.wait(timeout=120) == 0
    os.close(leader)
    text = output.decode(errors="replace")
    assert re.search(r"account \d+ INBOX: 100%\|.*\| 25/25 \[.*msg/s\]", text), text
    assert "stored 25 " in text
    assert len(stored_uids(pg_engine)) == 25


def test_an_oversized_message_is_recorded_without_downloading_it(
    dovecot: Dovecot, imap_user: ImapUser, cli: Cli, pg_engine: Engine
) -> None:
    cap = 100_000
    big = mail("the big one") + b"\r\n".join([b"y" * 998] * 400)  # about 400 KB
    dovecot.append(imap_user.username, imap_user.password, "INBOX", big)
    dovecot.append(imap_user.username, imap_user.password, "INBOX", mail("small"))
    cli.env["TRIAGE_MAX_MESSAGE_BYTES"] = str(cap)
    seed_account(cli.env, imap_user)

    result = cli("sync", "--once")

    assert "too large 1" in result.stderr
    with Session(pg_engine) as session:
        query = select(Message).options(undefer(Message.raw)).order_by(Message.uid)
        large, small = session.scalars(query).all()
    assert large.status == "too_large" and large.raw is None and large.size > cap
    assert large.subject == "the big one" and "alice@example.test" in large.from_addr
    assert large.error and f"over the cap of {cap}" in large.error
    assert small.status == "queued" and small.raw is not None
    # Dovecot logs what each session sent: the sync's connection never carried the big body.
    sent = re.findall(
        rf"imap\({re.escape(imap_user.username)}\).*Logged out in=\d+ out=(\d+)",
        dovecot.log_tail(500),
    )
    assert sent and max(int(n) for n in sent) < cap, sent


def test_memory_does_not_grow_with_the_mailbox(
    dovecot: Dovecot, imap_user: ImapUser, service_env: dict[str, str], pg_engine: Engine
) -> None:
    body = "Lorem ipsum dolor sit amet, consectetur adipiscing elit.\n" * 600  # ~35 KB each
    service_env["TRIAGE_FETCH_BATCH_SIZE"] = "20"
    account_id = seed_account(service_env, imap_user)
    rt = runtime_from(service_env)

    def peak_while_syncing(count: int) -> tuple[int, int]:
        for n in range(count):
            raw = mail(f"bulk {n}", body=body)
            dovecot.append(imap_user.username, imap_user.password, "INBOX", raw)
        tracemalloc.start()
        try:
            report = sync_once(rt, account_id)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert report.stored == count
        return peak, count * len(raw)

    peak_while_syncing(5)  # first use fills caches (SQL compilation, parser tables)
    small_peak, _ = peak_while_syncing(60)
    big_peak, big_bytes = peak_while_syncing(360)

    assert big_peak < small_peak * 1.5, (small_peak, big_peak)
    assert big_peak < big_bytes / 3, (big_peak, big_bytes)
    rt.engine.dispose()
