"""Bad input ends in a clear status with nothing lost: bad model output, bad keys, bad passwords."""

from __future__ import annotations

import json

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from tests.conftest import ImapUser
from tests.integration.conftest import Cli
from tests.integration.seed import RecordingEnqueuer, runtime_for, seed_message, seed_user
from tests.support.dovecot import Dovecot
from tests.support.model_server import FakeModelServer, Reply, api_error
from tests.support.triage_responder import triage_answer
from triage.adapters.db.tables import (
    MailAccount,
    Message,
    ProviderSetting,
    TriageResult,
    UsageEntry,
)
from triage.domain import statuses
from triage.pipeline.triage import triage_message

KEY = "sk-bad-input-9f3a"


def _triage(rt, message_id: int, attempt: int = 1):  # type: ignore[no-untyped-def]
    return triage_message(
        message_id=message_id,
        attempt=attempt,
        db=rt.db,
        model=rt.model,
        secrets=rt.secrets,
        enqueue=RecordingEnqueuer(),
        settings=rt.settings,
    )


def test_invalid_answer_is_reasked_once_with_the_error_then_stored(
    pg_engine: Engine, migrated_pg: str, model_server: FakeModelServer
) -> None:
    rt = runtime_for(migrated_pg)
    _, account_id, _ = seed_user(rt, base_url=model_server.base_url, api_key=KEY)
    message_id = seed_message(rt, account_id, uid=1)
    good = triage_answer("Can we meet?")
    model_server.script(Reply(content='{"category": "nonsense"}'), Reply(content=json.dumps(good)))

    outcome = _triage(rt, message_id)

    assert outcome.status == statuses.TRIAGED
    _, second = model_server.chat_requests
    reask = second.messages[-1]["content"]
    assert "not valid" in reask and "priority" in reask
    with Session(pg_engine) as session:
        result = session.scalars(select(TriageResult)).one()
        assert result.model_calls == 2
        assert result.input_tokens > 0


def test_answer_invalid_twice_is_recorded_as_failed_with_the_reason(
    pg_engine: Engine, migrated_pg: str, model_server: FakeModelServer
) -> None:
    rt = runtime_for(migrated_pg)
    _, account_id, _ = seed_user(rt, base_url=model_server.base_url, api_key=KEY)
    message_id = seed_message(rt, account_id, uid=1)
    model_server.script(Reply(content="not json at all"), Reply(content=""))

    outcome = _triage(rt, message_id)

    assert outcome.status == statuses.FAILED
    assert len(model_server.chat_requests) == 2
    with Session(pg_engine) as session:
        message = session.get_one(Message, message_id)
        assert message.status == statuses.FAILED
        assert message.error is not None and "invalid answer after a re-ask" in message.error
        assert "blank" in message.error
        assert session.scalar(select(func.count()).select_from(TriageResult)) == 0
        ledger = session.scalars(select(UsageEntry)).one()
        assert ledger.outcome == "InvalidModelOutput"


def test_a_401_disables_the_setting_and_stops_calls(
    pg_engine: Engine, migrated_pg: str, model_server: FakeModelServer
) -> None:
    rt = runtime_for(migrated_pg)
    _, account_id, setting_id = seed_user(rt, base_url=model_server.base_url, api_key=KEY)
    first = seed_message(rt, account_id, uid=1)
    second = seed_message(rt, account_id, uid=2)
    model_server.responder = lambda _request: api_error(401, "Incorrect API key provided")

    assert _triage(rt, first).status == statuses.FAILED
    assert _triage(rt, second).status == statuses.FAILED

    assert len(model_server.chat_requests) == 1, "a rejected key must not be tried again"
    with Session(pg_engine) as session:
        setting = session.get_one(ProviderSetting, setting_id)
        assert setting.valid is False and "401" in (setting.invalid_reason or "")
        errors = [session.get_one(Message, i).error or "" for i in (first, second)]
        assert "key rejected" in errors[0]
        assert "no valid model" in errors[1]
        assert KEY not in " ".join(errors)


def test_a_5xx_asks_for_a_retry_later_then_fails_after_the_bound(
    pg_engine: Engine, migrated_pg: str, model_server: FakeModelServer
) -> None:
    rt = runtime_for(migrated_pg, model_max_attempts=2)
    _, account_id, _ = seed_user(rt, base_url=model_server.base_url, api_key=KEY)
    message_id = seed_message(rt, account_id, uid=1)
    model_server.responder = lambda _request: api_error(503, "overloaded")

    first = _triage(rt, message_id, attempt=1)
    assert first.status == statuses.QUEUED and first.retry_after is not None
    second = _triage(rt, message_id, attempt=2)
    assert second.status == statuses.FAILED and second.retry_after is None
    assert len(model_server.chat_requests) == 2
    with Session(pg_engine) as session:
        assert "503" in (session.get_one(Message, message_id).error or "")


def test_wrong_imap_password_is_a_clear_account_status(
    dovecot: Dovecot, imap_user: ImapUser, cli: Cli, pg_engine: Engine
) -> None:
    cli.env["E2E_IMAP_PASSWORD"] = "definitely-wrong"
    cli("users", "add", "owner@example.test")
    cli(
        "accounts",
        "add",
        "--user",
        "owner@example.test",
        "--host",
        imap_user.host,
        "--port",
        str(imap_user.port),
        "--plain",
        "--username",
        imap_user.username,
        "--password-env",
        "E2E_IMAP_PASSWORD",
    )

    result = cli("sync", "--once", check=False)

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "refused the login" in result.stderr
    assert "definitely-wrong" not in result.stderr + result.stdout
    with Session(pg_engine) as session:
        account = session.scalars(select(MailAccount)).one()
        assert account.status == "auth_failed"
        assert account.consecutive_failures == 1
        assert "refused the login" in (account.last_error or "")


def test_unparseable_mail_is_kept_raw_and_the_batch_goes_on(
    dovecot: Dovecot, imap_user: ImapUser, cli: Cli, pg_engine: Engine
) -> None:
    # Dovecot turns NUL bytes into 0x80, so blank content is what a server can deliver that
    # no parser can read.
    garbage = b"\r\n  \r\n"
    fine = b"From: a@example.test\r\nSubject: fine\r\n\r\nHello\r\n"
    for raw in (garbage, fine, garbage):
        dovecot.append(imap_user.username, imap_user.password, "INBOX", raw)
    cli.env["E2E_IMAP_PASSWORD"] = imap_user.password
    cli("users", "add", "owner@example.test")
    cli(
        "accounts",
        "add",
        "--user",
        "owner@example.test",
        "--host",
        imap_user.host,
        "--port",
        str(imap_user.port),
        "--plain",
        "--username",
        imap_user.username,
        "--password-env",
        "E2E_IMAP_PASSWORD",
    )

    cli("sync", "--once")

    with Session(pg_engine) as session:
        messages = session.scalars(select(Message).order_by(Message.uid)).all()
        assert len(messages) == 3
        assert messages[1].subject == "fine"
        for broken in (messages[0], messages[2]):
            assert broken.status == statuses.FAILED
            assert broken.error and broken.error.startswith("unparseable")
            assert broken.raw == garbage
