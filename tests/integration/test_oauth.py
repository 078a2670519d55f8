"""XOAUTH2 on real services: a loopback token endpoint, a Dovecot that asks it, the real CLI.

Dovecot lets an XOAUTH2 login in only when the token endpoint says the access token is live, so
a sync that skipped a refresh, or used a dead token, fails here as it would at Gmail.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, text, update
from sqlalchemy.orm import Session

from tests.integration.conftest import TEST_API_KEY, Cli, wait_until
from tests.support.dovecot import DovecotError
from tests.support.dovecot_oauth import OAuthDovecot
from tests.support.model_server import FakeModelServer
from tests.support.oauth import TokenServer
from tests.support.services import ServiceUnavailable
from tests.support.triage_responder import triage_and_draft
from triage.adapters.db.tables import MailAccount, Message
from triage.adapters.secrets import SecretBox
from triage.domain import statuses


@pytest.fixture(scope="module")
def tokens() -> Iterator[TokenServer]:
    with TokenServer() as server:
        yield server


@pytest.fixture(scope="module")
def oauth_dovecot(tokens: TokenServer) -> Iterator[OAuthDovecot]:
    try:
        server = OAuthDovecot(introspection_url=tokens.introspection_url).start()
    except (ServiceUnavailable, DovecotError) as exc:
        pytest.fail(str(exc), pytrace=False)
    yield server
    server.close()


@pytest.fixture
def mailbox_user(oauth_dovecot: OAuthDovecot, tokens: TokenServer) -> Iterator[str]:
    """A Dovecot user (with a password only so the test can APPEND) and a fresh token server."""
    name = f"oauth-{secrets.token_hex(4)}"
    oauth_dovecot.add_user(name, "append-only-pw")
    tokens.rotate, tokens.fail_with = False, None
    tokens.grants.clear()
    yield name
    tokens.revoke_all()


def append(dovecot: OAuthDovecot, user: str, subject: str) -> None:
    msg = EmailMessage()
    msg["From"] = "sender@example.test"
    msg["To"] = f"{user}@example.test"
    msg["Subject"] = subject
    msg.set_content(f"{subject}. Please read.")
    dovecot.append(user, "append-only-pw", "INBOX", msg.as_bytes())


def add_account(cli: Cli, dovecot: OAuthDovecot, tokens: TokenServer, user: str) -> int:
    cli.env["OAUTH_CLIENT_SECRET"] = tokens.client_secret
    cli.env["OAUTH_REFRESH"] = tokens.new_refresh_token(user)
    cli("users", "add", "owner@example.test")
    out = cli(
        "accounts", "add", "--user", "owner@example.test", "--host", dovecot.host,
        "--port", str(dovecot.port), "--plain", "--username", user,
        "--oauth2", "--oauth-provider", "custom", "--token-url", tokens.token_url,
        "--client-id", tokens.client_id, "--client-secret-env", "OAUTH_CLIENT_SECRET",
        "--refresh-token-env", "OAUTH_REFRESH",
    )  # fmt: skip
    assert "OAuth2 custom" in out.stdout
    return int(out.stdout.split()[1])


def account(engine: Engine, account_id: int) -> MailAccount:
    with Session(engine) as session:
        return session.get_one(MailAccount, account_id)


def stored_subjects(engine: Engine) -> set[str]:
    with Session(engine) as session:
        return set(session.scalars(select(Message.subject)))


def expire_access_token(engine: Engine, tokens: TokenServer) -> None:
    """An hour has passed: the provider no longer takes the token, and our row says so too."""
    tokens.expire_access_tokens()
    with Session(engine) as session, session.begin():
        past = datetime.now(UTC) - timedelta(minutes=1)
        session.execute(update(MailAccount).values(oauth_access_expires_at=past))


def sync(cli: Cli, account_id: int) -> Any:
    return cli("sync", "--once", "--account", str(account_id), check=False)


def test_a_sync_refreshes_an_expired_access_token_first(
    oauth_dovecot: OAuthDovecot, tokens: TokenServer, mailbox_user: str, cli: Cli, pg_engine: Engine
) -> None:
    append(oauth_dovecot, mailbox_user, "First")
    account_id = add_account(cli, oauth_dovecot, tokens, mailbox_user)

    assert sync(cli, account_id).returncode == 0
    assert len(tokens.grants) == 1 and stored_subjects(pg_engine) == {"First"}
    assert tokens.grants[0].form["client_secret"] == tokens.client_secret
    row = account(pg_engine, account_id)
    assert row.status == "ok" and row.oauth_access_expires_at is not None
    assert row.oauth_access_expires_at > datetime.now(UTC) + timedelta(minutes=50)

    assert sync(cli, account_id).returncode == 0
    assert len(tokens.grants) == 1, "a live access token is reused, not refreshed"

    expire_access_token(pg_engine, tokens)
    append(oauth_dovecot, mailbox_user, "Second")
    result = sync(cli, account_id)
    assert result.returncode == 0, result.stderr
    assert len(tokens.grants) == 2
    assert stored_subjects(pg_engine) == {"First", "Second"}
    logins = oauth_dovecot.log_path.read_text().count(f"user=<{mailbox_user}>, method=XOAUTH2")
    assert logins >= 3


def test_a_rotated_refresh_token_is_saved_encrypted_and_used_next(
    oauth_dovecot: OAuthDovecot, tokens: TokenServer, mailbox_user: str, cli: Cli, pg_engine: Engine
) -> None:
    tokens.rotate = True
    account_id = add_account(cli, oauth_dovecot, tokens, mailbox_user)
    first = cli.env["OAUTH_REFRESH"]

    assert sync(cli, account_id).returncode == 0
    (rotated,) = tokens.live_refresh_tokens()
    assert rotated != first, "the endpoint retired the first refresh token"
    row = account(pg_engine, account_id)
    assert row.oauth_refresh_token_enc and rotated not in row.oauth_refresh_token_enc
    box = SecretBox.from_setting(cli.env["TRIAGE_SECRET_KEYS"])
    owner = f"mail_accounts:{account_id}:refresh"
    assert box.decrypt(row.oauth_refresh_token_enc, owner=owner) == rotated

    expire_access_token(pg_engine, tokens)
    append(oauth_dovecot, mailbox_user, "After rotation")
    result = sync(cli, account_id)
    assert result.returncode == 0, result.stderr
    assert tokens.grants[-1].form["refresh_token"] == rotated
    assert "After rotation" in stored_subjects(pg_engine)


def test_invalid_grant_means_reauth_needed_and_no_more_token_requests(
    oauth_dovecot: OAuthDovecot, tokens: TokenServer, mailbox_user: str, cli: Cli, pg_engine: Engine
) -> None:
    account_id = add_account(cli, oauth_dovecot, tokens, mailbox_user)
    assert sync(cli, account_id).returncode == 0
    tokens.revoke_all()  # the user removed the app's access
    expire_access_token(pg_engine, tokens)

    result = sync(cli, account_id)
    assert result.returncode == 1
    assert "invalid_grant" in result.stderr and "triage accounts reauth" in result.stderr
    assert "Traceback" not in result.stderr
    row = account(pg_engine, account_id)
    assert row.status == "reauth_needed" and "invalid_grant" in (row.last_error or "")
    asked = len(tokens.grants)

    for _ in range(2):
        again = sync(cli, account_id)
        assert again.returncode == 1 and "reauth" in again.stderr
    assert len(tokens.grants) == asked, "a reauth_needed account must not keep asking"
    assert account(pg_engine, account_id).status == "reauth_needed"

    cli.env["NEW_REFRESH"] = tokens.new_refresh_token(mailbox_user)
    cli("accounts", "reauth", "--account", str(account_id), "--refresh-token-env", "NEW_REFRESH")
    append(oauth_dovecot, mailbox_user, "Back")
    result = sync(cli, account_id)
    assert result.returncode == 0, result.stderr
    assert account(pg_engine, account_id).status == "ok"
    assert tokens.grants[-1].form["refresh_token"] == cli.env["NEW_REFRESH"]


def test_a_token_endpoint_outage_is_a_transient_error(
    oauth_dovecot: OAuthDovecot, tokens: TokenServer, mailbox_user: str, cli: Cli, pg_engine: Engine
) -> None:
    account_id = add_account(cli, oauth_dovecot, tokens, mailbox_user)
    tokens.fail_with = 503
    result = sync(cli, account_id)
    assert result.returncode == 1 and "HTTP 503" in result.stderr
    row = account(pg_engine, account_id)
    assert row.status == "error" and row.oauth_access_token_enc is None

    tokens.fail_with = None
    append(oauth_dovecot, mailbox_user, "Later")
    assert sync(cli, account_id).returncode == 0
    assert account(pg_engine, account_id).status == "ok"


def test_tokens_appear_in_no_output_log_export_or_plain_column(
    oauth_dovecot: OAuthDovecot,
    tokens: TokenServer,
    mailbox_user: str,
    cli: Cli,
    pg_engine: Engine,
    model_server: FakeModelServer,
    tmp_path: Path,
) -> None:
    from tests.integration.conftest import start_worker, stop_worker

    tokens.rotate = True
    model_server.responder = triage_and_draft
    append(oauth_dovecot, mailbox_user, "Can we talk?")
    account_id = add_account(cli, oauth_dovecot, tokens, mailbox_user)
    cli.env["E2E_API_KEY"] = TEST_API_KEY
    outputs = [
        cli(
            "providers", "set", "--user", "owner@example.test", "--provider", "openai",
            "--base-url", model_server.base_url, "--model", "fake-model",
            "--api-key-env", "E2E_API_KEY",
        ),
        cli("accounts", "write-back", "--account", str(account_id), "--keywords", "on"),
    ]  # fmt: skip
    worker = start_worker(cli.env, tmp_path / "worker.log")
    try:
        outputs.append(sync(cli, account_id))
        wait_until(lambda: written_back(pg_engine), timeout=90, what="triage and write-back")
        expire_access_token(pg_engine, tokens)
        outputs.append(sync(cli, account_id))
        outputs.append(cli("export", "--format", "jsonl"))
    finally:
        stop_worker(worker)
    texts = [out.stdout + out.stderr for out in outputs] + [worker.log()]
    with pg_engine.connect() as conn:
        texts.append(str(conn.execute(text("SELECT * FROM mail_accounts")).all()))
    secrets_seen = [*tokens.issued, tokens.client_secret]
    assert len(tokens.issued) >= 5  # first refresh token, two grants with rotation
    for blob in texts:
        assert not [token for token in secrets_seen if token in blob]


def written_back(engine: Engine) -> bool:
    with Session(engine) as session:
        row = session.scalars(select(Message)).first()
        finished = {statuses.TRIAGED, statuses.DRAFTED}
        return row is not None and row.written_back_at is not None and row.status in finished


def test_a_token_refused_before_its_expiry_is_refreshed_once_and_the_sync_goes_on(
    oauth_dovecot: OAuthDovecot, tokens: TokenServer, mailbox_user: str, cli: Cli, pg_engine: Engine
) -> None:
    account_id = add_account(cli, oauth_dovecot, tokens, mailbox_user)
    assert sync(cli, account_id).returncode == 0
    tokens.expire_access_tokens()  # revoked early at the provider; our row still says live
    append(oauth_dovecot, mailbox_user, "After revocation")

    result = sync(cli, account_id)

    assert result.returncode == 0, result.stderr
    assert len(tokens.grants) == 2
    assert "After revocation" in stored_subjects(pg_engine)
    assert account(pg_engine, account_id).status == "ok"


def test_a_new_token_the_server_refuses_is_a_clear_error_asking_the_endpoint_once(
    oauth_dovecot: OAuthDovecot, tokens: TokenServer, mailbox_user: str, cli: Cli, pg_engine: Engine
) -> None:
    """Granted but not good for IMAP (no IMAP scope, IMAP off for the mailbox): one token
    request per sync, not one per retry."""
    account_id = add_account(cli, oauth_dovecot, tokens, mailbox_user)
    tokens.lifetime = 0  # every token is dead on arrival at Dovecot, as if lacking the scope
    try:
        for attempt in (1, 2):
            result = sync(cli, account_id)
            assert result.returncode == 1
            assert "granted just now" in result.stderr and "IMAP scope" in result.stderr
            assert "Traceback" not in result.stderr
            assert len(tokens.grants) == attempt
    finally:
        tokens.lifetime = 3600
    row = account(pg_engine, account_id)
    assert row.status != "ok" and "granted just now" in (row.last_error or "")
