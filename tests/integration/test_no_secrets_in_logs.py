"""A full run, failures included, leaves no model key and no IMAP password in any output."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from tests.conftest import ImapUser
from tests.integration.conftest import CORPUS, Cli, start_worker, stop_worker, wait_until
from tests.support.byok import Abilities, behaving
from tests.support.dovecot import Dovecot
from tests.support.model_server import FakeModelServer, RecordedRequest, Reply, api_error
from triage.adapters.db.tables import Base, Message, ProviderSetting
from triage.domain import statuses

API_KEY = "sk-never-show-me-5c3d9e"
WRONG_IMAP_PASSWORD = "not-the-imap-pw-41"
CORPUS_FILES = ("cpython-msg_01.eml", "cpython-msg_07.eml", "flanker-mailgun-pic.eml")


class RecordingCli(Cli):
    """The real CLI, with every stdout and stderr kept for the final check."""

    outputs: list[str]

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        result = super().__call__(*args, check=check, timeout=timeout)
        self.outputs += [result.stdout, result.stderr]
        return result


def echoing_key(request: RecordedRequest) -> str:
    """What a careless provider does: repeat the caller's key in an error message."""
    return (request.header("Authorization") or "").removeprefix("Bearer ")


def test_no_secret_reaches_logs_output_or_stored_errors(
    dovecot: Dovecot,
    imap_user: ImapUser,
    service_env: dict[str, str],
    model_server: FakeModelServer,
    pg_engine: Engine,
    tmp_path: Path,
) -> None:
    cli = RecordingCli(service_env)
    cli.outputs = []
    for name in CORPUS_FILES:
        dovecot.append(
            imap_user.username, imap_user.password, "INBOX", (CORPUS / name).read_bytes()
        )
    competent = behaving(Abilities(strict=False))

    def provider(request: RecordedRequest) -> Reply:
        body = request.json or {}
        strict = (body.get("response_format") or {}).get("json_schema", {}).get("strict")
        if strict:  # refused, quoting the key, as some providers do
            return api_error(400, f"strict is not supported for key {echoing_key(request)}")
        return competent(request)

    model_server.responder = provider
    set_up(cli, imap_user, model_server.base_url)
    # Failures on the way: a 5xx, a 429, garbage, all quoting the key.
    model_server.script(
        api_error(500, f"upstream failed for {API_KEY}"),
        api_error(429, f"slow down, {API_KEY}", retry_after=1),
        Reply(content=f"garbage {API_KEY}"),
    )
    worker = start_worker(service_env, tmp_path / "worker.log", "--loglevel=DEBUG")
    try:
        cli("sync", "--once", check=False)  # one account's login fails: exit 1, by design
        wait_until(lambda: settled(pg_engine), timeout=180, what="every message to settle")
        # A rejected key, quoted back: the setting is disabled, the next mail fails clearly.
        model_server.script(api_error(401, f"Incorrect API key provided: {API_KEY}"))
        dovecot.append(imap_user.username, imap_user.password, "INBOX", b"Subject: late\r\n\r\nhi")
        cli("sync", "--once", check=False)
        wait_until(lambda: key_disabled(pg_engine), timeout=60, what="the key to be disabled")
        wait_until(lambda: settled(pg_engine), timeout=60, what="the late message to settle")
        cli("export", "--format", "jsonl")
        cli("providers", "test", "--user", "owner@example.test", check=False)
        cli("providers", "list", "--user", "owner@example.test")
    finally:
        stop_worker(worker)

    sent_keys = {r.header("Authorization") for r in model_server.chat_requests}
    assert sent_keys == {f"Bearer {API_KEY}"}  # the key really was in use all along
    worker_log = worker.log()
    assert "] received" in worker_log and "Retry in" in worker_log  # the log is the real one
    haystacks = {"worker log": worker_log, "CLI output": "\n".join(cli.outputs)}
    haystacks["database"] = readable_columns(pg_engine)
    for secret in (API_KEY, imap_user.password, WRONG_IMAP_PASSWORD):
        for where, haystack in haystacks.items():
            assert secret not in haystack, f"a secret appears in the {where}"
    assert f"...{API_KEY[-4:]}" in haystacks["database"]  # shown, but only its last four


def set_up(cli: RecordingCli, imap_user: ImapUser, base_url: str) -> None:
    cli.env.update(IMAP_PW=imap_user.password, WRONG_PW=WRONG_IMAP_PASSWORD, MODEL_KEY=API_KEY)
    cli("users", "add", "owner@example.test")
    for variable in ("IMAP_PW", "WRONG_PW"):
        cli(
            "accounts", "add", "--user", "owner@example.test", "--host", imap_user.host,
            "--port", str(imap_user.port), "--plain", "--username", imap_user.username,
            "--password-env", variable,
        )  # fmt: skip
    cli(
        "providers", "set", "--user", "owner@example.test", "--provider", "openai",
        "--base-url", base_url, "--model", "fake-model", "--api-key-env", "MODEL_KEY",
    )  # fmt: skip


def settled(engine: Engine) -> bool:
    with Session(engine) as session:
        count = session.scalar(select(func.count()).select_from(Message))
        moving = session.scalar(select(func.count()).where(Message.status.in_(statuses.UNFINISHED)))
    return bool(count) and moving == 0


def key_disabled(engine: Engine) -> bool:
    with Session(engine) as session:
        return session.scalars(select(ProviderSetting.valid)).one() is False


def readable_columns(engine: Engine) -> str:
    """Every text and JSON value the service stored, except the ciphertexts themselves."""
    parts: list[str] = []
    with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            columns = [
                c
                for c in table.columns
                if not c.name.endswith("_enc") and c.name not in ("raw", "normalized")
            ]
            for row in conn.execute(select(*columns)):
                parts.append(json.dumps([str(value) for value in row]))
    return "\n".join(parts)
