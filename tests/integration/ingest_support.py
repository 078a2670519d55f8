"""Helpers for the ingestion tests: accounts via the CLI, mail to APPEND, a listener process."""

from __future__ import annotations

import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from tests.conftest import ImapUser
from tests.integration.conftest import REPO, TEST_API_KEY, Cli
from tests.integration.seed import RecordingEnqueuer
from triage.adapters.db.migrate import upgrade
from triage.adapters.db.session import transaction
from triage.adapters.db.tables import MailAccount, Message, User
from triage.config import Settings
from triage.pipeline.credentials import secret_owner
from triage.pipeline.ingest import SyncReport, sync_account
from triage.runtime import Runtime, build_runtime, mailbox_opener

OWNER = "owner@example.test"


def mail(subject: str, *, body: str = "Hello there.", message_id: str | None = "auto") -> bytes:
    """A small message; a fresh Message-ID unless one is given (None: no Message-ID at all)."""
    message = EmailMessage()
    message["From"] = "Alice <alice@example.test>"
    message["To"] = OWNER
    message["Subject"] = subject
    if message_id == "auto":
        message_id = f"<{secrets.token_hex(8)}@example.test>"
    if message_id is not None:
        message["Message-ID"] = message_id
    message.set_content(body)
    return message.as_bytes().replace(b"\n", b"\r\n")


def add_account(
    cli: Cli,
    imap: ImapUser,
    *,
    security: str = "plain",
    port: int | None = None,
    folders: tuple[str, ...] = (),
) -> None:
    """The user (once) and one account on `imap`, as `triage accounts add` makes them."""
    cli.env["E2E_IMAP_PASSWORD"] = imap.password
    if "E2E_USER_ADDED" not in cli.env:
        cli("users", "add", OWNER)
        cli.env["E2E_USER_ADDED"] = "1"
    args = ["accounts", "add", "--user", OWNER, "--host", imap.host]
    args += ["--port", str(port or imap.port), f"--{security}", "--username", imap.username]
    args += ["--password-env", "E2E_IMAP_PASSWORD"]
    for folder in folders:
        args += ["--folder", folder]
    cli(*args)


def set_provider(cli: Cli, base_url: str) -> None:
    """The owner's model: the fake provider, OpenAI-shaped (needs the owner to exist)."""
    cli.env["E2E_API_KEY"] = TEST_API_KEY
    args = ["providers", "set", "--user", OWNER, "--provider", "openai", "--base-url", base_url]
    cli(*args, "--model", "fake-model", "--api-key-env", "E2E_API_KEY")


def runtime_from(env: dict[str, str]) -> Runtime:
    """The runtime a `triage` process started with `env` would build."""
    settings = Settings(
        **{  # type: ignore[arg-type]
            key.removeprefix("TRIAGE_").lower(): value
            for key, value in env.items()
            if key.startswith("TRIAGE_")
        }
    )
    return build_runtime(settings)


def sync_once(rt: Runtime, account_id: int, **options: Any) -> SyncReport:
    """One in-process sync pass over a real connection; enqueued IDs are only recorded."""
    return sync_account(
        account_id=account_id,
        db=rt.db,
        open_mailbox=mailbox_opener(rt),
        secrets=rt.secrets,
        enqueue=RecordingEnqueuer(),
        settings=rt.settings,
        **options,
    )


def seed_account(
    env: dict[str, str],
    imap: ImapUser,
    *,
    security: str = "plain",
    port: int | None = None,
    folders: tuple[str, ...] = ("INBOX",),
) -> int:
    """What `triage users add` and `triage accounts add` store, written in-process (each CLI
    start costs seconds on a busy machine); the password is encrypted as the CLI does."""
    rt = runtime_from(env)
    upgrade(rt.settings.resolved_database_url())
    try:
        with transaction(rt.db) as session:
            user = session.scalars(select(User).where(User.email == OWNER)).first()
            if user is None:
                user = User(email=OWNER)
                session.add(user)
                session.flush()
            row = MailAccount(
                user_id=user.id,
                host=imap.host,
                port=port or imap.port,
                security=security,
                username=imap.username,
                folders=list(folders),
            )
            session.add(row)
            session.flush()
            row.password_enc = rt.secrets.encrypt(
                imap.password, owner=secret_owner(row.id, "password")
            )
            return row.id
    finally:
        rt.engine.dispose()


def poll(condition: Callable[[], bool], *, timeout: float, what: str, every: float = 0.01) -> float:
    """Seconds until `condition` held; fails after `timeout`."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)
    return time.monotonic() - started


def stored_uids(engine: Engine, folder: str = "INBOX") -> list[int]:
    with Session(engine) as session:
        return list(
            session.scalars(
                select(Message.uid).where(Message.folder == folder).order_by(Message.uid)
            )
        )


def subjects(engine: Engine) -> list[str]:
    with Session(engine) as session:
        return sorted(session.scalars(select(Message.subject)))


def account(engine: Engine) -> MailAccount:
    with Session(engine) as session:
        return session.scalars(select(MailAccount)).one()


@dataclass
class Process:
    """A `triage` subprocess (listen, run) with its output in a file."""

    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, needle: str, *, count: int = 1, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.log().count(needle) < count:
            if self.process.poll() is not None:
                raise AssertionError(f"exited {self.process.returncode}\n{self.log()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"never logged {needle!r} x{count}\n{self.log()[-3000:]}")
            time.sleep(0.02)

    def terminate(self, timeout: float = 15) -> int:
        """SIGTERM, then the exit code; fails if it does not exit in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise AssertionError(f"did not stop on SIGTERM\n{self.log()[-3000:]}") from None


def start_triage(env: dict[str, str], log_path: Path, *args: str) -> Process:
    handle = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "triage.cli", *args],
        env=env,
        cwd=REPO,
        stdout=handle,
        stderr=subprocess.STDOUT,
    )
    return Process(process, log_path)
